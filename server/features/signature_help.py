"""Signature help for keyword messages: the implementors' patterns, the active keyword part."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lsprotocol import types

from server.features import common
from server.features.analysis import (
    Receiver,
    enclosing_keyword_message,
    ranked_implementor_refs,
)
from server.project_model import ProjectModel

if TYPE_CHECKING:
    from server.core import SmalltalkLanguageServer

SIGNATURES_SHOWN = 5


def signatures(
    project: ProjectModel, selector: str, receiver: Receiver | None
) -> list[types.SignatureInformation]:
    """One signature per implementor (ranked by receiver), labelled with its own argument
    names: `at: key put: value`; a bare `at: put:` when nothing implements the selector."""
    keywords = [part + ":" for part in selector[:-1].split(":")]
    found: list[types.SignatureInformation] = []
    seen: set[tuple[str, str]] = set()
    for ref in ranked_implementor_refs(project, selector, receiver):
        method = project.method(ref)
        if method is None:
            continue
        args = method.arguments if len(method.arguments) == len(keywords) else []
        parts = [f"{kw} {arg}" for kw, arg in zip(keywords, args, strict=False)] or keywords
        label = " ".join(parts)
        side = " class" if method.side == "class" else ""
        owner = f"{method.class_name}{side}"
        if (owner, label) in seen:
            continue
        seen.add((owner, label))
        doc = f"`{owner} >> {selector}`"
        if method.comment:
            doc += " — " + method.comment.strip().splitlines()[0]
        found.append(_signature(label, parts, doc))
        if len(found) >= SIGNATURES_SHOWN:
            break
    if not found:
        found.append(_signature(" ".join(keywords), keywords, None))
    return found


def _signature(label: str, parts: list[str], doc: str | None) -> types.SignatureInformation:
    params: list[types.ParameterInformation] = []
    at = 0
    for part in parts:
        start = label.index(part, at)
        params.append(types.ParameterInformation(label=(start, start + len(part))))
        at = start + len(part)
    return types.SignatureInformation(
        label=label,
        parameters=params,
        documentation=types.MarkupContent(kind=types.MarkupKind.Markdown, value=doc)
        if doc
        else None,
    )


def signature_help(ls: SmalltalkLanguageServer, ctx: common.Context) -> types.SignatureHelp | None:
    if ctx.tree is None:
        return None
    found = enclosing_keyword_message(ctx.tree, ctx.offset, ls.project)
    if found is None:
        return None
    selector, index, receiver = found
    return types.SignatureHelp(
        signatures=signatures(ls.project, selector, receiver),
        active_signature=0,
        active_parameter=index,
    )


def setup(ls: SmalltalkLanguageServer) -> None:
    options = types.SignatureHelpOptions(trigger_characters=[":"], retrigger_characters=[" "])

    @ls.handler(types.TEXT_DOCUMENT_SIGNATURE_HELP, options)
    def on_signature_help(params: types.SignatureHelpParams) -> types.SignatureHelp | None:
        ctx = common.context_at(ls, params.text_document.uri, params.position)
        return signature_help(ls, ctx) if ctx is not None else None
