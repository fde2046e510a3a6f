"""Re-parsing an open document as it is edited.

What is reused between versions:
- Tonel and bare-method files: the tree-sitter tree. An edit is applied to the old tree
  (`Tree.edit`) and the new text is parsed with the old tree, so tree-sitter re-reads only the
  changed region.
- Every format: the facts of each method (selector, sends, references...) are cached by the
  method's exact text, so only methods whose text changed are walked again; the others only
  get their ranges recomputed. For chunk and bracket files the split into chunks/methods is
  redone (a fast scan over the text), then unchanged methods hit the cache.
"""

from __future__ import annotations

import logging

from smalltalk_grammar.build import FactsCache
from smalltalk_grammar.model import SourceFile
from smalltalk_grammar.parsing import ParseState, _failed, parse_text

log = logging.getLogger(__name__)


def _point(data: bytes, byte_offset: int) -> tuple[int, int]:
    """Tree-sitter point (row, byte column) of a byte offset; rows end at LF."""
    row = data.count(b"\n", 0, byte_offset)
    line_start = data.rfind(b"\n", 0, byte_offset) + 1
    return row, byte_offset - line_start


def _common_prefix(a: str, b: str) -> int:
    # Binary search on slice equality: the comparisons run in C.
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _changed_span(old: str, new: str) -> tuple[int, int, int]:
    """(start, old_end, new_end) of the one span in which `old` and `new` differ."""
    start = _common_prefix(old, new)
    limit = min(len(old), len(new)) - start
    lo, hi = 0, limit
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if old[len(old) - mid :] == new[len(new) - mid :]:
            lo = mid
        else:
            hi = mid - 1
    return start, len(old) - lo, len(new) - lo


class DocumentParser:
    """`DocumentParser(path).parse(text)` once, then `.edit(start, old_end, new_text)` per
    change (character offsets into the current text, as `offset_at` gives them)."""

    def __init__(self, path: str | None = None) -> None:
        self.path = path
        self.text = ""
        self.state = ParseState(FactsCache())
        self.result: SourceFile | None = None

    def parse(self, text: str) -> SourceFile:
        """Parse a whole new version of the text. When an earlier version was parsed, the
        changed span is found by comparing the two, and parsed as an edit."""
        if self.result is None or self.state.tree is None:
            return self._run(text)
        start, old_end, new_end = _changed_span(self.text, text)
        return self.edit(start, old_end, text[start:new_end])

    def edit(self, start: int, old_end: int, new_text: str) -> SourceFile:
        """Replace `text[start:old_end]` by `new_text` and re-parse incrementally."""
        old = self.text
        start = max(0, min(start, len(old)))
        old_end = max(start, min(old_end, len(old)))
        text = old[:start] + new_text + old[old_end:]
        tree, data = self.state.tree, self.state.data
        if tree is not None and data is not None:
            try:
                start_byte = len(old[:start].encode("utf-8"))
                old_end_byte = start_byte + len(old[start:old_end].encode("utf-8"))
                new_end_byte = start_byte + len(new_text.encode("utf-8"))
                new_data = data[:start_byte] + new_text.encode("utf-8") + data[old_end_byte:]
                tree.edit(
                    start_byte=start_byte,
                    old_end_byte=old_end_byte,
                    new_end_byte=new_end_byte,
                    start_point=_point(data, start_byte),
                    old_end_point=_point(data, old_end_byte),
                    new_end_point=_point(new_data, new_end_byte),
                )
            except Exception:  # a stale tree must never break editing: parse afresh
                log.exception("incremental edit failed; re-parsing %s", self.path)
                self.state.tree = None
        return self._run(text)

    def _run(self, text: str) -> SourceFile:
        self.text = text
        try:
            self.result = parse_text(text, self.path, self.state)
        except Exception as err:
            log.exception("parsing %s failed", self.path)
            self.state.tree = None
            self.result = _failed(self.path, f"internal parser error: {err!r}")
        return self.result
