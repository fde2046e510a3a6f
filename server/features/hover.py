"""Hover (static part): a class's definition line, superclass chain and comment; a selector's
implementors with the first line of their comments and its sender count; what a variable is.
Rendered as Markdown. Other features may append sections through `ls.hover_extras`."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from lsprotocol import types

from server.class_render import render_class
from server.features import common
from server.features.analysis import Target, ranked_implementor_refs
from server.project_model import ProjectModel

if TYPE_CHECKING:
    from server.core import SmalltalkLanguageServer

log = logging.getLogger(__name__)

IMPLEMENTORS_SHOWN = 10
_PSEUDO = {
    "thisContext": "the current execution context",
    "true": "the Boolean true, the only instance of True",
    "false": "the Boolean false, the only instance of False",
    "nil": "nil, the only instance of UndefinedObject",
}


def class_markdown(project: ProjectModel, name: str) -> str | None:
    cls = project.class_named(name)
    if cls is None:
        return None
    return render_class(cls, "markdown", superclasses=project.superclass_chain(name))


def selector_markdown(project: ProjectModel, target: Target) -> str | None:
    refs = ranked_implementor_refs(project, target.name, target.receiver)
    senders = project.send_count(target.name)
    if not refs and not senders:
        return None
    lines = [f"**{target.name}** — {_count(len(refs), 'implementor')}, {_count(senders, 'sender')}"]
    if refs:
        lines.append("")
    shown = [project.method(ref) for ref in refs[:IMPLEMENTORS_SHOWN]]
    for method in shown:
        if method is None:
            continue
        side = " class" if method.side == "class" else ""
        entry = f"- `{method.class_name}{side} >> {method.selector}`"
        if method.comment:
            entry += " — " + method.comment.strip().splitlines()[0]
        lines.append(entry)
    if len(refs) > IMPLEMENTORS_SHOWN:
        lines.append(f"- … and {len(refs) - IMPLEMENTORS_SHOWN} more")
    return "\n".join(lines)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def variable_markdown(ctx: common.Context, target: Target) -> str:
    owner = ctx.method.class_name if ctx.method is not None else None
    if target.scope == "argument":
        what = "method argument"
    elif target.scope == "temporary":
        what = "temporary variable"
    elif target.scope == "instance":
        what = "instance variable" + (f" of {owner}" if owner else "")
    elif target.scope == "class":
        what = "class variable" + (f" of {owner}" if owner else "")
    else:
        what = "undeclared variable or global"
    return f"**{target.name}** — {what}"


def pseudo_markdown(ctx: common.Context, target: Target) -> str:
    method = ctx.method
    if target.name in ("self", "super") and method is not None and method.class_name:
        what = (
            f"the class {method.class_name}"
            if method.side == "class"
            else (f"the receiver, an instance of {method.class_name}")
        )
        if target.name == "super":
            what += ", with method lookup starting in its superclass"
        return f"**{target.name}** — {what}"
    return f"**{target.name}** — {_PSEUDO.get(target.name, 'the receiver')}"


def hover_markdown(ls: SmalltalkLanguageServer, ctx: common.Context) -> str | None:
    target = ctx.target
    if target is None:
        return None
    if target.kind == "class":
        return class_markdown(ls.project, target.name)
    if target.kind == "selector":
        return selector_markdown(ls.project, target)
    if target.kind == "variable":
        return variable_markdown(ctx, target)
    return pseudo_markdown(ctx, target)


def setup(ls: SmalltalkLanguageServer) -> None:
    @ls.handler(types.TEXT_DOCUMENT_HOVER)
    def on_hover(params: types.HoverParams) -> types.Hover | None:
        ctx = common.context_at(ls, params.text_document.uri, params.position)
        if ctx is None:
            return None
        text = hover_markdown(ls, ctx)
        for extra in list(ls.hover_extras):
            try:
                more = extra(ctx)
            except Exception:
                log.exception("hover extra %s failed", getattr(extra, "__qualname__", extra))
                continue
            if more:
                text = f"{text}\n\n---\n\n{more}" if text else more
        if not text or ctx.target is None:
            return None
        rng = common.span_range(ctx.snap.text, ctx.target.start, ctx.target.end)
        return types.Hover(
            contents=types.MarkupContent(kind=types.MarkupKind.Markdown, value=text),
            range=common.lsp_range(rng),
        )
