"""The language server: per-server state, lifecycle, document sync, and feature assembly.

Features are plain modules with a `setup(ls)` that registers handlers; `FEATURES` lists them
and `create_server()` builds a fresh server (no global server object at import time). Handlers
registered through `ls.handler(...)` are isolated: an exception is logged and the request gets
an empty result. Features that need lifecycle events subscribe to the hook lists
(`on_initialized`, `on_shutdown`, `on_settings_changed`, `on_file_changed`,
`on_document_parsed`) instead of registering protocol methods twice.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Generator
from pathlib import Path
from typing import Any, TypeVar, overload

from lsprotocol import types
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol
from pygls.protocol.language_server import lsp_method
from pygls.uris import from_fs_path, to_fs_path

from server import documents, logging_setup, positions
from server.config import Settings, load_settings
from server.features import (
    adapters,
    ai_hover,
    code_actions,
    completion,
    diagnostics,
    folding,
    hover,
    indexing,
    inline_completion,
    navigation,
    semantic_tokens,
    signature_help,
    symbols,
    sync,
)
from server.project_model import ProjectModel
from server.workspace import WorkspaceIndex
from smalltalk_grammar.model import SourceFile

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
VERSION = "0.1.0"
# Re-parse an edited buffer this long after the last keystroke (a request parses at once).
REPARSE_DELAY_S = 0.25
# Handlers slower than this are logged (at DEBUG).
SLOW_REQUEST_S = 0.05
_LOG_TYPES = (
    (logging.ERROR, types.MessageType.Error),
    (logging.WARNING, types.MessageType.Warning),
    (logging.INFO, types.MessageType.Info),
)


class WorkDone:
    """A `$/progress` work-done report, usable from any thread (see `ls.progress`)."""

    def __init__(self, ls: SmalltalkLanguageServer, title: str) -> None:
        self._ls = ls
        self.title = title
        self.token = f"smalltalk-lsp/{uuid.uuid4()}"
        self._enabled = ls.client_supports_progress()

    def __enter__(self) -> WorkDone:
        if self._enabled:
            self._ls.call_threadsafe(self._begin)
        return self

    def _begin(self) -> None:
        self._ls.window_work_done_progress_create(
            types.WorkDoneProgressCreateParams(token=self.token)
        )
        begin = types.WorkDoneProgressBegin(title=self.title, percentage=0, cancellable=False)
        self._ls.progress(types.ProgressParams(token=self.token, value=begin))

    def report(self, message: str | None = None, percentage: int | None = None) -> None:
        if not self._enabled:
            return
        value = types.WorkDoneProgressReport(message=message, percentage=percentage)
        self._ls.call_threadsafe(
            self._ls.progress, types.ProgressParams(token=self.token, value=value)
        )

    def __exit__(self, *exc: object) -> None:
        if not self._enabled:
            return
        value = types.WorkDoneProgressEnd()
        self._ls.call_threadsafe(
            self._ls.progress, types.ProgressParams(token=self.token, value=value)
        )


class SmalltalkProtocol(LanguageServerProtocol):
    """pygls' protocol, choosing the position encoding the project model counts in."""

    @lsp_method(types.INITIALIZE)
    def lsp_initialize(self, params: types.InitializeParams) -> Generator[Any, Any, Any]:
        positions.prefer_code_points(params.capabilities)
        return (yield from super().lsp_initialize(params))


class SmalltalkLanguageServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__(
            "smalltalk-lsp",
            VERSION,
            types.TextDocumentSyncKind.Incremental,
            protocol_cls=SmalltalkProtocol,
        )
        self.columns = positions.ClientColumns(self.wide_lines, self.line_text, self._converting)
        self._wide: dict[str, tuple[int | None, frozenset[int]]] = {}
        self.settings = Settings()
        self.project = ProjectModel()
        self.roots: list[Path] = []
        self.index: WorkspaceIndex | None = None
        self.documents = documents.OpenDocuments()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.log_handler: logging_setup.ClientLogHandler | None = None
        self.scan_thread: threading.Thread | None = None
        # Set when the first workspace scan has finished (tests and benchmarks wait on it).
        self.scan_done = threading.Event()
        self.on_initialized: list[Callable[[], None]] = []
        self.on_shutdown: list[Callable[[], None]] = []
        self.on_settings_changed: list[Callable[[Settings], None]] = []
        # Path of a file whose parse changed (created, edited, deleted).
        self.on_file_changed: list[Callable[[str], None]] = []
        # Paths of every workspace/didChangeWatchedFiles event, whatever the file (adapters).
        self.on_watched_files: list[Callable[[list[str]], None]] = []
        # (uri, parse) of an open document after each (re)parse; diagnostics listen here.
        self.on_document_parsed: list[Callable[[str, SourceFile], None]] = []
        # uri of a document the client closed.
        self.on_document_closed: list[Callable[[str], None]] = []
        # uri of an open document after each didChange (its text is current).
        self.on_document_changed: list[Callable[[str], None]] = []
        # After the workspace scan has filled the project model (once per start).
        self.on_scan_done: list[Callable[[], None]] = []
        # Extra textDocument/completion items: async (params) -> items (the coder model's).
        self.completion_sources: list[
            Callable[[types.CompletionParams], Awaitable[list[types.CompletionItem]]]
        ] = []
        # Extra Markdown for hover: each gets the request's `features.common.Context` and
        # answers a section or None (e.g. model-written documentation).
        self.hover_extras: list[Callable[[Any], str | None]] = []
        self._init_options: Any = None
        self._config_change: Any = None
        self._reparse_handles: dict[str, asyncio.TimerHandle] = {}

    # --- plumbing for features -------------------------------------------------------------

    def handler(self, method: str, options: Any = None, empty: Any = None) -> Callable[[F], F]:
        """`@ls.feature` with isolation: an exception is logged and `empty` is answered."""

        def decorator(fn: F) -> F:
            self.feature(method, options)(guarded(method, empty)(self.columns.wrap(fn)))
            return fn

        return decorator

    def call_threadsafe(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run `fn(*args)` on the event loop (sends from worker threads must go through it)."""
        loop = self.loop
        if loop is None or _in_loop(loop):
            fn(*args)
        elif not loop.is_closed():
            loop.call_soon_threadsafe(_call_logged, fn, args)

    def run_hooks(self, hooks: list[Callable[..., None]], *args: Any) -> None:
        for hook in list(hooks):
            try:
                hook(*args)
            except Exception:
                log.exception("hook %s failed", getattr(hook, "__qualname__", hook))

    @overload
    def progress(self, params: types.ProgressParams) -> None: ...

    @overload
    def progress(self, params: str) -> WorkDone: ...

    def progress(self, params: types.ProgressParams | str) -> WorkDone | None:
        """`ls.progress("Indexing")` is a context manager with `.report(message, percentage)`;
        called with `ProgressParams` it sends one `$/progress` notification (pygls' meaning)."""
        if isinstance(params, str):
            return WorkDone(self, params)
        super().progress(params)
        return None

    def client_supports_progress(self) -> bool:
        try:
            window = self.client_capabilities.window
        except Exception:
            return False
        return bool(window is not None and window.work_done_progress)

    def show_message(self, message: str, kind: types.MessageType = types.MessageType.Info) -> None:
        self.call_threadsafe(
            self.window_show_message, types.ShowMessageParams(type=kind, message=message)
        )

    def _send_log(self, level: int, message: str) -> None:
        kind = next((t for lvl, t in _LOG_TYPES if level >= lvl), types.MessageType.Log)
        self.call_threadsafe(
            self.window_log_message, types.LogMessageParams(type=kind, message=message)
        )

    # --- documents -------------------------------------------------------------------------

    def path_of(self, uri: str) -> str:
        """The project-model key of a document: its file path, or the URI itself."""
        return documents.path_of(uri)

    def uri_of(self, path: str) -> str:
        if "://" in path or path.startswith("untitled:"):
            return path
        return from_fs_path(path) or path

    def document_text(self, uri: str) -> str | None:
        """The current text of a document: the open buffer, else the file on disk."""
        doc = self.workspace.text_documents.get(uri) if self._has_workspace() else None
        if doc is not None:
            return doc.source
        path = to_fs_path(uri) if uri.startswith("file:") else None
        return documents.read_text(path) if path else None

    def snapshot(self, uri: str) -> documents.Snapshot | None:
        """Text and parse of a document as it is now (open buffers are re-parsed if stale)."""
        doc = self.workspace.text_documents.get(uri) if self._has_workspace() else None
        if doc is not None:
            snap, changed = self.documents.parse(uri, doc.source, doc.version)
            if changed:
                self._publish_parse(uri, snap)
            return snap
        return documents.disk_snapshot(self.path_of(uri))

    # --- columns in the client's encoding (server.positions) --------------------------------

    def wide_lines(self, uri: str) -> frozenset[int]:
        """The lines of a document that hold a character outside the Basic Multilingual Plane
        (where utf-16 columns differ from the model's)."""
        doc = self.workspace.text_documents.get(uri) if self._has_workspace() else None
        if doc is None:
            return self.project.wide_lines(self.path_of(uri))
        cached = self._wide.get(uri)
        if cached is None or cached[0] != doc.version or doc.version is None:
            cached = (doc.version, positions.wide_lines(doc.source))
            self._wide[uri] = cached
        return cached[1]

    def line_text(self, uri: str, line: int) -> str | None:
        text = self.document_text(uri)
        return positions.line_text(text, line) if text is not None else None

    def _converting(self) -> bool:
        if not self._has_workspace():
            return False
        if self.workspace.position_encoding != positions.UTF16:
            return False
        if self.project.has_wide_lines():
            return True
        return any(self.wide_lines(uri) for uri in list(self.workspace.text_documents))

    def _has_workspace(self) -> bool:
        try:
            _ = self.workspace
        except RuntimeError:
            return False
        return True

    def _publish_parse(self, uri: str, snap: documents.Snapshot) -> None:
        previous = self.project.file(snap.path)
        self.project.put(snap.source)
        self.run_hooks(self.on_document_parsed, uri, snap.source)
        if previous is None or previous != snap.source:
            self.run_hooks(self.on_file_changed, snap.path)

    def schedule_reparse(self, uri: str, delay: float = REPARSE_DELAY_S) -> None:
        """Re-parse a buffer after a quiet period: a flood of didChange costs one parse."""
        old = self._reparse_handles.pop(uri, None)
        if old is not None:
            old.cancel()
        if self.loop is None:
            self.snapshot(uri)
            return
        self._reparse_handles[uri] = self.loop.call_later(delay, self._reparse_now, uri)

    def _reparse_now(self, uri: str) -> None:
        self._reparse_handles.pop(uri, None)
        try:
            self.snapshot(uri)
        except Exception:
            log.exception("re-parsing %s failed", uri)

    def document_closed(self, uri: str) -> None:
        handle = self._reparse_handles.pop(uri, None)
        if handle is not None:
            handle.cancel()
        self.documents.forget(uri)
        self._wide.pop(uri, None)
        self.run_hooks(self.on_document_closed, uri)
        path = self.path_of(uri)
        # The file on disk is the truth again (or nothing, for a deleted or untitled file).
        if self.index is not None:
            changed = self.index.refresh_path(path)
        elif self.project.file(path) is not None:
            self.project.remove(path)
            changed = [path]
        else:
            changed = []
        for changed_path in changed:
            self.run_hooks(self.on_file_changed, changed_path)

    # --- settings --------------------------------------------------------------------------

    def apply_settings(self) -> None:
        root = self.roots[0] if self.roots else None
        overrides = [_unwrap(self._init_options), _unwrap(self._config_change)]
        loaded = load_settings(root, [o for o in overrides if o is not None])
        self.settings = loaded.settings
        if loaded.problems:
            text = "; ".join(loaded.problems)
            log.warning("settings: %s", text)
            self.show_message(f"smalltalk-lsp settings: {text}", types.MessageType.Warning)
        self.run_hooks(self.on_settings_changed, self.settings)


def _unwrap(options: Any) -> dict[str, Any] | None:
    """Settings arrive bare or under a `smalltalk` section; take either."""
    if options is None:
        return None
    if isinstance(options, dict) and isinstance(options.get("smalltalk"), dict):
        return options["smalltalk"]
    return options  # a non-dict is reported by load_settings


# Every feature's setup function, in registration order. Features of other parts of the server
# (inline completion, code actions, adapters) are added to this list.
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
    inline_completion.setup,
    indexing.setup,  # after inline_completion: adds its context provider
    adapters.setup,  # after inline_completion: picks the adapters of each request
    code_actions.setup,
    ai_hover.setup,  # after code_actions: shares its models and worker
]


def _in_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def _call_logged(fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    try:
        fn(*args)
    except Exception:
        log.exception("sending to the client failed")


def guarded(name: str, empty: Any = None) -> Callable[[F], F]:
    """Log and swallow a handler's exception, answering `empty` (a value or a factory)."""

    def fallback() -> Any:
        return empty() if callable(empty) else empty

    def decorator(fn: F) -> F:
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                try:
                    return await fn(*args, **kwargs)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("%s failed", name)
                    return fallback()

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            except Exception:
                log.exception("%s failed", name)
                return fallback()
            finally:
                elapsed = time.perf_counter() - began
                if elapsed > SLOW_REQUEST_S:
                    log.debug("%s took %.0f ms", name, elapsed * 1000)

        return wrapper  # type: ignore[return-value]

    return decorator


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
        ls.run_hooks(ls.on_initialized)

    @ls.handler(types.SHUTDOWN)
    def shutdown(params: Any = None) -> None:
        if ls.index is not None:
            ls.index.cancel()
        ls.run_hooks(ls.on_shutdown)
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
        ls.call_threadsafe(ls.run_hooks, ls.on_scan_done)
    except Exception:
        log.exception("workspace scan failed")
    finally:
        ls.scan_done.set()
