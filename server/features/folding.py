"""Folding ranges: every method, class definition and class comment spanning several lines."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lsprotocol import types

from smalltalk_grammar.model import Range, SourceFile

if TYPE_CHECKING:
    from server.core import SmalltalkLanguageServer


def folding_ranges(source: SourceFile) -> list[types.FoldingRange]:
    ranges: list[Range] = [cls.range for cls in source.classes]
    ranges += [m.range for m in source.methods]
    seen: set[tuple[int, int]] = set()
    found: list[types.FoldingRange] = []
    for rng in sorted(ranges, key=lambda r: (r.start.line, -r.end.line)):
        lines = (rng.start.line, rng.end.line)
        if lines[1] > lines[0] and lines not in seen:
            seen.add(lines)
            found.append(
                types.FoldingRange(
                    start_line=lines[0], end_line=lines[1], kind=types.FoldingRangeKind.Region
                )
            )
    return found


def setup(ls: SmalltalkLanguageServer) -> None:
    @ls.handler(types.TEXT_DOCUMENT_FOLDING_RANGE, empty=list)
    def on_folding_range(params: types.FoldingRangeParams) -> list[types.FoldingRange]:
        snap = ls.snapshot(params.text_document.uri)
        return folding_ranges(snap.source) if snap is not None else []
