"""The models of one server, in one place: loading and unloading them by role, their state
(`smalltalk/status`, one message for a failure), the inference worker per role, the code
actions' worker and private coder context, and the LoRA adapter set of a role for a file.

The server core creates it, starts it at `initialized`, passes it new settings and closes it
at shutdown; features use it (inline completion, code actions, AI hover, the adapter
commands) and never build or patch their own. The engine below it is
`server.engine.registry` (weights shared per file, a context per role) and the adapter
manager `server.lora.manager`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lsprotocol import types

from server.actions.models import ActionCancelled, ActionError
from server.completion import arrival
from server.config import Settings
from server.engine.backend import EngineBackend, EngineModel
from server.engine.registry import ModelRegistry, PrivateContext, State
from server.engine.session import LlamaSession
from server.engine.types import ROLES, CancelToken, Role, TextEngine
from server.engine.worker import InferenceWorker, Job
from server.events import Event
from server.lora.manager import AdapterManager, AdapterSelection

if TYPE_CHECKING:
    from server.core import SmalltalkLanguageServer
    from server.project_model import ProjectModel

log = logging.getLogger(__name__)

STATUS_NOTIFICATION = "smalltalk/status"
# At start, models load once the workspace scan is done or after this many seconds.
MODEL_LOAD_SCAN_HEAD_START_S = 3.0
# Seconds between polls of the adapter folders (a directory listing and a few stats).
ADAPTER_POLL_S = 2.0
# The actions' own coder context: prompts are a plan or a method plus a little context.
ACTIONS_CODER_N_CTX = 2048
# How long an action waits for its model to finish loading.
LOAD_WAIT_S = 300.0
# Benchmarks set this to measure completions against actions that do not give way.
NO_YIELD_ENV = "SMALLTALK_LSP_ACTIONS_NO_YIELD"
_LABELS = {"reasoner": "reasoning model", "coder": "coder model"}
_SETTINGS = {"reasoner": "models.reasoning", "coder": "models.code_generation"}


def packages_of(project: ProjectModel, path: str | None) -> list[str]:
    """The categories (packages) of the classes a file defines or extends."""
    source = project.file(path) if path else None
    if source is None:
        return []
    found = {c.category for c in source.classes if c.category}
    for method in source.methods:
        cls = project.class_named(method.class_name)
        if cls is not None and cls.category:
            found.add(cls.category)
    return sorted(found)


class Models:
    def __init__(self, ls: SmalltalkLanguageServer) -> None:
        self.ls = ls
        self.registry: ModelRegistry | None = None
        self.adapters: AdapterManager | None = None
        # Roles unloaded by new settings (and being reloaded): what they produced is stale.
        self.reloaded: Event[[list[Role]]] = Event("models reloaded")
        self.actions_worker = InferenceWorker("actions")
        # What the coder is doing for each completion request, in `smalltalk/status`.
        self.completion_activity = arrival.CompletionActivity(self.send_status)
        self._yield = not os.environ.get(NO_YIELD_ENV)
        self._lock = threading.Lock()
        self._reported: set[tuple[str, str]] = set()
        self._active_adapters: list[str] = []
        self._private_coder: PrivateContext | None = None
        self._running: set[CancelToken] = set()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._adapter_thread: threading.Thread | None = None

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        root = self.ls.roots[0] if self.ls.roots else None
        registry = ModelRegistry(self.ls.settings, root)
        registry.listeners.append(self._state_changed)
        registry.before_unload.append(self._before_unload)
        self.registry = registry
        manager = AdapterManager(self._engine_model, self.ls.roots, self.ls.settings)
        manager.listeners.append(self._adapters_changed)
        self.adapters = manager
        self._adapter_thread = threading.Thread(
            target=self._sync_adapters, name="adapters", daemon=True
        )
        self._adapter_thread.start()
        self._load_in_background(ROLES, after_scan=True)

    def _load_in_background(self, roles: tuple[Role, ...], after_scan: bool = False) -> None:
        registry = self.registry
        if registry is None:
            return

        def run() -> None:
            if after_scan:
                # On 2 cores a model load beside the workspace scan slows both; a warm scan
                # ends in about a second, a cold one on a large project does not hold the
                # models back longer than this.
                self.ls.scan_done.wait(MODEL_LOAD_SCAN_HEAD_START_S)
            for role in roles:
                if registry.settings.model_for(role) is None:
                    registry.load(role)  # reports "off"
                    continue
                with self.ls.progress(f"Loading the {role} model") as work:
                    work.report(registry.settings.model_for(role))
                    registry.load(role)

        threading.Thread(target=run, name="model-loader", daemon=True).start()

    def settings_changed(self, settings: Settings) -> None:
        if self.registry is not None:
            changed = self.registry.apply_settings(settings)
            if changed:
                self.reloaded.emit(list(changed))
                self._load_in_background(tuple(changed))
        if self.adapters is not None:
            self.adapters.settings_changed(settings, sync=False)
            self.wake_adapters()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._adapter_thread is not None:
            self._adapter_thread.join(5)
        if self.registry is not None:
            self.registry.close()  # closes the actions' private context first (before_unload)
        if self.adapters is not None:
            self.adapters.close()
        with self._lock:
            coder, self._private_coder = self._private_coder, None
        self.actions_worker.close()
        if coder is not None:
            coder.close()

    # --- engines and workers by role -------------------------------------------------------

    def engine(self, role: Role) -> EngineBackend | None:
        return self.registry.engine(role) if self.registry is not None else None

    def worker(self, role: Role) -> InferenceWorker | None:
        return self.registry.worker(role) if self.registry is not None else None

    def _engine_model(self, role: str) -> EngineModel | None:
        engine = self.engine(role)  # type: ignore[arg-type]
        return engine.model if engine is not None else None

    def configured(self, role: Role) -> bool:
        return self.model_name(role) is not None

    def model_name(self, role: Role) -> str | None:
        registry = self.registry
        return registry.settings.model_for(role) if registry is not None else None

    # --- state reports -------------------------------------------------------------------

    def _state_changed(self, role: Role, state: State, error: str | None) -> None:
        if state == "failed" and error:
            with self._lock:
                fresh = (role, error) not in self._reported
                self._reported.add((role, error))
            if fresh:
                self.ls.show_message(
                    f"smalltalk-lsp: the {role} model is unavailable: {error}. "
                    "Navigation, hover and the other static features keep working.",
                    types.MessageType.Error,
                )
        self.wake_adapters()  # a model that arrives gets its adapters
        self.send_status()

    def status(self) -> dict[str, Any]:
        states = dict(self.registry.states) if self.registry is not None else {}
        indexing = None if self.ls.scan_done.is_set() else "indexing"
        return {
            "models": {role: states.get(role, "off") for role in ROLES},
            # What each role is configured to run (an embedded name or a path), for the
            # editors' status.
            "names": {role: self.ls.settings.model_for(role) or "off" for role in ROLES},
            "indexing": indexing,
            "adapters": list(self._active_adapters),
            "completion": self.completion_activity.status(),
        }

    def state(self, role: Role) -> str:
        """A role's model state ("off" before the models start)."""
        registry = self.registry
        return registry.states.get(role, "off") if registry is not None else "off"

    def error(self, role: Role) -> str | None:
        registry = self.registry
        return registry.errors.get(role) if registry is not None else None

    def send_status(self) -> None:
        self.ls.call_threadsafe(self.ls.protocol.notify, STATUS_NOTIFICATION, self.status())

    # --- adapters ------------------------------------------------------------------------

    def select_adapters(self, role: str, path: str | None) -> AdapterSelection:
        """The adapters of a request of `role` on a file."""
        manager = self.adapters
        if manager is None:
            return AdapterSelection()
        return manager.select(role, path, packages_of(self.ls.project, path))

    def label(self, role: Role, path: str | None) -> str:
        """"coder model", with the adapters that apply to the file if any."""
        adapters = self.select_adapters(role, path).label
        return f"{_LABELS[role]} + {adapters}" if adapters else _LABELS[role]

    def wake_adapters(self) -> None:
        self._wake.set()

    def _sync_adapters(self) -> None:
        while not self._stop.is_set():
            manager = self.adapters
            if manager is not None:
                try:
                    manager.sync()
                except Exception:
                    log.exception("adapter sync failed")
            self._wake.wait(ADAPTER_POLL_S)
            self._wake.clear()

    def _adapters_changed(self) -> None:
        if self.adapters is not None:
            self._active_adapters = self.adapters.active_names()
            self.send_status()

    # --- the code actions' side ------------------------------------------------------------

    def submit(self, fn: Callable[[CancelToken], Any], key: str | None = None) -> Job:
        """Run `fn(cancel)` on the actions' worker; unloading a model cancels it. An
        ActionError is the job's result (a message for the user, not a crash to log)."""

        def run(cancel: CancelToken) -> Any:
            with self._lock:
                self._running.add(cancel)
            try:
                return fn(cancel)
            except ActionError as err:
                return err
            finally:
                with self._lock:
                    self._running.discard(cancel)

        return self.actions_worker.submit(run, key=key)

    def completion_in_flight(self) -> bool:
        """True while a completion is queued or running on the coder's worker."""
        worker = self.worker("coder")
        return worker is not None and worker.busy

    def gate(self) -> bool:
        """True while code actions must pause for a completion (unless told not to yield)."""
        return self._yield and self.completion_in_flight()

    def reasoner(self, cancel: CancelToken) -> EngineBackend:
        return self._wait_engine("reasoner", cancel)

    def coder(self, cancel: CancelToken) -> TextEngine:
        """The coder for actions: its weights with a context of their own, so writing a test
        class does not throw away the KV prefix that keeps completions fast."""
        base = self._wait_engine("coder", cancel)
        if not isinstance(base, LlamaSession):
            return base  # a remote server keeps its own contexts; completions lose nothing
        with self._lock:
            if self._private_coder is None or self._private_coder.base is not base:
                old, self._private_coder = self._private_coder, None
                if old is not None:
                    old.close()
                spec = self.registry.spec("coder") if self.registry is not None else None
                if spec is None:
                    raise ActionError("the coder model was unloaded")
                try:
                    self._private_coder = PrivateContext(base, spec, ACTIONS_CODER_N_CTX)
                except (RuntimeError, OSError) as err:
                    raise ActionError(f"the coder model could not get a context: {err}") from err
            return self._private_coder

    def _wait_engine(self, role: Role, cancel: CancelToken) -> EngineBackend:
        registry = self.registry
        label = _LABELS[role]
        if registry is None:
            raise ActionError("the models have not been started yet (the server is initialising)")
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

    def _before_unload(self, role: Role) -> None:
        with self._lock:
            for cancel in self._running:
                cancel.cancel()
            coder = self._private_coder if role == "coder" else None
            if coder is not None:
                self._private_coder = None
        if coder is not None:
            coder.close()
