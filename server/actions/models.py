"""What the actions need from the model engine: the reasoner, a coder context of their own,
a worker thread, and the gate that lets completions go first.

The actions' coder context is separate from the completion context over the same weights, so
writing a test class does not throw away the KV prefix that keeps completions fast. Actions
run on their own worker thread (one at a time, hover summaries included); while the coder's
worker has a completion queued or running, they pause (see generate.generate_yielding).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from server.engine.backend import EngineBackend
from server.engine.registry import LlamaEngine, ModelRegistry
from server.engine.types import (
    CancelToken,
    GenerateParams,
    Generation,
    Role,
    StopCheck,
    TextEngine,
)
from server.engine.worker import InferenceWorker, Job

log = logging.getLogger(__name__)

# The actions' own coder context: prompts are a plan or a method plus a little context.
CODER_N_CTX = 2048
LOAD_WAIT_S = 300.0
_LABELS = {"reasoner": "reasoning model", "coder": "coder model"}
_SETTINGS = {"reasoner": "models.reasoning", "coder": "models.code_generation"}


class ActionError(Exception):
    """An action cannot produce its result; the message is for the user."""


class ActionCancelled(ActionError):
    pass


class _PrivateCoder(LlamaEngine):
    """The coder's weights with a context of its own (smaller; closed before the weights)."""

    def __init__(self, base: LlamaEngine) -> None:
        super().__init__(replace(base.spec, n_ctx=min(base.spec.n_ctx, CODER_N_CTX)), base.model)
        self.base = base
        self.closing = threading.Event()

    def generate(
        self,
        prompt: str,
        params: GenerateParams,
        cancel: CancelToken,
        stop_check: StopCheck | None = None,
    ) -> Generation:
        if self.closing.is_set():
            return Generation("", "error", error="the coder model was unloaded")
        return super().generate(prompt, params, _Either(cancel, self.closing), stop_check)

    def close(self) -> None:
        self.closing.set()
        super().close()  # waits for a generation in progress (it stops within a token)


class _Either(CancelToken):
    def __init__(self, outer: CancelToken, closing: threading.Event) -> None:
        super().__init__()
        self.outer = outer
        self.closing = closing

    @property
    def cancelled(self) -> bool:
        return self.outer.cancelled

    def should_stop(self) -> bool:
        return self.outer.should_stop() or self.closing.is_set()


# Benchmarks set this to measure completions against actions that do not give way.
NO_YIELD_ENV = "SMALLTALK_LSP_ACTIONS_NO_YIELD"


class ActionModels:
    def __init__(self, registry: Callable[[], ModelRegistry | None]) -> None:
        self._registry = registry
        self._yield = not os.environ.get(NO_YIELD_ENV)
        self._lock = threading.Lock()
        self._coder: _PrivateCoder | None = None
        self._hooked: ModelRegistry | None = None
        self._active: set[CancelToken] = set()
        self.worker = InferenceWorker("actions")

    # --- running -------------------------------------------------------------------------

    def submit(self, fn: Callable[[CancelToken], Any], key: str | None = None) -> Job:
        """Run `fn(cancel)` on the actions' worker; unloading a model cancels it. An
        ActionError is the job's result (a message for the user, not a crash to log)."""

        def run(cancel: CancelToken) -> Any:
            with self._lock:
                self._active.add(cancel)
            try:
                return fn(cancel)
            except ActionError as err:
                return err
            finally:
                with self._lock:
                    self._active.discard(cancel)

        return self.worker.submit(run, key=key)

    def gate(self) -> bool:
        """True while a completion is queued or running on the coder's worker."""
        registry = self._registry()
        worker = registry.worker("coder") if registry is not None and self._yield else None
        return worker is not None and worker.busy

    # --- engines -------------------------------------------------------------------------

    def reasoner(self, cancel: CancelToken) -> EngineBackend:
        return self._engine("reasoner", cancel)

    def coder(self, cancel: CancelToken) -> TextEngine:
        base = self._engine("coder", cancel)
        if not isinstance(base, LlamaEngine):
            return base  # a remote server keeps its own contexts; completions lose nothing
        with self._lock:
            if self._coder is None or self._coder.base is not base:
                old, self._coder = self._coder, None
                if old is not None:
                    old.close()
                try:
                    self._coder = _PrivateCoder(base)
                except (RuntimeError, OSError) as err:
                    raise ActionError(f"the coder model could not get a context: {err}") from err
            return self._coder

    def configured(self, role: Role) -> bool:
        registry = self._registry()
        return registry is not None and registry.settings.model_for(role) is not None

    def model_name(self, role: Role) -> str | None:
        registry = self._registry()
        return registry.settings.model_for(role) if registry is not None else None

    def _engine(self, role: Role, cancel: CancelToken) -> EngineBackend:
        registry = self._registry()
        label = _LABELS[role]
        if registry is None:
            raise ActionError("the models have not been started yet (the server is initialising)")
        self._hook(registry)
        if registry.settings.model_for(role) is None:
            raise ActionError(
                f"no {label} is configured (the setting {_SETTINGS[role]} is off); set it to "
                "a GGUF file or an embedded model to use this action"
            )
        deadline = time.monotonic() + LOAD_WAIT_S
        while True:
            engine = registry.engine(role)
            if engine is not None:
                return engine
            if registry.states.get(role) == "failed":
                error = registry.errors.get(role, "unknown error")
                raise ActionError(f"the {label} failed to load: {error}")
            if cancel.should_stop():
                raise ActionCancelled("cancelled")
            if time.monotonic() > deadline:
                raise ActionError(f"the {label} is still loading; try again in a moment")
            time.sleep(0.1)

    def _hook(self, registry: ModelRegistry) -> None:
        with self._lock:
            if self._hooked is registry:
                return
            self._hooked = registry
        hooks = getattr(registry, "before_unload", None)
        if isinstance(hooks, list):
            hooks.append(self._before_unload)

    def _before_unload(self, role: Role) -> None:
        with self._lock:
            for cancel in self._active:
                cancel.cancel()
            coder = self._coder if role == "coder" else None
            if coder is not None:
                self._coder = None
        if coder is not None:
            coder.close()

    def close(self) -> None:
        with self._lock:
            coder, self._coder = self._coder, None
        self.worker.close()
        if coder is not None:
            coder.close()
