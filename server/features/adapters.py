"""LoRA adapters in the running server, wired to LSP (the logic is server.lora.manager).

`workspace/executeCommand` `smalltalk.adapters.list`, `smalltalk.adapters.activate` (name,
optional scale) and `smalltalk.adapters.deactivate` (name); watched-file events and a light
poll of the adapter folders (folders outside the workspace, clients without file watching);
the coder's completion requests ask `select` for the adapters of the file at hand, and the
`smalltalk/status` notification lists the active ones.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams
from pygls.uris import from_fs_path

from server.config import Settings
from server.lora.catalogue import WATCH_GLOBS
from server.lora.manager import AdapterManager, AdapterSelection, CommandError

if TYPE_CHECKING:
    from server.engine.backend import EngineModel
    from server.lsp import SmalltalkLanguageServer
    from server.project_model import ProjectModel

log = logging.getLogger(__name__)

COMMAND_LIST = "smalltalk.adapters.list"
COMMAND_ACTIVATE = "smalltalk.adapters.activate"
COMMAND_DEACTIVATE = "smalltalk.adapters.deactivate"
# Seconds between polls of the adapter folders (a directory listing and a few stats).
POLL_S = 2.0
_ATTRIBUTE = "adapters_feature"
__all__ = ["AdapterSelection", "adapter_selection", "feature_of", "packages_of", "setup"]


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


# --- LSP wiring --------------------------------------------------------------------------------


class AdapterFeature:
    """Per-server state: the manager, its folder watcher thread, and the protocol glue."""

    def __init__(self, ls: SmalltalkLanguageServer) -> None:
        self.ls = ls
        self.manager: AdapterManager | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _model(self, role: str) -> EngineModel | None:
        from server.features.inline_completion import feature_of

        models = feature_of(self.ls)
        registry = models.registry if models is not None else None
        engine = registry.engine(role) if registry is not None else None  # type: ignore[arg-type]
        return engine.model if engine is not None else None

    def start(self) -> None:
        manager = AdapterManager(self._model, self.ls.roots, self.ls.settings)
        manager.listeners.append(self._changed)
        self.manager = manager
        models = self._models_feature()
        if models is not None:
            models.select_adapters = self.select
            if models.registry is not None:
                models.registry.listeners.append(lambda role, state, error: self.wake())
        self._register_watchers()
        self._thread = threading.Thread(target=self._run, name="adapters", daemon=True)
        self._thread.start()

    def _models_feature(self) -> Any:
        from server.features.inline_completion import feature_of

        return feature_of(self.ls)

    def _run(self) -> None:
        while not self._stop.is_set():
            manager = self.manager
            if manager is not None:
                try:
                    manager.sync()
                except Exception:
                    log.exception("adapter sync failed")
            self._wake.wait(POLL_S)
            self._wake.clear()

    def wake(self) -> None:
        self._wake.set()

    def _changed(self) -> None:
        models = self._models_feature()
        if models is not None and self.manager is not None:
            models.adapters = self.manager.active_names()
            models.send_status()

    def watched(self, paths: list[str]) -> None:
        manager = self.manager
        if manager is not None and any(manager.catalogue.covers(p) for p in paths):
            self.wake()

    def settings_changed(self, settings: Settings) -> None:
        if self.manager is not None:
            self.manager.settings_changed(settings, sync=False)
            self.wake()

    def select(self, role: str, path: str | None) -> AdapterSelection:
        manager = self.manager
        if manager is None:
            return AdapterSelection()
        return manager.select(role, path, packages_of(self.ls.project, path))

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5)
        if self.manager is not None:
            self.manager.close()

    def _register_watchers(self) -> None:
        ws = self.ls.client_capabilities.workspace
        watch = ws.did_change_watched_files if ws is not None else None
        if watch is None or not watch.dynamic_registration or self.manager is None:
            return
        watchers = [types.FileSystemWatcher(glob_pattern=g) for g in WATCH_GLOBS]
        inside = [root / ".smalltalk-lsp" / "adapters" for root in self.ls.roots]
        for folder in self.manager.catalogue.folders:
            uri = from_fs_path(str(folder))
            if folder not in inside and uri and watch.relative_pattern_support:
                pattern = types.RelativePattern(base_uri=uri, pattern="*.{gguf,json,toml}")
                watchers.append(types.FileSystemWatcher(glob_pattern=pattern))
        registration = types.Registration(
            id="smalltalk-lsp-adapters-watch",
            method=types.WORKSPACE_DID_CHANGE_WATCHED_FILES,
            register_options=types.DidChangeWatchedFilesRegistrationOptions(watchers=watchers),
        )
        self.ls.client_register_capability(types.RegistrationParams(registrations=[registration]))


def feature_of(ls: SmalltalkLanguageServer) -> AdapterFeature | None:
    found = getattr(ls, _ATTRIBUTE, None)
    return found if isinstance(found, AdapterFeature) else None


def adapter_selection(ls: SmalltalkLanguageServer, role: str, path: str | None) -> AdapterSelection:
    """The adapters for a request of `role` on a file (code actions use this for the reasoner)."""
    feature = feature_of(ls)
    return feature.select(role, path) if feature is not None else AdapterSelection()


async def _call(fn: Callable[..., Any], *args: Any) -> Any:
    """Run a manager call off the event loop (it may load adapters); CommandError becomes an
    InvalidParams error whose message says what is wrong."""
    try:
        return await asyncio.to_thread(fn, *args)
    except CommandError as err:
        raise JsonRpcInvalidParams(str(err)) from err


def _scale_arg(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise JsonRpcInvalidParams(f"scale must be a number, got {value!r}")
    return float(value)


def setup(ls: SmalltalkLanguageServer) -> None:
    feature = AdapterFeature(ls)
    setattr(ls, _ATTRIBUTE, feature)
    ls.on_initialized.append(feature.start)
    ls.on_shutdown.append(feature.close)
    ls.on_settings_changed.append(feature.settings_changed)
    hooks = getattr(ls, "on_watched_files", None)
    if isinstance(hooks, list):
        hooks.append(feature.watched)

    def manager() -> AdapterManager:
        if feature.manager is None:
            raise JsonRpcInvalidParams("the server is not initialized yet")
        return feature.manager

    @ls.command(COMMAND_LIST)
    async def list_adapters(*args: Any) -> list[dict[str, Any]]:
        m = manager()
        started = time.perf_counter()
        await _call(m.sync)
        log.debug("adapters: list synced in %.0f ms", (time.perf_counter() - started) * 1000)
        return m.listing()

    @ls.command(COMMAND_ACTIVATE)
    async def activate(*args: Any) -> dict[str, Any]:
        if not args:
            raise JsonRpcInvalidParams("usage: smalltalk.adapters.activate NAME [SCALE]")
        scale = _scale_arg(args[1]) if len(args) > 1 else None
        return await _call(manager().activate, args[0], scale)

    @ls.command(COMMAND_DEACTIVATE)
    async def deactivate(*args: Any) -> dict[str, Any]:
        if not args:
            raise JsonRpcInvalidParams("usage: smalltalk.adapters.deactivate NAME")
        return await _call(manager().deactivate, args[0])
