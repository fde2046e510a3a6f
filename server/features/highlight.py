"""Document highlight: the variable, selector or class under the cursor, in this document.

Local variables (arguments, temporaries, block arguments) in their method, instance and class
variables in the methods of their class, selectors and classes in every method of the document;
a variable assigned to (`x := ...`) is a write, every other use a read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lsprotocol import types

from server.features import common
from server.features.analysis import MethodTree, Target, TargetKind, occurrences

if TYPE_CHECKING:
    from server.core import SmalltalkLanguageServer

READ = types.DocumentHighlightKind.Read
WRITE = types.DocumentHighlightKind.Write
TEXT = types.DocumentHighlightKind.Text


def _writes(mt: MethodTree, name: str) -> set[tuple[int, int]]:
    """Spans of `name` as the target of an assignment in the method."""
    found: set[tuple[int, int]] = set()
    todo = [mt.tree.root_node]
    while todo:
        node = todo.pop()
        if node.type == "assignment" and node.children:
            first = node.children[0]
            if first.type == "identifier" and mt.node_text(first) == name:
                found.add(mt.span(first))
        todo.extend(node.children)
    return found


Span = tuple[int, int]


def _in_tree(mt: MethodTree, target: Target) -> list[tuple[Span, types.DocumentHighlightKind]]:
    kind: TargetKind = "selector" if target.kind == "selector" else "class"
    spans = occurrences(mt, kind, target.name)
    if target.kind != "variable":
        return [(span, TEXT) for span in spans]
    writes = _writes(mt, target.name)
    return [(span, WRITE if span in writes else READ) for span in spans]


def highlights(ctx: common.Context) -> list[types.DocumentHighlight]:
    target = ctx.target
    if target is None or target.kind == "pseudo":
        return []
    snap = ctx.snap
    found: dict[tuple[int, int], types.DocumentHighlightKind] = {}
    if target.kind == "variable" and target.scope in ("argument", "temporary"):
        if ctx.tree is None:
            return []
        found.update(_in_tree(ctx.tree, target))
        if target.declaration is not None:
            found.setdefault(target.declaration, WRITE)
    else:
        owner = ctx.method.class_name if ctx.method is not None else None
        for method in snap.source.methods:
            if target.kind == "variable" and owner is not None and method.class_name != owner:
                continue
            found.update(_in_tree(common.method_tree_of(snap, method), target))
        if target.kind in ("selector", "class") and target.definition:
            found.setdefault((target.start, target.end), TEXT)
    text = snap.text
    return [
        types.DocumentHighlight(range=common.lsp_range(common.span_range(text, s, e)), kind=k)
        for (s, e), k in sorted(found.items())
    ]


def setup(ls: SmalltalkLanguageServer) -> None:
    @ls.handler(types.TEXT_DOCUMENT_DOCUMENT_HIGHLIGHT, empty=list)
    def on_highlight(params: types.DocumentHighlightParams) -> list[types.DocumentHighlight]:
        ls.events.cursor_seen.emit(params.text_document.uri, params.position)
        ctx = common.context_at(ls, params.text_document.uri, params.position)
        return highlights(ctx) if ctx is not None else []
