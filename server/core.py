"""The server core features are written against: the server class (documents, columns,
settings, the models, events), `$/progress` reports, and the guard that isolates a handler's
exception. Features receive the server at setup and use what it holds: `ls.events` (typed
events to subscribe to), `ls.models` (server.models), `ls.context_providers` (completion
context), `ls.completion_sources` and `ls.hover_extras` (contributions to the static
features), `ls.retrieval` (the index, once the indexing feature runs). Nothing depends on the
order features are set up in. The features and the lifecycle handlers are assembled in
server.lsp.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import inspect
import logging
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, overload

from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol
from pygls.protocol.language_server import lsp_method
from pygls.uris import from_fs_path, to_fs_path

from server import documents, logging_setup, positions, requests, secrets, trust
from server.completion.context import ContextProvider
from server.config import Settings, load_settings
from server.events import ServerEvents
from server.models import Models
from server.project_model import ProjectModel
from server.retrieval.context import Context, build_context
from server.workspace import WorkspaceIndex
from smalltalk_grammar.model import MethodDef

if TYPE_CHECKING:
    from server.retrieval.index import RetrievalIndex

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


class RetrievalSource(Protocol):
    """What retrieval offers other features: the index when it is ready, recent edits."""

    def current_index(self) -> RetrievalIndex | None: ...

    def recent(self) -> list[MethodDef]: ...


class WorkDone:
    """A `$/progress` work-done report, usable from any thread (see `ls.progress`). With
    `on_cancel` it is cancellable: the client's `window/workDoneProgress/cancel` calls it."""

    def __init__(
        self,
        ls: SmalltalkLanguageServer,
        title: str,
        token: Any = None,
        on_cancel: Callable[[], None] | None = None,
    ) -> None:
        self._ls = ls
        self.title = title
        # A request's own `workDoneToken` (the client created it), else one of ours.
        self._created = token is not None
        self.token = token if token is not None else f"smalltalk-lsp/{uuid.uuid4()}"
        self._enabled = self._created or ls.client_supports_progress()
        self._on_cancel = on_cancel
        self._ended = False

    def __enter__(self) -> WorkDone:
        if self._enabled:
            if self._on_cancel is not None:
                # pygls cancels the future it keeps for a token on the client's cancel.
                watched: concurrent.futures.Future[Any] = concurrent.futures.Future()
                on_cancel = self._on_cancel
                watched.add_done_callback(lambda f: on_cancel() if f.cancelled() else None)
                self._ls.work_done_progress.tokens[self.token] = watched
            self._ls.call_threadsafe(self._begin)
        return self

    def _begin(self) -> None:
        if not self._created:
            self._ls.window_work_done_progress_create(
                types.WorkDoneProgressCreateParams(token=self.token)
            )
        begin = types.WorkDoneProgressBegin(
            title=self.title, percentage=0, cancellable=self._on_cancel is not None
        )
        self._ls.progress(types.ProgressParams(token=self.token, value=begin))

    def report(self, message: str | None = None, percentage: int | None = None) -> None:
        if not self._enabled:
            return
        value = types.WorkDoneProgressReport(message=message, percentage=percentage)
        self._ls.call_threadsafe(self._send_report, value)

    def _send_report(self, value: types.WorkDoneProgressReport) -> None:
        if not self._ended:  # a report from a thread may arrive after the end: not sent
            self._ls.progress(types.ProgressParams(token=self.token, value=value))

    def __exit__(self, *exc: object) -> None:
        if not self._enabled:
            return
        self._ls.work_done_progress.tokens.pop(self.token, None)
        # On the loop, after the reports this thread scheduled before it (marking the end
        # here, in the thread, dropped the last of them: "51/51 units" went missing).
        self._ls.call_threadsafe(self._end)

    def _end(self) -> None:
        self._ended = True
        value = types.WorkDoneProgressEnd()
        self._ls.progress(types.ProgressParams(token=self.token, value=value))


class SmalltalkProtocol(LanguageServerProtocol):
    """pygls' protocol, choosing the position encoding the project model counts in."""

    @lsp_method(types.INITIALIZE)
    def lsp_initialize(self, params: types.InitializeParams) -> Generator[Any, Any, Any]:
        positions.prefer_code_points(params.capabilities)
        return (yield from super().lsp_initialize(params))

    # Spec-invalid requests are answered with InvalidParams (server.requests).
    def structure_message(self, data: dict[str, Any]) -> Any:
        return requests.structure_request(data, super().structure_message, self._answer_invalid)

    def _answer_invalid(self, msg_id: Any, error: JsonRpcException) -> None:
        log.warning("answered InvalidParams: %s", error.message)
        self._send_response(msg_id, None, error.to_response_error())

    def handle_message(self, message: Any) -> None:
        if message is not requests.ANSWERED:
            super().handle_message(message)


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
        self.events = ServerEvents()
        self.models = Models(self)
        # Project context for completions, in prompt order (retrieval adds its provider).
        self.context_providers: list[ContextProvider] = []
        # The retrieval index and recent edits (the indexing feature sets it).
        self.retrieval: RetrievalSource | None = None
        # Extra textDocument/completion items: async (params) -> items (the coder model's).
        self.completion_sources: list[
            Callable[[types.CompletionParams], Awaitable[list[types.CompletionItem]]]
        ] = []
        # Extra Markdown for hover: each gets the request's `features.common.Context` and
        # answers a section or None (e.g. model-written documentation).
        self.hover_extras: list[Callable[[Any], str | None]] = []
        # Trust every root for workspace-supplied models and adapters (server.trust).
        self.trust_workspace = False
        self._trust_notice: str | None = None
        self._init_options: Any = None
        self._config_change: Any = None
        self._reparse_handles: dict[str, asyncio.TimerHandle] = {}

    # --- plumbing for features -------------------------------------------------------------

    def handler(self, method: str, options: Any = None, empty: Any = None) -> Callable[[F], F]:
        """`@ls.feature` with isolation: an exception is logged and `empty` is answered."""

        def decorator(fn: F) -> F:
            wrapped = self.columns.wrap(fn)
            if requests.is_request(method):
                wrapped = requests.documents_checked(wrapped, self.is_open_uri)
            self.feature(method, options)(guarded(method, empty)(wrapped))
            return fn

        return decorator

    def call_threadsafe(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run `fn(*args)` on the event loop (sends from worker threads must go through it)."""
        loop = self.loop
        if loop is None or _in_loop(loop):
            fn(*args)
        elif not loop.is_closed():
            loop.call_soon_threadsafe(_call_logged, fn, args)

    @overload
    def progress(self, params: types.ProgressParams) -> None: ...

    @overload
    def progress(
        self, params: str, token: Any = None, on_cancel: Callable[[], None] | None = None
    ) -> WorkDone: ...

    def progress(
        self,
        params: types.ProgressParams | str,
        token: Any = None,
        on_cancel: Callable[[], None] | None = None,
    ) -> WorkDone | None:
        """`ls.progress("Indexing")` is a context manager with `.report(message, percentage)`
        (on a request's `workDoneToken` if given; cancellable with `on_cancel`); called with
        `ProgressParams` it sends one `$/progress` notification (pygls' meaning)."""
        if isinstance(params, str):
            return WorkDone(self, params, token, on_cancel)
        super().progress(params)
        return None

    def client_supports_progress(self) -> bool:
        try:
            window = self.client_capabilities.window
        except Exception:
            return False
        return bool(window is not None and window.work_done_progress)

    def show_message(self, message: str, kind: types.MessageType = types.MessageType.Info) -> None:
        message = secrets.redact(message)
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

    def is_open_uri(self, uri: str) -> bool:
        return self._has_workspace() and uri in self.workspace.text_documents

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
        self.events.document_parsed.emit(uri, snap.source)
        if previous is None or previous != snap.source:
            self.events.file_changed.emit(snap.path)

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
        self.events.document_closed.emit(uri)
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
            self.events.file_changed.emit(changed_path)

    # --- settings --------------------------------------------------------------------------

    def apply_settings(self) -> None:
        root = self.roots[0] if self.roots else None
        overrides = [_unwrap(self._init_options), _unwrap(self._config_change)]
        if self.trust_workspace:  # `serve --trust-workspace`
            overrides.insert(0, {"trust": {"workspace": True}})
        loaded = load_settings(root, [o for o in overrides if o is not None])
        self.settings = loaded.settings
        if loaded.problems:
            text = "; ".join(loaded.problems)
            log.warning("settings: %s", text)
            self.show_message(f"smalltalk-lsp settings: {text}", types.MessageType.Warning)
        self._tell_trust(loaded.ignored)
        self.models.settings_changed(self.settings)
        self.events.settings_changed.emit(self.settings)

    def _tell_trust(self, ignored: list[str]) -> None:
        """Say once (per change) what an untrusted workspace supplied and is ignored."""
        trust_cfg = self.settings.trust
        text = trust.notice(self.roots, trust_cfg.workspace, trust_cfg.trusted_roots, ignored)
        if text is not None and text != self._trust_notice:
            log.warning("%s", text)
            self.show_message(text, types.MessageType.Warning)
        elif text is None and self._trust_notice is not None:
            log.info("workspace trusted: loading the model and adapter files it supplies")
        self._trust_notice = text

    # --- services for features -------------------------------------------------------------

    def root_for(self, path: str) -> Path:
        """The workspace root a file lies in (else the first root, else its folder)."""
        for root in self.roots:
            if Path(path).is_relative_to(root):
                return root
        return self.roots[0] if self.roots else Path(path).parent

    def retrieval_context(self, path: str, text: str, offset: int,
                          budget_tokens: int | None = None) -> Context:
        """The context builder for any feature (code actions, hover): never waits for
        indexing; without an index the project model alone gives the context."""
        source = self.retrieval
        return build_context(
            self.project, path, text, offset,
            budget_tokens or self.settings.retrieval.context_tokens,
            source.current_index() if source is not None else None,
            source.recent() if source is not None else [],
        )


def _unwrap(options: Any) -> dict[str, Any] | None:
    """Settings arrive bare or under a `smalltalk` section; take either."""
    if options is None:
        return None
    if isinstance(options, dict) and isinstance(options.get("smalltalk"), dict):
        return options["smalltalk"]
    return options  # a non-dict is reported by load_settings


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
                except (asyncio.CancelledError, JsonRpcException):
                    raise  # a cancel, or an error the client is answered with
                except Exception:
                    log.exception("%s failed", name)
                    return fallback()

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            except JsonRpcException:
                raise  # answered to the client as this error (e.g. InvalidParams)
            except Exception:
                log.exception("%s failed", name)
                return fallback()
            finally:
                elapsed = time.perf_counter() - began
                if elapsed > SLOW_REQUEST_S:
                    log.debug("%s took %.0f ms", name, elapsed * 1000)

        return wrapper  # type: ignore[return-value]

    return decorator
