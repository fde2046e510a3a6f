"""The adapters feature's logic (AdapterManager) on the real coder model: discovery, loading
into the live model, activation, per-request selection by pattern, and pickup of changes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters import testing
from server.config import Settings, validate_settings
from server.engine.session import LlamaSession
from server.engine.types import CancelToken, GenerateParams
from server.lora.manager import AdapterManager, CommandError
from server.lora.manifest import AdapterManifest, write_manifest
from server.models import packages_of
from server.project_model import ProjectModel
from smalltalk_grammar import parse

PROMPT = (
    "Object subclass: #Account\n    instanceVariableNames: 'balance'\n\nAccount >> deposit: x\n    "
)


# The coder these tests load (the default coder would bring its shipped adapter along).
GEMMA_CODER = {"code_generation": "gemma3-270m", "reasoning": "off"}


@pytest.fixture
def workspace(tmp_path: Path, gemma_model_path: Path) -> Path:
    folder = tmp_path / "ws" / ".smalltalk-lsp" / "adapters"
    testing.write_lora(folder / "house.gguf", gemma_model_path, seed=1, strength=0.1)
    testing.write_lora(folder / "acme.gguf", gemma_model_path, seed=2, strength=0.1)
    write_manifest(folder / "acme.gguf", AdapterManifest(pattern=["Acme-*"], scale=0.5))
    testing.write_truncated(folder / "broken.gguf", gemma_model_path)
    testing.write_wrong_architecture(folder / "other.gguf", gemma_model_path, arch="qwen2")
    return tmp_path / "ws"


@pytest.fixture
def manager(workspace: Path, gemma_model, tmp_path: Path) -> Iterator[AdapterManager]:
    m = AdapterManager(
        lambda role: gemma_model if role == "coder" else None,
        [workspace],
        # The adapters live in the workspace; the settings name the model the lookup gives.
        Settings(trust={"workspace": True}, models=GEMMA_CODER),
        user_dir=tmp_path / "user",
    )
    m.sync()
    yield m
    m.close()


def listed(manager: AdapterManager) -> dict[str, dict]:
    return {item["name"]: item for item in manager.listing()}


def test_listing_shows_every_adapter_with_its_state(manager: AdapterManager) -> None:
    items = listed(manager)
    assert sorted(items) == ["acme", "broken", "house", "other"]
    house = items["house"]
    assert house["base_architecture"] == "gemma3" and house["error"] is None
    assert house["loaded"] is False and house["active"] is False and house["scale"] == 1.0
    # A pattern adapter may apply to any request: it is loaded ahead of time.
    assert items["acme"]["loaded"] is True and items["acme"]["scale"] == 0.5
    assert "truncated" in items["broken"]["error"]
    assert "architecture check failed" in items["other"]["error"]
    assert set(house) >= {"name", "path", "base_architecture", "loaded", "active", "scale", "error"}


def test_activate_loads_and_deactivate_unloads(manager: AdapterManager, gemma_model) -> None:
    item = manager.activate("house", 0.8)
    assert item["active"] and item["loaded"] and item["scale"] == 0.8
    assert "house" in gemma_model.adapters.names()
    selection = manager.select("coder", "/elsewhere/x.st")
    assert selection.pairs == (("house", 0.8),) and selection.label == "house×0.8"
    assert "house@0.8" in selection.key
    item = manager.deactivate("house")
    assert not item["active"]
    assert "house" not in gemma_model.adapters.names()
    assert manager.select("coder", "/elsewhere/x.st").pairs == ()


def test_bad_commands_say_what_is_wrong(manager: AdapterManager) -> None:
    with pytest.raises(CommandError, match="no adapter named 'nope'.*house"):
        manager.activate("nope")
    with pytest.raises(CommandError, match="truncated"):
        manager.activate("broken")
    with pytest.raises(CommandError, match="architecture check failed"):
        manager.activate("other")
    with pytest.raises(CommandError, match="out of range"):
        manager.activate("house", 100.0)
    with pytest.raises(CommandError, match="expected an adapter name"):
        manager.activate(3)  # type: ignore[arg-type]
    assert not listed(manager)["other"]["active"]


def test_patterns_and_settings_select_per_request(manager: AdapterManager, workspace) -> None:
    file = str(workspace / "src" / "Acme-Core" / "Account.class.st")
    assert manager.select("coder", file).pairs == (("acme", 0.5),)
    assert manager.select("coder", "/ws/src/Other/A.st").pairs == ()
    assert manager.select("coder", "/ws/A.st", ["Acme-Billing"]).pairs == (("acme", 0.5),)
    assert manager.select("reasoner", file).pairs == ()
    loaded = validate_settings({
        "adapters": {"active": ["house"], "scales": {"acme": 0.25}},
        "trust": {"workspace": True},
    })
    manager.settings_changed(loaded.settings)
    both = manager.select("coder", file)
    assert both.pairs == (("acme", 0.25), ("house", 1.0))
    assert both.label == "acme×0.25, house"
    # Deactivating by command wins over the settings and the pattern.
    manager.deactivate("acme")
    assert manager.select("coder", file).pairs == (("house", 1.0),)


def test_an_active_name_no_folder_holds_is_reported_once(
    manager: AdapterManager, caplog: pytest.LogCaptureFixture
) -> None:
    loaded = validate_settings({"adapters": {"active": ["hosue"]}, "trust": {"workspace": True}})
    with caplog.at_level("WARNING", logger="server.lora.manager"):
        manager.settings_changed(loaded.settings)
        manager.sync()
    warned = [r.getMessage() for r in caplog.records if "hosue" in r.getMessage()]
    assert len(warned) == 1 and "no adapter folder holds it" in warned[0]
    assert manager.select("coder", "/ws/A.st").pairs == ()


def test_selection_changes_the_generation(manager: AdapterManager, gemma_model) -> None:
    session = LlamaSession(gemma_model, n_ctx=512, n_batch=128, n_threads=1)
    try:

        def run(pairs: tuple) -> str:
            params = GenerateParams(max_tokens=10, adapters=pairs)
            return session.generate(PROMPT, params, CancelToken()).text

        base = run(manager.select("coder", "/x.st").pairs)
        manager.activate("house")
        with_house = run(manager.select("coder", "/x.st").pairs)
        manager.deactivate("house")
        assert with_house != base
        assert run(manager.select("coder", "/x.st").pairs) == base
    finally:
        session.close()


def test_new_changed_and_removed_files_are_picked_up(
    manager: AdapterManager, workspace: Path, gemma_model, gemma_model_path
) -> None:
    folder = workspace / ".smalltalk-lsp" / "adapters"
    manager.activate("house")
    before = gemma_model.adapters.get("house")
    testing.write_lora(folder / "late.gguf", gemma_model_path, seed=3, rank=2)
    testing.write_lora(folder / "house.gguf", gemma_model_path, seed=9, strength=0.1)
    os.utime(folder / "house.gguf", ns=(1, 2))  # a new version even on a coarse clock
    assert manager.sync()
    assert "late" in listed(manager)
    after = gemma_model.adapters.get("house")
    assert after is not None and before is not None and after.version != before.version
    # Removing an active adapter's file unloads it.
    (folder / "house.gguf").unlink()
    manager.sync()
    assert "house" not in listed(manager) and "house" not in gemma_model.adapters.names()
    assert manager.select("coder", "/x.st").pairs == ()
    # A file repaired in place becomes usable.
    testing.write_lora(folder / "broken.gguf", gemma_model_path, seed=4, rank=2)
    manager.sync()
    assert listed(manager)["broken"]["error"] is None


def test_packages_of_a_file() -> None:
    project = ProjectModel()
    text = (
        "Class {\n\t#name : #Account,\n\t#superclass : #Object,\n\t#category : #'Acme-Core'\n}\n\n"
        "Account >> deposit: x [\n\t^ x\n]\n"
    )
    project.put(parse(text, path="/ws/src/Acme-Core/Account.class.st"))
    assert packages_of(project, "/ws/src/Acme-Core/Account.class.st") == ["Acme-Core"]
    assert packages_of(project, "/nowhere.st") == []


def test_an_untrusted_workspace_holds_no_adapters(workspace: Path, gemma_model, tmp_path) -> None:
    """The same workspace folder, untrusted: none of its adapters is catalogued; trusting it by
    a setting change picks them up without a new manager."""
    manager = AdapterManager(
        lambda role: gemma_model if role == "coder" else None,
        [workspace],
        Settings(models=GEMMA_CODER),
        user_dir=tmp_path / "user-adapters",
    )
    manager.sync()
    assert listed(manager) == {}
    manager.settings_changed(Settings(trust={"trusted_roots": [str(workspace)]},
                                      models=GEMMA_CODER))
    assert {"house", "acme"} <= set(listed(manager))
    manager.close()
