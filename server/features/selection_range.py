"""Selection range: from the token under the cursor outwards through the expressions,
statement, block(s) and method body to the whole method, then the class definition."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lsprotocol import types

from server.features import common
from smalltalk_grammar import offset_at

if TYPE_CHECKING:
    from server.core import SmalltalkLanguageServer


def spans_at(ls: SmalltalkLanguageServer, uri: str, pos: types.Position) -> list[tuple[int, int]]:
    """Nested document spans around a position, innermost first, each strictly larger."""
    ctx = common.context_at(ls, uri, pos)
    if ctx is None:
        return []
    snap = ctx.snap
    spans: list[tuple[int, int]] = []
    if ctx.method is not None and ctx.tree is not None:
        mt = ctx.tree
        char = mt.from_doc(ctx.offset)
        byte = mt.to_byte(char)
        node = mt.tree.root_node.descendant_for_byte_range(byte, byte)
        while node is not None and node.type != "source":
            spans.append(mt.span(node))
            node = node.parent
        method = ctx.method
        spans.append((method.start_offset, method.end_offset))
    for cls in snap.source.classes:
        if cls.range.contains(ctx.position):
            start = offset_at(snap.text, cls.range.start)
            end = offset_at(snap.text, cls.range.end)
            spans.append((start, end))
    if not spans:
        start, end = common.word_at(snap.text, ctx.offset)
        if end > start:
            spans.append((start, end))
    nested: list[tuple[int, int]] = []
    for start, end in spans:
        if nested:
            inner = nested[-1]
            if (start, end) == inner or not (start <= inner[0] and inner[1] <= end):
                continue
        nested.append((start, end))
    return nested


def selection_range(
    ls: SmalltalkLanguageServer, uri: str, pos: types.Position
) -> types.SelectionRange:
    snap = ls.snapshot(uri)
    text = snap.text if snap is not None else ""
    result: types.SelectionRange | None = None
    for start, end in reversed(spans_at(ls, uri, pos)):
        rng = common.lsp_range(common.span_range(text, start, end))
        result = types.SelectionRange(range=rng, parent=result)
    return result or types.SelectionRange(range=types.Range(start=pos, end=pos))


def setup(ls: SmalltalkLanguageServer) -> None:
    @ls.handler(types.TEXT_DOCUMENT_SELECTION_RANGE, empty=list)
    def on_selection_range(params: types.SelectionRangeParams) -> list[types.SelectionRange]:
        uri = params.text_document.uri
        return [selection_range(ls, uri, pos) for pos in params.positions]
