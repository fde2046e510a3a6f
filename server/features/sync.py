"""Document sync: open, change (incremental), save, close, and files changed outside the editor.

pygls applies the text changes to its workspace before these handlers run; here the project
model is kept current. Edits are parsed after a quiet period (or at once by a request), so a
flood of didChange notifications costs one parse.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from lsprotocol import types

if TYPE_CHECKING:
    from server.core import SmalltalkLanguageServer

log = logging.getLogger(__name__)

# Watched-file events with more files than this are re-parsed on a worker thread.
INLINE_REFRESH = 20


def setup(ls: SmalltalkLanguageServer) -> None:
    @ls.handler(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(params: types.DidOpenTextDocumentParams) -> None:
        uri = params.text_document.uri
        ls.documents.opened(uri)
        ls.snapshot(uri)

    @ls.handler(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(params: types.DidChangeTextDocumentParams) -> None:
        uri = params.text_document.uri
        if not ls.documents.is_open(uri):
            ls.documents.opened(uri)
        ls.schedule_reparse(uri)
        ls.events.document_changed.emit(uri)

    @ls.handler(types.TEXT_DOCUMENT_DID_SAVE)
    def did_save(params: types.DidSaveTextDocumentParams) -> None:
        ls.schedule_reparse(params.text_document.uri, delay=0)

    @ls.handler(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(params: types.DidCloseTextDocumentParams) -> None:
        ls.document_closed(params.text_document.uri)

    @ls.handler(types.WORKSPACE_DID_CHANGE_WATCHED_FILES)
    def did_change_watched_files(params: types.DidChangeWatchedFilesParams) -> None:
        ls.events.watched_files.emit([ls.path_of(c.uri) for c in params.changes])
        index = ls.index
        paths = [ls.path_of(c.uri) for c in params.changes if c.uri.startswith("file:")]
        if index is None or not paths:
            return

        def refresh() -> None:
            for path in paths:
                for changed in index.refresh_path(path):
                    ls.call_threadsafe(ls.events.file_changed.emit, changed)

        # A branch switch changes many files at once: parse them off the event loop.
        if len(paths) <= INLINE_REFRESH:
            refresh()
        else:
            ls.thread_pool.submit(refresh)
