"""Hostile GGUF files: mutants of the embedded SmolLM2 model and of a real adapter for it are
either refused with a message naming the failed check, or load and generate; llama.cpp never
takes the process down. Loads run in a probe process (tests/gguf_probe.py), so a crash there is
seen here as a dead probe. The longer run is bench/bench_gguf_fuzz.py."""

from __future__ import annotations

import struct
from collections import Counter
from pathlib import Path

import pytest
from gguf_mutants import Mutant, Probe, Workbench, fuzz, layout

from adapters import testing
from server.engine.gguf_check import GGUFCheckError, read_checked

MODEL_MUTANTS = 170
ADAPTER_MUTANTS = 110


@pytest.fixture(scope="module")
def smollm_path() -> Path:
    from server.engine.embedded import resolve_model_path

    return resolve_model_path("smollm2-135m")


@pytest.fixture(scope="module")
def smollm_adapter(smollm_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("fuzz-adapter")
    return testing.write_lora(
        folder / "house.gguf", smollm_path, rank=2, layers=[0, 1], seed=1, strength=0.1
    )


@pytest.fixture(scope="module")
def probe(smollm_path: Path):
    probe = Probe(smollm_path, Path.cwd())
    yield probe
    probe.close()


def _report(outcomes) -> str:
    return "\n".join(
        f"{o.result}: {o.mutant.label}: {o.message[-400:]}"
        for o in outcomes
        if o.result in ("crashed", "error")
    )


def test_the_unmutated_files_load_and_generate(probe, smollm_path, smollm_adapter) -> None:
    assert probe.ask("model", smollm_path) == ("generated", "4 tokens")
    assert probe.ask("adapter", smollm_adapter) == ("generated", "4 tokens")


def test_model_mutants_are_refused_or_generate(probe, smollm_path, tmp_path) -> None:
    starts = probe.starts
    outcomes = fuzz(smollm_path, "model", MODEL_MUTANTS, 1, tmp_path, probe)
    counts = Counter(o.result for o in outcomes)
    assert len(outcomes) == MODEL_MUTANTS
    assert counts["crashed"] == 0 and counts["error"] == 0, _report(outcomes)
    assert probe.starts == starts  # the probe never had to be restarted
    # Most mutants break the structure and the Python checks refuse them, naming the check.
    assert counts["checked"] > MODEL_MUTANTS // 2, counts
    for outcome in outcomes:
        if outcome.result in ("checked", "refused"):
            assert "mutant-" in outcome.message or "short-" in outcome.message, outcome
        if outcome.result == "checked":
            assert " check failed: " in outcome.message, outcome
    assert counts["generated"] > 0, counts  # harmless mutants (a flipped bit in a name) load


def test_adapter_mutants_are_refused_or_generate(probe, smollm_adapter, tmp_path) -> None:
    starts = probe.starts
    outcomes = fuzz(smollm_adapter, "adapter", ADAPTER_MUTANTS, 2, tmp_path, probe)
    counts = Counter(o.result for o in outcomes)
    assert len(outcomes) == ADAPTER_MUTANTS
    assert counts["crashed"] == 0 and counts["error"] == 0, _report(outcomes)
    assert probe.starts == starts
    assert counts["checked"] > ADAPTER_MUTANTS // 2, counts
    assert all(" check failed: " in o.message for o in outcomes if o.result == "checked")


def _field(lay, label: str):
    return next(f for f in lay.fields if f.label == label)


# (field label, new value, the check that must refuse it): the hostile headers the fuzzer draws
# at random, each once for sure.
HOSTILE = [
    ("tensor count", (1 << 64) - 1, "counts"),  # -1 as int64
    ("metadata count", 1 << 40, "counts"),
    ("key length", (1 << 64) - 1, "metadata"),
    ("length of array tokenizer.ggml.tokens", 1 << 62, "metadata"),
    ("value type of general.architecture", 4, "metadata"),
    ("element type of tokenizer.ggml.tokens", 9, "metadata"),
    ("n_dims of token_embd.weight", 5, "tensors"),
    ("dim 0 of token_embd.weight", 1 << 63, "tensors"),
    ("dim 1 of token_embd.weight", 49151, "vocabulary"),
    ("type of token_embd.weight", 255, "tensors"),
    ("offset of output_norm.weight", 1 << 40, "offsets"),
    ("offset of output_norm.weight", 33, "offsets"),
    ("offset of blk.0.attn_k.weight", 0, "offsets"),  # overlaps token_embd
    ("llama.block_count", 65536, "hparams"),  # llama.cpp aborts the process on this one
    ("llama.attention.head_count", 0, "hparams"),
    ("tokenizer.ggml.eos_token_id", 1 << 20, "vocabulary"),
    ("version", 7, "version"),
]


@pytest.mark.parametrize(("label", "value", "check"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_each_hostile_field_is_refused_by_its_check(
    smollm_path: Path, tmp_path: Path, label: str, value: int, check: str
) -> None:
    lay = layout(smollm_path)
    target = _field(lay, label)
    data = struct.pack("<I" if target.size == 4 else "<Q", value)
    bench = Workbench(smollm_path, tmp_path)
    path = bench.apply(Mutant(label, ((target.offset, data),)))
    with pytest.raises(GGUFCheckError) as err:
        read_checked(path)
    assert err.value.check == check, str(err.value)
    assert str(path) in str(err.value)


def test_truncations_are_refused(smollm_path: Path, tmp_path: Path) -> None:
    lay = layout(smollm_path)
    bench = Workbench(smollm_path, tmp_path)
    for cut in (3, 23, 100, lay.header_end - 1, lay.data_offset + 10, lay.size - 1):
        mutant = Mutant("cut", truncate=cut)
        with pytest.raises(GGUFCheckError, match="check failed"):
            read_checked(bench.apply(mutant))
        bench.restore(mutant)
    assert read_checked(bench.copy).file_size == lay.size  # restored byte for byte


def test_adapter_alpha_of_another_type_is_refused(smollm_adapter: Path, tmp_path: Path) -> None:
    """llama.cpp reads adapter.lora.alpha with a getter that aborts on another type."""
    lay = layout(smollm_adapter)
    target = _field(lay, "value type of adapter.lora.alpha")
    path = Workbench(smollm_adapter, tmp_path).apply(
        Mutant("alpha", ((target.offset, struct.pack("<I", 4)),))
    )
    with pytest.raises(GGUFCheckError, match="adapter.lora.alpha' has type uint32"):
        read_checked(path)


def test_per_token_arrays_shorter_than_the_vocabulary_are_refused(tmp_path: Path) -> None:
    """llama.cpp indexes scores and token types by token id: a short array is an over-read."""
    import numpy as np
    from gguf import GGUFWriter

    path = tmp_path / "short-scores.gguf"
    writer = GGUFWriter(str(path), "llama")
    writer.add_block_count(1)
    writer.add_embedding_length(64)
    writer.add_head_count(4)
    writer.add_token_list([f"t{i}" for i in range(100)])
    writer.add_token_scores([0.0] * 99)
    writer.add_tensor("token_embd.weight", np.zeros((100, 64), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(GGUFCheckError) as err:
        read_checked(path)
    assert err.value.check == "vocabulary" and "99 entries for 100 tokens" in str(err.value)


def test_duplicate_token_texts_are_refused(tmp_path: Path) -> None:
    """llama.cpp aborts the process on two tokens of one text (found by the fuzz benchmark: a
    flipped bit in a token of SmolLM2's vocabulary)."""
    import numpy as np
    from gguf import GGUFWriter

    path = tmp_path / "twice.gguf"
    writer = GGUFWriter(str(path), "llama")
    writer.add_block_count(1)
    writer.add_embedding_length(64)
    writer.add_head_count(4)
    writer.add_token_list([f"t{i}" for i in range(99)] + ["t7"])
    writer.add_tensor("token_embd.weight", np.zeros((100, 64), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(GGUFCheckError) as err:
        read_checked(path)
    assert err.value.check == "vocabulary" and "token 99 has the same text as token 7" in str(
        err.value
    )
