"""An adapter's manifest: `<name>.json` or `<name>.toml` beside `<name>.gguf`.

Every key is optional; a bare GGUF file works without one. Example (TOML):

    name = "acme-conventions"
    base_model = "gemma3-270m"
    base_architecture = "gemma3"
    purpose = "completion"          # or "explanation" (the reasoning model)
    pattern = ["Acme-*", "src/acme/**"]
    scale = 0.8
    description = "Acme's class names and idioms"

`pattern` globs are matched against the edited file's path (relative to the workspace and
absolute), its folders and name, and its package (category) name: an adapter with a pattern
applies on its own to matching files; one without applies only when activated.
"""

from __future__ import annotations

import fnmatch
import json
import tomllib
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

Purpose = Literal["completion", "explanation"]
MANIFEST_SUFFIXES = (".json", ".toml")


class ManifestError(ValueError):
    """A manifest that cannot be read or has bad keys; the message names the file and key."""


class AdapterManifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    # The base model it was trained for: an embedded model's name or a GGUF file name.
    base_model: str | None = None
    # If given, must equal the adapter file's general.architecture.
    base_architecture: str | None = None
    # None: decided by the architecture (the role whose model it fits, the coder first).
    purpose: Purpose | None = None
    pattern: list[str] = Field(default_factory=list)
    scale: float = 1.0
    description: str = ""
    # Free-form facts about how it was made (dataset, steps, loss); kept, never interpreted.
    training: dict[str, Any] = Field(default_factory=dict)

    @field_validator("pattern", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [value] if value.strip() else []
        return value

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or "/" in value or "\\" in value):
            raise ValueError("must be a non-empty name without slashes")
        return value.strip() if value is not None else None

    @property
    def role(self) -> str:
        """The model role this adapter is for."""
        return "reasoner" if self.purpose == "explanation" else "coder"


def manifest_path_for(adapter: str | Path) -> Path | None:
    """The manifest beside an adapter file, if there is one (JSON wins over TOML)."""
    adapter = Path(adapter)
    for suffix in MANIFEST_SUFFIXES:
        candidate = adapter.with_suffix(suffix)
        if candidate.is_file():
            return candidate
    return None


def read_manifest(path: str | Path) -> AdapterManifest:
    """Parse a manifest file; ManifestError names the file and what is wrong."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ManifestError(f"{path}: cannot read manifest: {err}") from err
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as err:
        kind = path.suffix[1:].upper()
        raise ManifestError(f"{path}: manifest is not valid {kind}: {err}") from err
    if not isinstance(data, dict):
        raise ManifestError(f"{path}: manifest must be an object, got {type(data).__name__}")
    try:
        return AdapterManifest.model_validate(data)
    except ValidationError as err:
        problems = "; ".join(
            f"'{'.'.join(str(p) for p in e['loc'])}': {e['msg']}" for e in err.errors()
        )
        raise ManifestError(f"{path}: bad manifest: {problems}") from err


def write_manifest(adapter: str | Path, manifest: AdapterManifest) -> Path:
    """Write `<adapter stem>.json` beside the adapter file and return its path."""
    path = Path(adapter).with_suffix(".json")
    data = manifest.model_dump(exclude_defaults=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path


def pattern_matches(
    patterns: Sequence[str],
    file_path: str | None,
    package: str | None = None,
    root: str | Path | None = None,
) -> bool:
    """True if a glob matches the file (relative or absolute path, a folder or the file name)
    or the package name. Globs with a slash are matched against whole paths only."""
    if not patterns:
        return False
    names: list[str] = []
    paths: list[str] = []
    if file_path:
        posix = PurePosixPath(Path(file_path).as_posix())
        paths.append(str(posix))
        if root is not None:
            try:
                paths.append(Path(file_path).relative_to(Path(root)).as_posix())
            except ValueError:
                pass
        names.extend(part for part in posix.parts if part != "/")
    if package:
        names.append(package)
    for pattern in patterns:
        pattern = pattern.strip()
        if not pattern:
            continue
        candidates = paths if "/" in pattern else names
        if any(_glob(candidate, pattern) for candidate in candidates):
            return True
    return False


def _glob(text: str, pattern: str) -> bool:
    # `**/` also matches no folder at all, as in gitignore and VS Code globs.
    if fnmatch.fnmatchcase(text, pattern):
        return True
    return "**/" in pattern and fnmatch.fnmatchcase(text, pattern.replace("**/", ""))
