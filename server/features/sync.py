"""Document sync: open, change (incremental), save, close, and files changed outside the editor.

pygls applies the text changes to its workspace before these handlers run; here the project
model is kept current. Edits are parsed after a quiet period (or at once by a request), so a
flood of didChange notifications costs one parse.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from lsprotocol import types
from pygls.uris import to_fs_path

if TYPE_CHECKING:
    from server.lsp import SmalltalkLanguageServer

log = logging.getLogger(__name__)


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

    @ls.handler(types.TEXT_DOCUMENT_DID_SAVE)
    def did_save(params: types.DidSaveTextDocumentParams) -> None:
        ls.schedule_reparse(params.text_document.uri, delay=0)

    @ls.handler(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(params: types.DidCloseTextDocumentParams) -> None:
        ls.document_closed(params.text_document.uri)

    @ls.handler(types.WORKSPACE_DID_CHANGE_WATCHED_FILES)
    def did_change_watched_files(params: types.DidChangeWatchedFilesParams) -> None:
        index = ls.index
        for change in params.changes:
            path = to_fs_path(change.uri) if change.uri.startswith("file:") else None
            if not path:
                continue
            path = ls.path_of(change.uri)
            if index is None:
                continue
            for changed in index.refresh_path(path):
                ls.run_hooks(ls.on_file_changed, changed)
