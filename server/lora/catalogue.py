"""The adapters a workspace can use: GGUF LoRA files (with optional manifests) in known folders.

Folders, earlier ones winning a name clash: each trusted workspace root's
`.smalltalk-lsp/adapters/` (server.trust),
the folders of the `adapters.folders` setting (relative ones against the first root), the
user's data dir (`$XDG_DATA_HOME/smalltalk-lsp/adapters`, by default
`~/.local/share/smalltalk-lsp/adapters`), and last the adapters shipped with the server for an
embedded model a role runs (`server/lora/embedded/<embedded model name>/`, see
`embedded_folders`; off until activated, as any adapter without a pattern). A bare `.gguf`
file is an adapter named after its stem, for the architecture its metadata names; a manifest
beside it adds a name, purpose, pattern and default scale (server.lora.manifest).

The catalogue only reads headers: an entry that fails the file checks (not GGUF, not a LoRA,
truncated, a bad manifest) is listed with its error and never loaded; the checks against the
base model run when it is loaded (server.engine.lora).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, Field

from server.engine.lora_validation import AdapterError, inspect_adapter
from server.lora.manifest import (
    AdapterManifest,
    ManifestError,
    Purpose,
    manifest_path_for,
    pattern_matches,
    read_manifest,
)

log = logging.getLogger(__name__)

WORKSPACE_FOLDER = Path(".smalltalk-lsp") / "adapters"
ADAPTER_SUFFIX = ".gguf"
# Files whose change may change the catalogue (adapters and their manifests).
WATCHED_SUFFIXES = (".gguf", ".json", ".toml")
# Watch globs for the client (workspace/didChangeWatchedFiles).
WATCH_GLOBS = ("**/.smalltalk-lsp/adapters/*.gguf", "**/.smalltalk-lsp/adapters/*.{json,toml}")


class AdapterEntry(BaseModel):
    name: str
    path: str
    folder: str
    # From the adapter's metadata (general.architecture); None if the file cannot be read.
    base_architecture: str | None = None
    base_model: str | None = None
    purpose: Purpose | None = None
    pattern: list[str] = Field(default_factory=list)
    scale: float = 1.0
    description: str = ""
    manifest_path: str | None = None
    size: int = 0
    rank: int | None = None
    # Fingerprints of the adapter file and of its manifest ("" if none).
    version: str = ""
    manifest_version: str = ""
    # Why the file cannot be used (a failed check or a bad manifest), or None.
    error: str | None = None
    error_check: str | None = None

    @property
    def usable(self) -> bool:
        return self.error is None

    def role(self, architectures: dict[str, str] | None = None) -> str:
        """The model role this adapter is for: its manifest's purpose, else the role whose
        model has its architecture (the coder first), else the coder."""
        if self.purpose is not None:
            return "reasoner" if self.purpose == "explanation" else "coder"
        for role in ("coder", "reasoner"):
            if architectures and architectures.get(role) == self.base_architecture:
                return role
        return "coder"

    def applies_to(self, file_path: str | None, package: str | None, root: Path | None) -> bool:
        return pattern_matches(self.pattern, file_path, package, root)


@dataclass
class CatalogueChanges:
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.added or self.changed or self.removed)


def user_adapter_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "smalltalk-lsp" / "adapters"


# Adapters shipped with the server, one folder per embedded base model's name.
EMBEDDED_ADAPTERS = Path(__file__).resolve().parent / "embedded"


def embedded_folders(models: Iterable[str | None]) -> list[Path]:
    """The shipped adapter folders of these configured models (embedded names only)."""
    found = []
    for name in models:
        folder = EMBEDDED_ADAPTERS / (name or "").strip().lower()
        if name and folder.is_dir() and folder.parent == EMBEDDED_ADAPTERS:
            found.append(folder)
    return found


def adapter_folders(
    roots: Sequence[Path],
    configured: Iterable[str] = (),
    user_dir: Path | None = None,
    holding: Sequence[Path] | None = None,
    shipped: Sequence[Path] = (),
) -> list[Path]:
    """The folders to search, in order of precedence, without duplicates. `holding`: the roots
    whose own `.smalltalk-lsp/adapters/` is searched (the trusted ones; None: every root);
    `shipped`: the server's own adapter folders (embedded_folders), searched last."""
    held = roots if holding is None else [root for root in roots if root in holding]
    folders = [Path(root) / WORKSPACE_FOLDER for root in held]
    for entry in configured:
        path = Path(os.path.expanduser(entry.strip()))
        if not path.is_absolute() and roots:
            path = Path(roots[0]) / path
        folders.append(path)
    folders.append(user_dir if user_dir is not None else user_adapter_dir())
    folders.extend(shipped)
    unique: list[Path] = []
    for folder in folders:
        folder = folder.absolute()
        if folder not in unique:
            unique.append(folder)
    return unique


def _version(path: Path) -> str:
    try:
        stat = path.stat()
    except OSError:
        return ""
    return f"{stat.st_size:x}-{stat.st_mtime_ns:x}"


def read_entry(path: Path, folder: Path) -> AdapterEntry:
    """One adapter file and its manifest, with the error of the first failed check."""
    entry = AdapterEntry(name=path.stem, path=str(path), folder=str(folder), version=_version(path))
    try:
        entry.size = path.stat().st_size
    except OSError:
        pass
    manifest = AdapterManifest()
    manifest_path = manifest_path_for(path)
    if manifest_path is not None:
        entry.manifest_path = str(manifest_path)
        entry.manifest_version = _version(manifest_path)
        try:
            manifest = read_manifest(manifest_path)
        except ManifestError as err:
            entry.error, entry.error_check = str(err), "manifest"
    entry.name = manifest.name or path.stem
    entry.base_model = manifest.base_model
    entry.purpose = manifest.purpose
    entry.pattern = list(manifest.pattern)
    entry.scale = manifest.scale
    entry.description = manifest.description
    try:
        info = inspect_adapter(path)
    except AdapterError as err:
        entry.error, entry.error_check = str(err), err.check
        return entry
    entry.base_architecture = info.architecture
    entry.rank = max(info.ranks) if info.ranks else None
    wanted = manifest.base_architecture
    if wanted and wanted != info.architecture and entry.error is None:
        entry.error = (
            f"{path}: architecture check failed: the manifest says '{wanted}', "
            f"the file is for '{info.architecture}'"
        )
        entry.error_check = "architecture"
    return entry


def scan_folders(
    folders: Sequence[Path], known: dict[str, AdapterEntry] | None = None
) -> tuple[dict[str, AdapterEntry], list[str]]:
    """Every adapter in the folders (not recursive), first folder winning a name; also a list
    of warnings about shadowed names. Entries in `known` whose adapter and manifest files are
    unchanged are reused, so polling costs a directory listing and a few stats."""
    entries: dict[str, AdapterEntry] = {}
    warnings: list[str] = []
    for folder in folders:
        try:
            files = sorted(p for p in folder.iterdir() if p.suffix == ADAPTER_SUFFIX)
        except OSError:
            continue  # a folder that does not exist (yet) holds no adapters
        for path in files:
            if not path.is_file():
                continue
            entry = _reuse(known, path) or read_entry(path, folder)
            if entry.name in entries:
                warnings.append(
                    f"adapter '{entry.name}' in {path} is shadowed by {entries[entry.name].path}"
                )
                continue
            entries[entry.name] = entry
    return entries, warnings


def _reuse(known: dict[str, AdapterEntry] | None, path: Path) -> AdapterEntry | None:
    entry = (known or {}).get(str(path))
    if entry is None or entry.version != _version(path):
        return None
    manifest = manifest_path_for(path)
    if (str(manifest) if manifest else None) != entry.manifest_path:
        return None
    if manifest is not None and _version(manifest) != entry.manifest_version:
        return None
    return entry


class Catalogue:
    """The adapters found in a list of folders; `refresh` reports what changed."""

    def __init__(self, folders: Sequence[Path] = ()) -> None:
        self.folders = [Path(f) for f in folders]
        self._entries: dict[str, AdapterEntry] = {}
        self._lock = threading.Lock()

    def set_folders(self, folders: Sequence[Path]) -> CatalogueChanges:
        self.folders = [Path(f) for f in folders]
        return self.refresh()

    def refresh(self) -> CatalogueChanges:
        with self._lock:
            known = {entry.path: entry for entry in self._entries.values()}
        entries, warnings = scan_folders(self.folders, known)
        for warning in warnings:
            log.warning("%s", warning)
        with self._lock:
            old = self._entries
            self._entries = entries
        changes = CatalogueChanges()
        for name, entry in entries.items():
            before = old.get(name)
            if before is None:
                changes.added.append(name)
            elif (before.path, before.version, before.manifest_version) != (
                entry.path,
                entry.version,
                entry.manifest_version,
            ):
                changes.changed.append(name)
        changes.removed = sorted(set(old) - set(entries))
        for name in changes.added + changes.changed:
            if entries[name].error:
                log.warning("adapter %s: %s", name, entries[name].error)
        return changes

    def get(self, name: str) -> AdapterEntry | None:
        with self._lock:
            return self._entries.get(name)

    def entries(self) -> list[AdapterEntry]:
        with self._lock:
            return sorted(self._entries.values(), key=lambda e: e.name)

    def covers(self, path: str | Path) -> bool:
        """True if a change to this file may change the catalogue."""
        path = Path(path).absolute()
        return path.suffix in WATCHED_SUFFIXES and any(path.parent == f for f in self.folders)

    def matching(
        self,
        file_path: str | None,
        package: str | None,
        role: str,
        root: Path | None,
        architectures: dict[str, str] | None = None,
    ) -> list[AdapterEntry]:
        """Usable adapters for `role` whose manifest pattern matches the file or package."""
        return [
            entry
            for entry in self.entries()
            if entry.usable
            and entry.role(architectures) == role
            and entry.applies_to(file_path, package, root)
        ]
