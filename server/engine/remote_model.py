"""The model behind a remote engine, as the features see it (server.engine.backend.EngineModel):
its architecture, chat template and FIM tokens (from a local copy of the GGUF when there is
one), and the LoRA adapters the server offers (an AdapterPool whose `load` checks a name
against the server's list instead of loading a file).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from server.config import RoleBackend, Settings
from server.engine.embedded import ModelNotFound, resolve_model_path
from server.engine.gguf_info import GGUFError, GGUFInfo, read_gguf
from server.engine.lora import ActiveAdapter, AdapterLoadError
from server.engine.types import FimTokens, Role

log = logging.getLogger(__name__)

AdapterMode = Literal["lora-field", "models", "off"]


@dataclass(frozen=True)
class RemoteInfo:
    architecture: str


@dataclass
class RemoteLora:
    name: str
    path: str
    # What the server calls it: an id (lora-field) or a model name (models).
    server_id: int | str
    version: str


class RemoteAdapters:
    """The adapters a server offers, made usable by name (the AdapterPool of a remote model).
    `load` checks the name against the server's list instead of loading a file."""

    def __init__(
        self,
        server: str,
        mode: AdapterMode,
        offered: Mapping[str, int] | Mapping[str, str] | None = None,
        why_none: str = "",
    ) -> None:
        self.server = server
        self.mode = mode
        self.offered: dict[str, int | str] = dict(offered or {})
        self.why_none = why_none
        self._loaded: dict[str, RemoteLora] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> RemoteLora | None:
        with self._lock:
            return self._loaded.get(name)

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._loaded)

    def load(self, name: str, path: str | Path) -> RemoteLora:
        if self.mode == "off":
            raise AdapterLoadError(
                f"adapter '{name}' cannot be used with the remote server {self.server}: "
                f"{self.why_none or 'adapters are off'}"
            )
        server_id = self.offered.get(name)
        if server_id is None:
            offers = ", ".join(sorted(self.offered)) or "none"
            raise AdapterLoadError(
                f"the remote server {self.server} has no adapter '{name}' (it offers: {offers})"
            )
        with self._lock:
            current = self._loaded.get(name)
            if current is not None and current.server_id == server_id:
                return current
            loaded = RemoteLora(name, str(path), server_id, f"{self.mode}:{server_id}")
            self._loaded[name] = loaded
        return loaded

    def unload(self, name: str) -> bool:
        with self._lock:
            return self._loaded.pop(name, None) is not None

    def active(self, wanted: Sequence[tuple[str, float]]) -> tuple[ActiveAdapter, ...]:
        result = []
        with self._lock:
            for name, scale in wanted:
                loaded = self._loaded.get(name)
                if loaded is not None and scale != 0.0:
                    result.append(ActiveAdapter(name, float(scale), loaded.version))
        return tuple(sorted(result, key=lambda a: a.name))

    def close(self) -> None:
        with self._lock:
            self._loaded.clear()


@dataclass
class RemoteModel:
    """The remote model as features see it (server.engine.backend.EngineModel)."""

    path: Path
    info: RemoteInfo
    adapters: RemoteAdapters
    template: str | None = None

    def chat_template(self) -> str | None:
        return self.template


def local_copy(settings: Settings, role: Role, workspace: Path | None) -> GGUFInfo | None:
    """The header of the role's model when `models.*` names a file present here (FIM tokens,
    chat template, architecture); None otherwise."""
    name = settings.model_for(role)
    if name is None:
        return None
    try:
        path = resolve_model_path(name, workspace)
        return read_gguf(path) if path.is_file() else None
    except (ModelNotFound, GGUFError, OSError) as err:
        log.info("no local copy of the %s model for its metadata: %s", role, err)
        return None


def fim_of(config: RoleBackend, local: GGUFInfo | None) -> FimTokens | None:
    if config.fim_tokens is not None:
        prefix, suffix, middle = config.fim_tokens
        return FimTokens(prefix, suffix, middle)
    if local is not None and local.has_fim:
        tokens = local.fim_tokens
        return FimTokens(tokens["pre"], tokens["suf"], tokens["mid"])
    return None
