"""Feature assembly and the lifecycle handlers: `create_server()` builds a fresh server (no
global server object at import time) with every feature of `FEATURES` set up. The server class
features use is server.core.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.uris import to_fs_path

from server import logging_setup
from server.core import SmalltalkLanguageServer, WorkDone, guarded
from server.features import (
    adapters,
    ai_hover,
    call_hierarchy,
    code_actions,
    code_lens,
    completion,
    diagnostics,
    folding,
    highlight,
    hover,
    indexing,
    inline_completion,
    navigation,
    rename,
    selection_range,
    semantic_tokens,
    signature_help,
    symbols,
    sync,
    type_hierarchy,
)
from server.workspace import WorkspaceIndex

log = logging.getLogger(__name__)
__all__ = ["FEATURES", "SmalltalkLanguageServer", "WorkDone", "create_server", "guarded"]

# Every feature's setup function. Features get what they need from the server they are given
# (events, models, context providers), so the order of this list does not matter.
FEATURES: list[Callable[[SmalltalkLanguageServer], None]] = [
    sync.setup,
    diagnostics.setup,
    symbols.setup,
    navigation.setup,
    hover.setup,
    completion.setup,
    signature_help.setup,
    folding.setup,
    semantic_tokens.setup,
    highlight.setup,
    selection_range.setup,
    type_hierarchy.setup,
    code_lens.setup,
    call_hierarchy.setup,
    rename.setup,
    inline_completion.setup,
    indexing.setup,
    adapters.setup,
    code_actions.setup,
    ai_hover.setup,
]


def create_server(
    features: list[Callable[[SmalltalkLanguageServer], None]] | None = None,
) -> SmalltalkLanguageServer:
    """A new server with the lifecycle handlers and every feature registered."""
    ls = SmalltalkLanguageServer()
    ls.log_handler = logging_setup.configure()
    _setup_lifecycle(ls)
    for setup in FEATURES if features is None else features:
        setup(ls)
    return ls


def _setup_lifecycle(ls: SmalltalkLanguageServer) -> None:
    @ls.handler(types.INITIALIZE)
    def initialize(params: types.InitializeParams) -> None:
        ls.loop = asyncio.get_running_loop()
        if ls.log_handler is not None:
            ls.log_handler.attach(ls._send_log)
        ls.roots = _workspace_roots(params)
        ls._init_options = params.initialization_options
        ls.apply_settings()
        log.info("workspace roots: %s", ", ".join(map(str, ls.roots)) or "(none)")

    @ls.handler(types.INITIALIZED)
    def initialized(params: types.InitializedParams) -> None:
        _register_watchers(ls)
        ls.index = WorkspaceIndex(ls.project, ls.roots, is_open=ls.documents.is_open_path)
        ls.scan_thread = threading.Thread(
            target=_scan, args=(ls,), name="smalltalk-lsp-scan", daemon=True
        )
        ls.scan_thread.start()
        ls.models.start()
        ls.events.initialized.emit()

    @ls.handler(types.SHUTDOWN)
    def shutdown(params: Any = None) -> None:
        if ls.index is not None:
            ls.index.cancel()
        ls.events.shutdown.emit()
        ls.models.close()
        if ls.log_handler is not None:
            ls.log_handler.detach()

    @ls.handler(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    async def did_change_configuration(params: types.DidChangeConfigurationParams) -> None:
        settings = params.settings
        if settings is None and _client_has_configuration(ls):
            items = [types.ConfigurationItem(section="smalltalk")]
            result = await ls.workspace_configuration_async(types.ConfigurationParams(items=items))
            settings = result[0] if result else None
        ls._config_change = settings
        ls.apply_settings()


def _workspace_roots(params: types.InitializeParams) -> list[Path]:
    uris = [f.uri for f in params.workspace_folders or []]
    if not uris and params.root_uri:
        uris = [params.root_uri]
    roots = [Path(p) for p in (to_fs_path(u) for u in uris) if p]
    if not roots and params.root_path:
        roots = [Path(params.root_path)]
    return [r.absolute() for r in roots]


def _client_has_configuration(ls: SmalltalkLanguageServer) -> bool:
    ws = ls.client_capabilities.workspace
    return bool(ws is not None and ws.configuration)


def _register_watchers(ls: SmalltalkLanguageServer) -> None:
    ws = ls.client_capabilities.workspace
    dynamic = ws is not None and ws.did_change_watched_files is not None
    if not dynamic or not ws.did_change_watched_files.dynamic_registration:  # type: ignore[union-attr]
        return
    watchers = [types.FileSystemWatcher(glob_pattern=g) for g in WorkspaceIndex.WATCH_GLOBS]
    registration = types.Registration(
        id="smalltalk-lsp-watch",
        method=types.WORKSPACE_DID_CHANGE_WATCHED_FILES,
        register_options=types.DidChangeWatchedFilesRegistrationOptions(watchers=watchers),
    )
    ls.client_register_capability(types.RegistrationParams(registrations=[registration]))


def _scan(ls: SmalltalkLanguageServer) -> None:
    index = ls.index
    if index is None:
        return
    try:
        with ls.progress("Indexing Smalltalk sources") as work:

            def report(done: int, total: int) -> None:
                percent = int(done * 100 / total) if total else 100
                work.report(f"{done}/{total} files", percent)

            stats = index.scan(report)
        log.info(
            "indexed %d files (%d from cache, %d parsed) in %.2fs (%.2fs CPU)",
            stats.files,
            stats.cached,
            stats.parsed,
            stats.seconds,
            stats.cpu_seconds,
        )
        ls.call_threadsafe(ls.events.scan_done.emit)
    except Exception:
        log.exception("workspace scan failed")
    finally:
        ls.scan_done.set()
