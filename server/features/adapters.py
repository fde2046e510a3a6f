"""LoRA adapters in the running server, wired to LSP (the logic is server.lora.manager, owned
by the server's models, server.models).

`workspace/executeCommand` `smalltalk.adapters.list`, `smalltalk.adapters.activate` (name,
optional scale) and `smalltalk.adapters.deactivate` (name); watched-file events wake the
models' light poll of the adapter folders (which also covers folders outside the workspace and
clients without file watching).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams
from pygls.uris import from_fs_path

from server.lora.catalogue import WATCH_GLOBS
from server.lora.manager import AdapterManager, CommandError

if TYPE_CHECKING:
    from server.core import SmalltalkLanguageServer

log = logging.getLogger(__name__)

COMMAND_LIST = "smalltalk.adapters.list"
COMMAND_ACTIVATE = "smalltalk.adapters.activate"
COMMAND_DEACTIVATE = "smalltalk.adapters.deactivate"


def _watched(ls: SmalltalkLanguageServer, paths: list[str]) -> None:
    manager = ls.models.adapters
    if manager is not None and any(manager.catalogue.covers(p) for p in paths):
        ls.models.wake_adapters()


def _register_watchers(ls: SmalltalkLanguageServer) -> None:
    ws = ls.client_capabilities.workspace
    watch = ws.did_change_watched_files if ws is not None else None
    manager = ls.models.adapters
    if watch is None or not watch.dynamic_registration or manager is None:
        return
    watchers = [types.FileSystemWatcher(glob_pattern=g) for g in WATCH_GLOBS]
    inside = [root / ".smalltalk-lsp" / "adapters" for root in ls.roots]
    for folder in manager.catalogue.folders:
        uri = from_fs_path(str(folder))
        if folder not in inside and uri and watch.relative_pattern_support:
            pattern = types.RelativePattern(base_uri=uri, pattern="*.{gguf,json,toml}")
            watchers.append(types.FileSystemWatcher(glob_pattern=pattern))
    registration = types.Registration(
        id="smalltalk-lsp-adapters-watch",
        method=types.WORKSPACE_DID_CHANGE_WATCHED_FILES,
        register_options=types.DidChangeWatchedFilesRegistrationOptions(watchers=watchers),
    )
    ls.client_register_capability(types.RegistrationParams(registrations=[registration]))


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
    ls.events.initialized.subscribe(lambda: _register_watchers(ls))
    ls.events.watched_files.subscribe(lambda paths: _watched(ls, paths))

    def manager() -> AdapterManager:
        if ls.models.adapters is None:
            raise JsonRpcInvalidParams("the server is not initialized yet")
        return ls.models.adapters

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
