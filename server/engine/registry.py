"""Models by role: which file each role uses, loading them (weights shared per file), one
context and one inference worker per role, and the state the editor is told about.

Roles naming the same file (and the same mmap/mlock choice) share one `llama_model`; each
role has its own context, so the coder's KV cache survives an explanation.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from server.config import Settings
from server.engine.backend import EngineBackend
from server.engine.embedded import ModelNotFound, resolve_model_path
from server.engine.llama_model import LoadedModel, ModelLoadError, check_model_file, load_model
from server.engine.memory import MB, plan_memory, role_needs
from server.engine.session import LlamaSession
from server.engine.types import (
    ROLES,
    CancelToken,
    GenerateParams,
    Generation,
    Role,
    StopCheck,
)
from server.engine.worker import InferenceWorker

log = logging.getLogger(__name__)

State = Literal["off", "loading", "ready", "failed"]
Listener = Callable[[Role, State, str | None], None]


@dataclass(frozen=True)
class RoleSpec:
    role: Role
    name: str
    path: Path
    n_ctx: int
    n_batch: int
    # Generation threads (see CpuSettings.generation_threads).
    n_threads: int
    mmap: bool
    mlock: bool
    # Prompt-processing threads; 0 means n_threads.
    n_threads_batch: int = 0
    # Generate on the cores the machine leaves free, n_threads at least (server.engine.cpu).
    adaptive_threads: bool = False

    @property
    def weights_key(self) -> tuple[str, bool, bool]:
        return (str(self.path.resolve()), self.mmap, self.mlock)


def role_spec(settings: Settings, role: Role, workspace: Path | None = None) -> RoleSpec | None:
    """The spec of a role, or None when it is off. ModelNotFound if an embedded one is missing."""
    name = settings.model_for(role)
    if name is None:
        return None
    cpu = settings.cpu_settings
    return RoleSpec(
        role=role,
        name=name,
        path=resolve_model_path(name, workspace),
        n_ctx=settings.n_ctx_for(role),
        n_batch=role_batch(settings, role),
        n_threads=cpu.token_threads,
        n_threads_batch=cpu.threads,
        # Completions only: their generations are short, while a reasoner's run for minutes
        # and would hold both cores against the completions asked beside it.
        adaptive_threads=cpu.generation_threads is None and role == "coder",
        mmap=settings.mmap,
        mlock=settings.mlock,
    )


# Prompt-processing batch of the roles other than the coder. Their prompts are evaluated once
# (no per-keystroke reuse), where a 128-token batch is about as fast on a CPU as a larger one,
# and the compute buffer it reserves is a quarter: a second role on the coder's weights then
# adds little memory.
LEAN_BATCH = 128


def role_batch(settings: Settings, role: Role) -> int:
    batch = settings.cpu_settings.batch_size
    return batch if role == "coder" else min(batch, LEAN_BATCH)


def open_context(spec: RoleSpec, model: LoadedModel) -> LlamaSession:
    """A role's in-process TextEngine: a llama.cpp context of its own over a (possibly shared)
    model."""
    return LlamaSession(model, **_context_params(spec, model))


def _context_params(spec: RoleSpec, model: LoadedModel) -> dict[str, Any]:
    # The coder reuses partial prefixes on every keystroke, which needs the full-size
    # sliding-window cache; other roles keep the smaller one (less memory on Gemma 3).
    return {
        "n_ctx": min(spec.n_ctx, max(model.n_ctx_train, 1)),
        "n_batch": spec.n_batch,
        "n_threads": spec.n_threads,
        "n_threads_batch": spec.n_threads_batch,
        "adaptive_threads": spec.adaptive_threads,
        "swa_full": spec.role == "coder",
    }


class PrivateContext(LlamaSession):
    """A role's weights with a context of their own (e.g. the code actions' coder, so they
    keep the completion context's KV prefix). Close it before the weights: `close` stops a
    generation in progress within a token and waits for it."""

    def __init__(self, base: LlamaSession, spec: RoleSpec, n_ctx: int) -> None:
        own = replace(spec, n_ctx=min(spec.n_ctx, n_ctx))
        super().__init__(base.model, **_context_params(own, base.model))
        self.base = base
        self.role = spec.role
        self.closing = threading.Event()

    def generate(
        self,
        prompt: str,
        params: GenerateParams,
        cancel: CancelToken,
        stop_check: StopCheck | None = None,
    ) -> Generation:
        if self.closing.is_set():
            return Generation("", "error", error=f"the {self.role} model was unloaded")
        return super().generate(prompt, params, _Either(cancel, self.closing), stop_check)

    def close(self) -> None:
        self.closing.set()
        super().close()


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


class ModelRegistry:
    def __init__(self, settings: Settings, workspace: Path | None = None) -> None:
        self.settings = settings
        self.workspace = workspace
        self.listeners: list[Listener] = []
        # Called with a role before its engine and model are freed (other contexts over the
        # same weights, such as the code actions' own coder context, close themselves here).
        self.before_unload: list[Callable[[Role], None]] = []
        self._lock = threading.RLock()
        self._models: dict[tuple[str, bool, bool], tuple[LoadedModel, set[Role]]] = {}
        self._engines: dict[Role, EngineBackend] = {}
        self._workers: dict[Role, InferenceWorker] = {}
        self._specs: dict[Role, RoleSpec | None] = {}
        self.states: dict[Role, State] = {role: "off" for role in ROLES}
        self.errors: dict[Role, str] = {}
        self._loader: threading.Thread | None = None
        self._closed = False

    # --- state -------------------------------------------------------------------------

    def _set_state(self, role: Role, state: State, error: str | None = None) -> None:
        with self._lock:
            self.states[role] = state
            if error:
                self.errors[role] = error
            else:
                self.errors.pop(role, None)
        for listener in list(self.listeners):
            try:
                listener(role, state, error)
            except Exception:
                log.exception("model state listener failed")

    def engine(self, role: Role) -> EngineBackend | None:
        with self._lock:
            return self._engines.get(role)

    def worker(self, role: Role) -> InferenceWorker | None:
        with self._lock:
            return self._workers.get(role)

    def spec(self, role: Role) -> RoleSpec | None:
        """What a role loaded in process runs (None when it is off or remote)."""
        with self._lock:
            return self._specs.get(role)

    # --- loading -----------------------------------------------------------------------

    def load(self, role: Role) -> EngineBackend | None:
        """Load a role now (blocking); None when it is off or failed (see `errors`)."""
        with self._lock:
            if self._closed:
                return None
            if role in self._engines:
                return self._engines[role]
        if self.settings.backend_for(role).backend == "remote" and self.settings.model_for(role):
            return self._load_remote(role)
        try:
            spec = role_spec(self.settings, role, self.workspace)
        except ModelNotFound as err:
            self._set_state(role, "failed", str(err))
            return None
        if spec is None:
            self._set_state(role, "off")
            return None
        self._set_state(role, "loading")
        try:
            engine = self._load_spec(spec)
        except (ModelLoadError, RuntimeError, OSError) as err:
            log.error("%s model failed: %s", role, err)
            self._set_state(role, "failed", str(err))
            return None
        with self._lock:
            self._engines[role] = engine
            self._workers[role] = InferenceWorker(role)
            self._specs[role] = spec
        self._set_state(role, "ready")
        return engine

    def _load_remote(self, role: Role) -> EngineBackend | None:
        """A role served by a remote server (server.engine.remote): no weights here."""
        from server.engine.remote import RemoteEngine, RemoteSetupError

        self._set_state(role, "loading")
        try:
            engine = RemoteEngine(role, self.settings, self.workspace, self._set_state)
        except RemoteSetupError as err:
            self._set_state(role, "failed", str(err))
            return None
        with self._lock:
            self._engines[role] = engine
            self._workers[role] = InferenceWorker(role)
            self._specs[role] = None
        engine.start()  # reports "ready", or "failed" while it retries in the background
        return engine

    def _load_spec(self, spec: RoleSpec) -> LlamaSession:
        info = check_model_file(spec.path)
        with self._lock:
            shared = self._models.get(spec.weights_key)
        sharer = next(iter(shared[1])) if shared else None
        needs = role_needs(spec.role, info, spec.n_ctx, spec.n_batch, sharer)
        plan = plan_memory([needs])
        if not plan.fits:
            raise ModelLoadError(
                f"{spec.path}: the {spec.role} role needs about {needs.total_bytes / MB:.0f} MiB "
                f"but only {plan.available_bytes / MB:.0f} MiB are free (lower n_ctx or use a "
                f"smaller model; `smalltalk-lsp doctor` shows the plan)"
            )
        if shared is None:
            model = load_model(spec.path, spec.mmap, spec.mlock)
            with self._lock:
                shared = self._models.setdefault(spec.weights_key, (model, set()))
        model, users = shared
        engine = open_context(spec, model)
        users.add(spec.role)
        return engine

    def start_loading(self, roles: tuple[Role, ...] = ROLES) -> threading.Thread:
        """Load the roles on a background thread; listeners hear each state change."""

        def run() -> None:
            for role in roles:
                self.load(role)

        thread = threading.Thread(target=run, name="model-loader", daemon=True)
        self._loader = thread
        thread.start()
        return thread

    def wait_loaded(self, timeout: float | None = None) -> None:
        if self._loader is not None:
            self._loader.join(timeout)

    # --- changes and shutdown ------------------------------------------------------------

    def unload(self, role: Role) -> None:
        for hook in list(self.before_unload):
            try:
                hook(role)
            except Exception:
                log.exception("before-unload hook failed")
        with self._lock:
            engine = self._engines.pop(role, None)
            worker = self._workers.pop(role, None)
            spec = self._specs.pop(role, None)
        if worker is not None:
            worker.close()
        if engine is not None:
            engine.close()
        if spec is not None:
            with self._lock:
                entry = self._models.get(spec.weights_key)
                if entry is not None:
                    entry[1].discard(role)
                    if not entry[1]:
                        del self._models[spec.weights_key]
                        entry[0].close()
        self._set_state(role, "off")

    def apply_settings(self, settings: Settings) -> list[Role]:
        """Take new settings; roles whose model setup changed are unloaded and returned (the
        caller reloads them)."""
        changed: list[Role] = []
        old = self.settings
        self.settings = settings
        for role in ROLES:
            if _model_setup(old, role) != _model_setup(settings, role):
                self.unload(role)
                changed.append(role)
        return changed

    def close(self) -> None:
        """Free every context and model (on shutdown)."""
        with self._lock:
            self._closed = True
        for role in ROLES:
            self.unload(role)


def _model_setup(settings: Settings, role: Role) -> tuple[object, ...]:
    cpu = settings.cpu_settings
    return (settings.model_for(role), settings.n_ctx_for(role), cpu, settings.mmap, settings.mlock,
            settings.backend_for(role))
