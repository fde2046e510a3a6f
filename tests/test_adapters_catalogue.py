"""Adapter files, manifests and the catalogue: real GGUF adapters written for the embedded
models at test time, checked against the real base model files (no model is loaded here)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import gguf
import numpy as np
import pytest

from adapters import testing
from server.engine.lora_validation import (
    AdapterError,
    base_table,
    check_against_base,
    inspect_adapter,
    read_table,
    validate_adapter,
)
from server.lora.catalogue import Catalogue, adapter_folders, read_entry, user_adapter_dir
from server.lora.manifest import (
    AdapterManifest,
    ManifestError,
    manifest_path_for,
    pattern_matches,
    read_manifest,
    write_manifest,
)


@pytest.fixture(scope="session")
def gemma_path(gemma_model_path: Path) -> Path:
    return gemma_model_path


@pytest.fixture(scope="session")
def smollm_path() -> Path:
    from server.engine.embedded import resolve_model_path

    return resolve_model_path("smollm2-135m")


@pytest.fixture(scope="session")
def good_adapter(gemma_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("good")
    return testing.write_lora(folder / "house-style.gguf", gemma_path, rank=4, seed=1)


# --- validation -----------------------------------------------------------------------------


def test_base_table_reads_the_model_shapes_fast(gemma_path: Path) -> None:
    started = time.perf_counter()
    table = read_table(gemma_path)
    assert time.perf_counter() - started < 5.0  # gguf.GGUFReader takes ~30 s on this file
    assert table.architecture == "gemma3"
    # ggml order: (in, out); Gemma 3 270M projects 640 -> 1024 for queries.
    assert table.tensors["blk.0.attn_q.weight"].dims == (640, 1024)
    assert table.tensors["blk.0.ffn_down.weight"].dims == (2048, 640)
    assert len(table.tensors) == 236


def test_a_good_adapter_passes_every_check(good_adapter: Path, gemma_path: Path) -> None:
    info = validate_adapter(good_adapter, gemma_path)
    assert info.architecture == "gemma3"
    assert info.ranks == [4]
    assert info.alpha == 4.0
    # 18 blocks x 7 projections
    assert len(info.pairs) == 18 * 7
    q = next(p for p in info.pairs if p.base_tensor == "blk.0.attn_q.weight")
    # numpy (r, in) and (out, r) are ggml (in, r) and (r, out)
    assert q.a_dims == (640, 4) and q.b_dims == (4, 1024)
    assert info.tensor_bytes < info.file_size


def test_the_written_tensors_have_peft_shapes(good_adapter: Path) -> None:
    reader = gguf.GGUFReader(good_adapter)
    tensors = {t.name: t for t in reader.tensors}
    a = tensors["blk.3.attn_v.weight.lora_a"].data
    b = tensors["blk.3.attn_v.weight.lora_b"].data
    assert a.shape == (4, 640) and b.shape == (256, 4)
    assert np.abs(b).max() > 0
    field = reader.fields["general.type"]
    assert bytes(field.parts[field.data[0]]).decode() == "adapter"


def test_truncated_adapter_is_refused(gemma_path: Path, tmp_path: Path) -> None:
    path = testing.write_truncated(tmp_path / "cut.gguf", gemma_path)
    with pytest.raises(AdapterError) as err:
        validate_adapter(path, gemma_path)
    assert err.value.check == "gguf"
    assert "truncated" in str(err.value) and str(path) in str(err.value)


def test_wrong_architecture_is_refused(gemma_path: Path, tmp_path: Path) -> None:
    path = testing.write_wrong_architecture(tmp_path / "llama.gguf", gemma_path)
    with pytest.raises(AdapterError) as err:
        validate_adapter(path, gemma_path)
    assert err.value.check == "architecture"
    assert "'llama'" in str(err.value) and "'gemma3'" in str(err.value)


def test_an_adapter_for_the_reasoner_is_refused_by_the_coder(
    smollm_path: Path, gemma_path: Path, tmp_path: Path
) -> None:
    path = testing.write_lora(tmp_path / "smol.gguf", smollm_path, rank=2, targets=("attn_q",))
    assert validate_adapter(path, smollm_path).architecture == "llama"
    with pytest.raises(AdapterError) as err:
        validate_adapter(path, gemma_path)
    assert err.value.check == "architecture"


def test_wrong_shapes_are_refused_with_both_shapes(gemma_path: Path, tmp_path: Path) -> None:
    path = testing.write_wrong_shapes(tmp_path / "shape.gguf", gemma_path)
    with pytest.raises(AdapterError) as err:
        validate_adapter(path, gemma_path)
    assert err.value.check == "shapes"
    assert "blk.0.attn_q.weight" in str(err.value)
    assert "(2, 656)" in str(err.value) and "(r, 640)" in str(err.value)


def _write(path: Path, arch: str, tensors: dict[str, np.ndarray], **kv: str) -> Path:
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_string("general.type", kv.get("general_type", "adapter"))
    writer.add_string("adapter.type", kv.get("adapter_type", "lora"))
    for name, value in tensors.items():
        writer.add_tensor(name, value)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_unknown_tensor_names_are_refused(gemma_path: Path, tmp_path: Path) -> None:
    a = np.zeros((2, 640), np.float32)
    b = np.zeros((1024, 2), np.float32)
    path = _write(
        tmp_path / "names.gguf",
        "gemma3",
        {"blk.99.attn_q.weight.lora_a": a, "blk.99.attn_q.weight.lora_b": b},
    )
    with pytest.raises(AdapterError) as err:
        validate_adapter(path, gemma_path)
    assert err.value.check == "names" and "blk.99.attn_q.weight" in str(err.value)


def test_file_checks_name_what_failed(gemma_path: Path, tmp_path: Path) -> None:
    pair = {
        "blk.0.attn_q.weight.lora_a": np.zeros((2, 640), np.float32),
        "blk.0.attn_q.weight.lora_b": np.zeros((1024, 2), np.float32),
    }
    cases = {
        "type": _write(tmp_path / "t.gguf", "gemma3", pair, general_type="model"),
        "lora": _write(tmp_path / "l.gguf", "gemma3", pair, adapter_type="control_vector"),
        "tensors": _write(
            tmp_path / "half.gguf",
            "gemma3",
            {"blk.0.attn_q.weight.lora_a": pair["blk.0.attn_q.weight.lora_a"]},
        ),
    }
    rank = {
        "blk.0.attn_q.weight.lora_a": np.zeros((2, 640), np.float32),
        "blk.0.attn_q.weight.lora_b": np.zeros((1024, 3), np.float32),
    }
    cases["tensors-rank"] = _write(tmp_path / "rank.gguf", "gemma3", rank)
    for check, path in cases.items():
        with pytest.raises(AdapterError) as err:
            inspect_adapter(path)
        assert err.value.check == check.split("-")[0], (check, str(err.value))
    text = tmp_path / "notes.gguf"
    text.write_text("hello, this is not a GGUF file at all")
    with pytest.raises(AdapterError) as err:
        inspect_adapter(text)
    assert err.value.check == "gguf" and "not a GGUF file" in str(err.value)
    with pytest.raises(AdapterError) as err:
        inspect_adapter(tmp_path / "missing.gguf")
    assert err.value.check == "file"
    # A base model dropped among the adapters is refused as a model, not read as an adapter.
    with pytest.raises(AdapterError) as err:
        inspect_adapter(gemma_path)
    assert err.value.check == "type" and "'model'" in str(err.value)


def test_check_against_base_uses_the_cached_table(good_adapter: Path, gemma_path: Path) -> None:
    info = inspect_adapter(good_adapter)
    assert base_table(gemma_path) is base_table(gemma_path)
    check_against_base(info, base_table(gemma_path))


# --- manifests ------------------------------------------------------------------------------


def test_manifest_json_and_toml(tmp_path: Path) -> None:
    adapter = tmp_path / "acme.gguf"
    adapter.write_bytes(b"")
    assert manifest_path_for(adapter) is None
    (tmp_path / "acme.toml").write_text(
        'name = "acme-style"\npurpose = "explanation"\npattern = "Acme-*"\nscale = 0.5\n'
    )
    manifest = read_manifest(manifest_path_for(adapter))  # type: ignore[arg-type]
    assert manifest.name == "acme-style" and manifest.pattern == ["Acme-*"]
    assert manifest.role == "reasoner" and manifest.scale == 0.5
    assert AdapterManifest().purpose is None
    written = write_manifest(adapter, AdapterManifest(name="acme2", pattern=["src/**"]))
    assert written == tmp_path / "acme.json"
    # JSON wins over TOML
    assert read_manifest(manifest_path_for(adapter)).name == "acme2"  # type: ignore[arg-type]
    assert json.loads(written.read_text()) == {"name": "acme2", "pattern": ["src/**"]}


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('{"purpose": "poetry"}', "'purpose'"),
        ('{"scael": 1}', "'scael'"),
        ('{"name": "a/b"}', "'name'"),
        ("[1, 2]", "must be an object"),
        ("{not json", "not valid JSON"),
    ],
)
def test_bad_manifests_name_the_key(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "x.json"
    path.write_text(text)
    with pytest.raises(ManifestError) as err:
        read_manifest(path)
    assert needle in str(err.value) and str(path) in str(err.value)


def test_patterns_match_paths_folders_and_packages() -> None:
    root = Path("/ws")
    file = "/ws/src/Acme-Core/Account.class.st"
    assert pattern_matches(["Acme-*"], file, None, root)
    assert pattern_matches(["Account.class.st"], file, None, root)
    assert pattern_matches(["src/**/*.st"], file, None, root)
    assert pattern_matches(["**/Acme-Core/*.st"], file, None, root)
    assert pattern_matches(["Billing-*"], "/ws/x.st", "Billing-Model", root)
    assert not pattern_matches(["Billing-*"], file, "Acme-Core", root)
    assert not pattern_matches([], file, "Acme-Core", root)
    assert not pattern_matches(["other/**"], file, None, root)


# --- catalogue ------------------------------------------------------------------------------


def test_folders_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert user_adapter_dir() == tmp_path / "data" / "smalltalk-lsp" / "adapters"
    folders = adapter_folders([tmp_path / "ws"], ["extra", str(tmp_path / "abs")])
    assert folders == [
        tmp_path / "ws" / ".smalltalk-lsp" / "adapters",
        tmp_path / "ws" / "extra",
        tmp_path / "abs",
        tmp_path / "data" / "smalltalk-lsp" / "adapters",
    ]


def test_catalogue_discovers_bare_files_manifests_and_errors(
    gemma_path: Path, smollm_path: Path, tmp_path: Path
) -> None:
    ws = tmp_path / "ws" / ".smalltalk-lsp" / "adapters"
    user = tmp_path / "user"
    testing.write_lora(ws / "bare.gguf", gemma_path, rank=2, targets=("attn_q",), layers=[0])
    testing.write_lora(ws / "named.gguf", gemma_path, rank=2, targets=("attn_v",), layers=[1])
    write_manifest(
        ws / "named.gguf",
        AdapterManifest(name="acme", pattern=["Acme-*"], scale=0.7, purpose="completion"),
    )
    testing.write_lora(user / "smol.gguf", smollm_path, rank=2, targets=("attn_q",), layers=[0])
    (user / "smol.toml").write_text('purpose = "explanation"\n')
    testing.write_truncated(user / "cut.gguf", gemma_path)
    # The same name in a later folder is shadowed by the workspace's.
    testing.write_lora(user / "bare.gguf", gemma_path, rank=2, targets=("attn_k",), layers=[0])
    (user / "readme.txt").write_text("not an adapter")

    catalogue = Catalogue([ws, user, tmp_path / "missing"])
    changes = catalogue.refresh()
    assert sorted(changes.added) == ["acme", "bare", "cut", "smol"]
    bare = catalogue.get("bare")
    assert bare is not None and bare.usable and Path(bare.path).parent == ws
    assert bare.base_architecture == "gemma3" and bare.rank == 2 and bare.role() == "coder"
    acme = catalogue.get("acme")
    assert acme is not None and acme.scale == 0.7 and acme.pattern == ["Acme-*"]
    smol = catalogue.get("smol")
    assert smol is not None and smol.base_architecture == "llama" and smol.role() == "reasoner"
    # A bare file without a purpose goes to the role whose model has its architecture.
    assert bare.role({"coder": "llama", "reasoner": "gemma3"}) == "reasoner"
    assert bare.role({"coder": "gemma3", "reasoner": "gemma3"}) == "coder"
    assert acme.role({"coder": "llama", "reasoner": "gemma3"}) == "coder"  # its manifest says
    cut = catalogue.get("cut")
    assert cut is not None and not cut.usable and cut.error_check == "gguf"
    assert "truncated" in (cut.error or "")
    matched = catalogue.matching("/x/Acme-Core/A.st", None, "coder", None)
    assert [e.name for e in matched] == ["acme"]
    assert catalogue.covers(ws / "new.gguf") and catalogue.covers(ws / "x.json")
    assert not catalogue.covers(tmp_path / "ws" / "src" / "a.gguf")

    # Changed (new contents), removed, added.
    time.sleep(0.01)
    testing.write_lora(ws / "bare.gguf", gemma_path, rank=3, targets=("attn_q",), layers=[0])
    os.remove(user / "cut.gguf")
    testing.write_lora(ws / "late.gguf", gemma_path, rank=2, targets=("attn_q",), layers=[2])
    changes = catalogue.refresh()
    assert changes.changed == ["bare"] and changes.removed == ["cut"] and changes.added == ["late"]
    assert catalogue.get("bare").rank == 3  # type: ignore[union-attr]
    assert not catalogue.refresh()


def test_manifest_errors_make_the_entry_unusable(gemma_path: Path, tmp_path: Path) -> None:
    path = testing.write_lora(tmp_path / "a.gguf", gemma_path, rank=2, targets=("attn_q",))
    (tmp_path / "a.json").write_text('{"base_architecture": "llama"}')
    entry = read_entry(path, tmp_path)
    assert entry.error_check == "architecture" and "'llama'" in (entry.error or "")
    (tmp_path / "a.json").write_text('{"purpose": 3}')
    entry = read_entry(path, tmp_path)
    assert entry.error_check == "manifest" and entry.name == "a"


def test_shipped_adapters_follow_the_configured_embedded_model(tmp_path: Path) -> None:
    """The server's own adapters are searched last, only for an embedded model a role runs:
    the default coder's `pharo`; nothing for Gemma, a path, or a role that is off."""
    from server.lora.catalogue import EMBEDDED_ADAPTERS, embedded_folders

    qwen = EMBEDDED_ADAPTERS / "qwen2.5-coder-0.5b"
    assert embedded_folders(["qwen2.5-coder-0.5b", None]) == [qwen]
    assert embedded_folders(["Qwen2.5-Coder-0.5B "]) == [qwen]
    assert embedded_folders(["gemma3-270m", "off", "/models/x.gguf", "../embedded"]) == []
    folders = adapter_folders([tmp_path / "ws"], [], tmp_path / "user", None, [qwen])
    assert folders[-1] == qwen and folders[-2] == tmp_path / "user"
    catalogue = Catalogue([qwen])
    catalogue.refresh()
    entry = catalogue.get("pharo")
    assert entry is not None and entry.error is None and entry.usable
    assert entry.base_architecture == "qwen2" and entry.base_model == "qwen2.5-coder-0.5b"
    assert entry.purpose == "completion" and entry.pattern == [] and entry.size < 8 * 2**20
