"""What the features use of a role's engine, whether it runs in this process or on a server.

`TextEngine` (server.engine.types) is the generation half: a model id, the FIM tokens and a
blocking `generate`. Features also read a little of the model behind it: the chat template
(code actions), and the architecture, file and LoRA adapter pool (the adapters feature). The
in-process `LlamaSession` (over a `LoadedModel`) and the `RemoteEngine` (over a `RemoteModel`,
server.engine.remote) both fit these protocols; the registry hands out `EngineBackend`s.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from server.engine.lora import ActiveAdapter
from server.engine.types import TextEngine


class ModelInfo(Protocol):
    @property
    def architecture(self) -> str: ...


class AdapterPool(Protocol):
    """The LoRA adapters a model can apply, by name (server.engine.lora.ModelAdapters in
    process; the adapters a server offers for a remote model)."""

    def get(self, name: str) -> Any: ...

    def names(self) -> list[str]: ...

    def load(self, name: str, path: str | Path) -> Any:
        """Make `name` usable; raises AdapterError or AdapterLoadError with the reason.
        Returns the same object when nothing changed."""
        ...

    def unload(self, name: str) -> bool: ...

    def active(self, wanted: Sequence[tuple[str, float]]) -> tuple[ActiveAdapter, ...]: ...

    def close(self) -> None: ...


class EngineModel(Protocol):
    """The model behind an engine, as the features see it."""

    @property
    def path(self) -> Path:
        """The GGUF file (for a remote model: a local copy of it, which may not exist)."""
        ...

    @property
    def info(self) -> ModelInfo: ...

    @property
    def adapters(self) -> AdapterPool: ...

    def chat_template(self) -> str | None: ...


class EngineBackend(TextEngine, Protocol):
    """A role's engine as the registry hands it out."""

    @property
    def model(self) -> EngineModel: ...

    def close(self) -> None: ...
