"""What the actions need from the models (`server.models.Models` provides it; tests may use a
scripted stand-in): the reasoner, a coder context of their own, and the gate that lets
completions go first (see generate.generate_yielding).
"""

from __future__ import annotations

from typing import Protocol

from server.engine.backend import EngineBackend
from server.engine.types import CancelToken, Role, TextEngine


class ActionError(Exception):
    """An action cannot produce its result; the message is for the user."""


class ActionCancelled(ActionError):
    pass


class ActionModels(Protocol):
    def reasoner(self, cancel: CancelToken) -> EngineBackend: ...

    def coder(self, cancel: CancelToken) -> TextEngine: ...

    def gate(self) -> bool: ...

    def configured(self, role: Role) -> bool: ...

    def model_name(self, role: Role) -> str | None: ...
