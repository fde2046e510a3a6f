"""The whole training pipeline on the sample project with the embedded models, at a tiny size:
dataset -> teach (SmolLM2 as teacher) -> train (PEFT on the Gemma 3 weights) -> export (GGUF
LoRA) -> the adapter in llama.cpp -> eval. Plus a checkpoint write that fails (a full disk).

Training and llama.cpp run with one thread here: on a machine whose cores are shared by parallel
jobs, the spinning thread barriers of both make two threads many times slower than one (a
4-step run took 125 s with two threads and 31 s with one, at a load average of 7-15 on 2 cores).
"""

from __future__ import annotations

import errno
import json
import math
from pathlib import Path

import pytest
import torch

from adapters import testing
from adapters.dataset import build_dataset, read_examples, write_dataset
from adapters.evaluate import EvalConfig, EvalEngine, EvalError, evaluate
from adapters.export import export_run
from adapters.render import render
from adapters.teach import TeachConfig, teach
from adapters.train import (
    TrainConfig,
    TrainError,
    example_index,
    latest_checkpoint,
    train,
    training_examples,
)
from server.engine.lora_validation import validate_adapter
from server.lora.catalogue import Catalogue
from server.lora.manifest import manifest_path_for, read_manifest

TONEL = Path(__file__).parent / "fixtures" / "sample" / "tonel"

# Every projection the export maps (attention and MLP); four steps at this rate lower the NLL
# of the examples seen by about 15% in llama.cpp (higher rates overshoot on four steps).
TINY = TrainConfig(steps=4, max_seq_len=96, rank=8, alpha=16, learning_rate=1e-3,
                   target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                   "up_proj", "down_proj"],
                   checkpoint_every=2, kinds=["fim", "implement"], threads=1)


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("training") / "dataset"
    write_dataset(build_dataset(TONEL), out)
    return out


def test_pipeline(dataset_dir: Path, hf_gemma, gemma_model, tmp_path: Path) -> None:
    # teach: two notes from the reasoner, kept in teach.jsonl; a rerun does nothing new, and a
    # line cut off by a killed run is dropped and redone.
    config = TeachConfig(limit=1, max_tokens=48, threads=1, min_chars=1)
    first = teach(dataset_dir, config, progress=False)
    assert first.written + first.skipped == 2 and first.done_before == 0
    assert first.written >= 1
    taught = read_examples(dataset_dir / "teach.jsonl")
    assert {e.kind for e in taught} <= {"explain", "design"} and len(taught) == first.written
    assert all(e.split == "train" and e.middle.strip() for e in taught)
    again = teach(dataset_dir, config, progress=False)
    assert again.done_before == first.written and again.written == 0
    with open(dataset_dir / "teach.jsonl", "a") as handle:
        handle.write('{"id": "half a li')
    repaired = teach(dataset_dir, config, progress=False)
    assert repaired.done_before == again.total
    assert len(read_examples(dataset_dir / "teach.jsonl")) == repaired.total

    # train: a few steps of short sequences on the fim and implement examples.
    run_dir = tmp_path / "run"
    result = train(dataset_dir, run_dir, TINY, base=hf_gemma, progress=False)
    assert result.steps == 4 and len(result.losses) == 4
    assert all(math.isfinite(x) and x > 0 for x in result.losses)
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()
    assert latest_checkpoint(run_dir) == (4, run_dir / "checkpoints" / "step-000004")
    assert json.loads((run_dir / "train.json").read_text())["architecture"] == "gemma3"

    # export: a GGUF LoRA that passes the server's validation, with a manifest.
    adapters_dir = tmp_path / "adapters"
    exported = export_run(run_dir, name="sample-style", out_dir=adapters_dir)
    path = Path(exported.path)
    assert path == adapters_dir / "sample-style.gguf"
    info = validate_adapter(path, gemma_model.path)
    assert info.architecture == "gemma3" and info.alpha == 16.0 and info.ranks == [8]
    assert len(info.pairs) == 7 * 18  # seven projections of 18 blocks
    manifest_file = manifest_path_for(path)
    assert manifest_file is not None
    manifest = read_manifest(manifest_file)
    assert manifest.base_architecture == "gemma3" and manifest.training["steps"] == 4
    catalogue = Catalogue([adapters_dir])
    assert catalogue.refresh().added == ["sample-style"]
    entry = catalogue.get("sample-style")
    assert entry is not None and entry.usable and entry.base_model == "gemma3-270m"
    assert entry.base_architecture == "gemma3" and entry.purpose == "completion"

    # In llama.cpp on the quantized base the adapter changes what the coder writes and makes
    # the examples it was trained on more likely.
    examples, _ = training_examples(dataset_dir, TINY.kinds)
    seen = [examples[example_index(step, 0, 1, len(examples), TINY.seed)] for step in range(4)]
    engine = EvalEngine("gemma3-270m", n_ctx=1024, threads=1, loaded=gemma_model)
    try:
        outputs: dict[str, list[str]] = {}
        nll: dict[str, float] = {}
        for key, adapter in (("base", None), ("adapter", path)):
            engine.use(adapter)
            nll[key] = sum(engine.nll(*render(e, engine.fim))[0] for e in seen)
            outputs[key] = [engine.generate(e.prefix, 24, ()) for e in seen]
        engine.use(None)
        assert engine.generate(seen[0].prefix, 24, ()) == outputs["base"][0]
    finally:
        engine.close()
    print(f"NLL of the trained examples: {nll}")
    assert outputs["adapter"] != outputs["base"]
    assert nll["adapter"] < nll["base"] * 0.95, nll

    # eval: held-out figures with and without the adapter, written as JSON.
    report_path = tmp_path / "eval.json"
    report = evaluate(
        dataset_dir, path,
        EvalConfig(limit=4, generate_limit=2, n_ctx=1024, threads=1, max_tokens_block=48),
        out=report_path,
    )
    written = json.loads(report_path.read_text())
    for key in ("base", "with_adapter"):
        figures = written[key]
        assert figures["examples"] == 4 and figures["tokens"] > 0
        assert math.isfinite(figures["perplexity"]) and figures["perplexity"] > 1
        assert figures["generated"] == 2
        assert 0.0 <= figures["edit_similarity"] <= 1.0
        assert 0.0 <= figures["parse_rate"] <= 1.0
    assert report.with_adapter is not None
    assert report.with_adapter.perplexity != report.base.perplexity
    assert len(written["completions"]) == 4


def test_full_disk_during_a_checkpoint(dataset_dir: Path, hf_gemma, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    config = TINY.model_copy(update={"steps": 3, "checkpoint_every": 1, "max_seq_len": 48})
    run_dir = tmp_path / "run"
    real_save = torch.save
    calls = {"n": 0}

    def failing_save(obj, path, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # the second checkpoint: half a file, then the disk is full
            Path(path).write_bytes(b"\0" * 1000)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(TrainError) as failed:
        train(dataset_dir, run_dir, config, base=hf_gemma, progress=False)
    message = str(failed.value)
    assert "step 2" in message and "No space left on device" in message
    assert "step-000001 (step 1) is intact" in message
    # The earlier checkpoint is whole, and no partial one is left behind.
    step_dirs = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert step_dirs == ["step-000001"]
    assert {p.name for p in (run_dir / "checkpoints" / "step-000001").iterdir()} == {
        "adapter_model.safetensors", "optimizer.pt", "state.json"}

    # With space again, the run resumes from step 1 and finishes.
    monkeypatch.setattr(torch, "save", real_save)
    result = train(dataset_dir, run_dir, config, base=hf_gemma, progress=False)
    assert result.resumed_from == 1 and len(result.losses) == 3
    # Other settings on the same run folder are refused instead of mixing two runs.
    with pytest.raises(TrainError, match="other settings"):
        train(dataset_dir, run_dir, config.model_copy(update={"rank": 4}), base=hf_gemma,
              progress=False)



# (base, spread of the random B weights): large enough that the NLL moves by several nats,
# far above the quantized base's own difference from PyTorch's.
@pytest.mark.parametrize(("base_name", "spread"),
                         [("gemma3-270m", 0.04), ("qwen2.5-coder-0.5b", 0.1)])
def test_exported_adapter_acts_in_llama_cpp_as_in_peft(base_name: str, spread: float, request,
                                                       tmp_path: Path) -> None:
    """A PEFT LoRA with random weights on every projection the export maps moves the NLL of a
    text in llama.cpp (quantized base) as it does in PyTorch: a wrong tensor name, a transposed
    or mis-scaled pair, or a permuted q/k (as llama.cpp does for llama models) would not. On
    Gemma 3 and on the default coder (Qwen2)."""
    import copy

    short = "gemma" if base_name.startswith("gemma") else "qwen"
    hf_base = request.getfixturevalue(f"hf_{short}")
    loaded = request.getfixturevalue(f"{short}_model")

    from peft import LoraConfig, get_peft_model

    from adapters.export import export_adapter

    torch.manual_seed(0)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    model = get_peft_model(copy.deepcopy(hf_base.model),
                           LoraConfig(r=4, lora_alpha=8, target_modules=targets))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, spread)
    model.eval()
    model.save_pretrained(str(tmp_path / "peft"))
    exported = export_adapter(tmp_path / "peft", loaded.path, tmp_path / "out", "random")

    prompt = (TONEL / "StreamingRights-Core" / "SRStore.class.st").read_text()[:900]
    target = "\n\n{ #category : #accessing }\nSRStore >> size [\n\n\t^ self rights size\n]"
    p = hf_base.tokenizer(prompt, add_special_tokens=True)["input_ids"]
    t = hf_base.tokenizer(target, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([p + t])

    def torch_nll() -> float:
        with torch.no_grad():
            logits = model(input_ids=ids, logits_to_keep=len(t) + 1).logits[0, :-1]
        return float(torch.nn.functional.cross_entropy(logits, ids[0, -len(t):],
                                                       reduction="sum"))

    in_torch = {"adapter": torch_nll()}
    with model.disable_adapter():
        in_torch["base"] = torch_nll()
    engine = EvalEngine(base_name, n_ctx=1024, threads=1, loaded=loaded)
    try:
        in_llama = {}
        for key, adapter in (("base", None), ("adapter", Path(exported.path))):
            engine.use(adapter)
            in_llama[key] = engine.nll(prompt, target)[0]
    finally:
        engine.close()
    print(f"target NLL: PyTorch {in_torch}, llama.cpp {in_llama}")
    torch_delta = in_torch["adapter"] - in_torch["base"]
    llama_delta = in_llama["adapter"] - in_llama["base"]
    assert abs(torch_delta) > 5.0, in_torch
    assert 0.75 < llama_delta / torch_delta < 1.33, (in_torch, in_llama)


def test_eval_compares_several_adapters_on_the_same_examples(
        dataset_dir: Path, gemma_model, tmp_path: Path) -> None:
    # Two real (seeded random) GGUF LoRAs for the coder: one run measures the base once, then
    # each adapter in the order given, on the same held-out examples.
    first = testing.write_lora(tmp_path / "one" / "style-a.gguf", gemma_model.path, seed=1)
    second = testing.write_lora(tmp_path / "two" / "style-b.gguf", gemma_model.path, seed=2)
    config = EvalConfig(limit=2, generate_limit=1, n_ctx=1024, threads=1, max_tokens_block=24)
    engine = EvalEngine("gemma3-270m", n_ctx=1024, threads=1, loaded=gemma_model)
    try:
        both = evaluate(dataset_dir, [first, second], config, engine=engine, progress=False)
        alone = evaluate(dataset_dir, second, config, engine=engine, progress=False)
    finally:
        engine.close()
    assert list(both.adapters) == ["style-a", "style-b"]
    assert both.adapter == str(first) and both.with_adapter is not None
    assert both.with_adapter.perplexity == both.adapters["style-a"].perplexity
    perplexities = [both.base.perplexity, *(m.perplexity for m in both.adapters.values())]
    assert len(set(perplexities)) == 3, perplexities
    # The second adapter's figures do not depend on the first having been measured before it.
    assert alone.with_adapter is not None
    assert both.adapters["style-b"].perplexity == pytest.approx(alone.with_adapter.perplexity,
                                                                 rel=1e-6)
    assert both.base.perplexity == pytest.approx(alone.base.perplexity, rel=1e-6)
    assert len(both.completions) == 3  # one generated example per setting
    assert len({c["adapter"] for c in both.completions}) == 3

    # Adapters that cannot be told apart in the report, or a missing file, are refused before
    # any model loads.
    twin = testing.write_lora(tmp_path / "three" / "style-a.gguf", gemma_model.path, seed=3)
    with pytest.raises(EvalError, match="same file name"):
        evaluate(dataset_dir, [first, twin], config)
    with pytest.raises(EvalError, match="no such adapter"):
        evaluate(dataset_dir, [first, tmp_path / "missing.gguf"], config)


def test_eval_command_takes_several_adapters() -> None:
    import argparse

    from adapters.commands import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["eval", "ds", "--adapter", "a.gguf", "--adapter", "b.gguf"])
    assert args.adapter == [Path("a.gguf"), Path("b.gguf")]
    assert parser.parse_args(["eval", "ds"]).adapter == []
