"""Workspace trust: which workspace roots may choose the binary files the server loads.

A cloned repository must not decide which files reach llama.cpp's C++ parser (or PyTorch's
loaders, or which remote server gets the sources and an API key). In a root that is not
trusted, the server still serves every static feature and the models and adapters of the user's
own configuration (user config file, editor settings, embedded defaults), but ignores what the
workspace itself supplies:

- in the workspace's `smalltalk-lsp.toml`: model paths (`models.*` naming a file or folder rather
  than an embedded model), `adapters.folders`, and the `backends` section (URLs and the name of
  the environment variable holding an API key); its `trust` section is always ignored (a
  workspace cannot trust itself);
- the adapters the workspace holds in `.smalltalk-lsp/adapters/`.

A root is trusted when the `trust.workspace` setting is true (VS Code sends it from its
Workspace Trust, the Neovim plugin from `vim.secure` or its `trusted_roots`, `serve
--trust-workspace` sets it) or when it lies inside one of `trust.trusted_roots` (user config or
editor settings). The default is untrusted.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# `models.*` keys a workspace's own file may not point at a file unless it is trusted (it may
# not set `adapters.folders` nor `backends` either).
MODEL_KEYS = ("code_generation", "reasoning", "embeddings", "coder_training_checkpoint")
HELD_ADAPTERS = Path(".smalltalk-lsp") / "adapters"
ADVICE = (
    "static features and your own models keep working; to load them, trust the workspace "
    "(VS Code: Manage Workspace Trust; Neovim: :trust or the plugin's trusted_roots; "
    "the setting trust.trusted_roots in your user configuration; or `smalltalk-lsp serve "
    "--trust-workspace`)"
)


def is_trusted(root: Path, workspace: bool, trusted_roots: Sequence[str]) -> bool:
    """True if binaries `root` supplies may be loaded."""
    if workspace:
        return True
    resolved = _resolve(root)
    for entry in trusted_roots:
        if not entry.strip():
            continue
        trusted = _resolve(Path(os.path.expanduser(entry.strip())))
        if resolved == trusted or trusted in resolved.parents:
            return True
    return False


def _resolve(path: Path) -> Path:
    try:
        return path.resolve()
    except OSError:
        return path.absolute()


def names_a_path(value: Any, workspace: Path) -> bool:
    """True if a model setting names a file or folder (not an embedded model's name or "off")."""
    if not isinstance(value, str):
        return False
    text = value.strip()
    if not text or text.lower() in ("off", "none"):
        return False
    if any(sep in text for sep in ("/", "\\")) or text.startswith(("~", ".")):
        return True
    return text.lower().endswith(".gguf") or (workspace / text).exists()


def workspace_layer(
    data: dict[str, Any], source: Path, workspace: Path, trusted: bool
) -> tuple[dict[str, Any], list[str], list[str]]:
    """The workspace file's settings as far as they may apply: (kept settings, problems,
    ignored entries naming what was dropped)."""
    kept = {key: dict(value) if isinstance(value, dict) else value for key, value in data.items()}
    problems = []
    if "trust" in kept:
        del kept["trust"]
        problems.append(f"{source}: the 'trust' section is ignored here (a workspace cannot "
                        "trust itself; set it in your user configuration or editor)")
    if trusted:
        return kept, problems, []
    ignored = []
    models = kept.get("models")
    if isinstance(models, dict):
        for key in MODEL_KEYS:
            if key in models and names_a_path(models[key], workspace):
                ignored.append(f"{source} names models.{key} = {models.pop(key)!r}")
    folders = kept.get("adapters")
    if isinstance(folders, dict) and folders.get("folders"):
        ignored.append(f"{source} sets adapters.folders = {folders.pop('folders')!r}")
    if kept.get("backends"):
        del kept["backends"]
        ignored.append(f"{source} sets [backends] (remote servers and their API key)")
    return kept, problems, ignored


def held_adapters(root: Path) -> list[Path]:
    """The adapter files a workspace root holds (ignored while it is untrusted)."""
    folder = root / HELD_ADAPTERS
    try:
        return sorted(p for p in folder.iterdir() if p.suffix == ".gguf" and p.is_file())
    except OSError:
        return []


def notice(
    roots: Sequence[Path], workspace: bool, trusted_roots: Sequence[str], ignored: Sequence[str]
) -> str | None:
    """The message naming what an untrusted workspace supplied and the server ignores, or None."""
    items = list(ignored)
    for root in roots:
        if not is_trusted(root, workspace, trusted_roots):
            items += [f"{path} (an adapter the workspace holds)" for path in held_adapters(root)]
    if not items:
        return None
    return (
        "smalltalk-lsp: this workspace is not trusted, so the model and adapter files it names "
        "or holds are not loaded: " + "; ".join(items) + ". " + ADVICE[0].upper() + ADVICE[1:]
        + "."
    )
