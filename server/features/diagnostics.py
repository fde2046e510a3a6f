"""Publishes the grammar's diagnostics (syntax errors, decoding warnings) for open documents."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lsprotocol import types

from server.features.common import lsp_range
from smalltalk_grammar.model import Diagnostic, SourceFile

if TYPE_CHECKING:
    from server.core import SmalltalkLanguageServer

SOURCE = "smalltalk"
_SEVERITY = {
    "error": types.DiagnosticSeverity.Error,
    "warning": types.DiagnosticSeverity.Warning,
    "information": types.DiagnosticSeverity.Information,
}


def to_lsp(diagnostic: Diagnostic) -> types.Diagnostic:
    return types.Diagnostic(
        range=lsp_range(diagnostic.range),
        message=diagnostic.message,
        severity=_SEVERITY.get(diagnostic.severity, types.DiagnosticSeverity.Error),
        source=SOURCE,
    )


def diagnostics_of(source: SourceFile) -> list[types.Diagnostic]:
    return [to_lsp(d) for d in source.diagnostics]


def setup(ls: SmalltalkLanguageServer) -> None:
    def publish(uri: str, source: SourceFile) -> None:
        doc = ls.workspace.text_documents.get(uri)
        params = types.PublishDiagnosticsParams(
            uri=uri,
            diagnostics=diagnostics_of(source),
            version=doc.version if doc is not None else None,
        )
        ls.text_document_publish_diagnostics(ls.columns.to_client(params, uri))

    def clear(uri: str) -> None:
        ls.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=uri, diagnostics=[])
        )

    ls.events.document_parsed.subscribe(publish)
    ls.events.document_closed.subscribe(clear)
