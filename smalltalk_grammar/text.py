"""Text plumbing shared by every format: decoding bytes, line indexes, byte/character offsets.

Positions are zero-based lines and characters (Python code points) in the decoded text, and
CR, LF and CRLF each end a line, as `model.py` promises. Tree-sitter speaks UTF-8 byte offsets,
so `ByteMap` converts between the two; for ASCII text (the common case) it is the identity.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from itertools import accumulate
from typing import Literal

from smalltalk_grammar.construct import make_position, make_range
from smalltalk_grammar.model import Position, Range

LineEnding = Literal["lf", "crlf", "cr", "mixed", "none"]

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
# Characters outside the Basic Multilingual Plane: two code units each in utf-16, which is
# how most editors count columns (the model counts code points).
WIDE_CHARACTER = re.compile("[\U00010000-\U0010ffff]")


@dataclass
class Decoded:
    text: str
    encoding: str
    # A problem worth a diagnostic at the top of the file (Latin-1 fallback, binary data).
    warning: str | None = None
    binary: bool = False


def decode(data: bytes) -> Decoded:
    """Bytes -> text: UTF-8 (with or without BOM), UTF-16 with a BOM, else Latin-1 with a warning.

    Data with NUL bytes (and no UTF-16 BOM) is binary: empty text and a warning.
    """
    if data.startswith(b"\xef\xbb\xbf"):
        try:
            return Decoded(data[3:].decode("utf-8"), "utf-8-sig")
        except UnicodeDecodeError:
            text = data[3:].decode("latin-1")
            return Decoded(text, "latin-1", "UTF-8 BOM but invalid UTF-8 bytes; read as Latin-1")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return Decoded(data.decode("utf-16"), "utf-16")
        except UnicodeDecodeError:
            return Decoded("", "binary", "binary file (invalid UTF-16); not parsed", binary=True)
    if b"\x00" in data:
        return Decoded("", "binary", "binary file (contains NUL bytes); not parsed", binary=True)
    try:
        return Decoded(data.decode("utf-8"), "utf-8")
    except UnicodeDecodeError as err:
        return Decoded(
            data.decode("latin-1"),
            "latin-1",
            f"not valid UTF-8 (byte 0x{data[err.start]:02x} at offset {err.start}); "
            "read as Latin-1",
        )


def line_ending(text: str) -> LineEnding:
    if "\r" not in text:  # the common case, in one scan
        return "lf" if "\n" in text else "none"
    crlf = text.count("\r\n")
    cr = text.count("\r") - crlf
    lf = text.count("\n") - crlf
    kinds = [name for name, count in (("crlf", crlf), ("cr", cr), ("lf", lf)) if count]
    if not kinds:
        return "none"
    if len(kinds) > 1:
        return "mixed"
    return kinds[0]  # type: ignore[return-value]


class LineIndex:
    """Offsets <-> positions for one text. Built once per text in O(n), then O(log n) lookups."""

    def __init__(self, text: str) -> None:
        self.text = text
        if "\r" in text:
            starts = [0]
            starts.extend(m.end() for m in _LINE_BREAK.finditer(text))
        else:
            # LF-only text (the common case): line lengths summed up in C, no Python loop.
            starts = [0, *accumulate(map((1).__add__, map(len, text.split("\n"))))]
            starts.pop()  # the end of the last line is not the start of another
        self.starts = starts

    def position(self, offset: int) -> Position:
        offset = max(0, min(offset, len(self.text)))
        line = bisect_right(self.starts, offset) - 1
        return make_position(line, offset - self.starts[line])

    def position_dict(self, offset: int) -> dict[str, int]:
        """The position as a plain dict: cheaper to validate as part of a bigger model."""
        offset = max(0, min(offset, len(self.text)))
        line = bisect_right(self.starts, offset) - 1
        return {"line": line, "character": offset - self.starts[line]}

    def range(self, start: int, end: int) -> Range:
        # position() twice, inlined: every method and class asks for two of these.
        starts = self.starts
        size = len(self.text)
        start = 0 if start < 0 else size if start > size else start
        end = 0 if end < 0 else size if end > size else end
        line = bisect_right(starts, start) - 1
        end_line = bisect_right(starts, end) - 1
        return make_range(line, start - starts[line], end_line, end - starts[end_line])

    def range_dict(self, start: int, end: int) -> dict[str, dict[str, int]]:
        return {"start": self.position_dict(start), "end": self.position_dict(end)}

    def offset(self, pos: Position) -> int:
        """The offset of a position; characters past the end of a line clamp to its end."""
        if pos.line < 0:
            return 0
        if pos.line >= len(self.starts):
            return len(self.text)
        start = self.starts[pos.line]
        end = self.starts[pos.line + 1] if pos.line + 1 < len(self.starts) else len(self.text)
        # Do not step into the line break itself.
        content_end = end
        while content_end > start and self.text[content_end - 1] in "\r\n":
            content_end -= 1
        return start + max(0, min(pos.character, content_end - start))


_last_index: LineIndex | None = None


def _index_for(text: str) -> LineIndex:
    # One-entry cache: callers often ask several positions of the same text in a row. Read
    # the global once, so another thread replacing it cannot hand us the wrong index.
    global _last_index
    index = _last_index
    if index is None or index.text is not text:
        index = _last_index = LineIndex(text)
    return index


def position_at(text: str, offset: int) -> Position:
    """The line/character position of a character offset in `text`."""
    return _index_for(text).position(offset)


def offset_at(text: str, pos: Position) -> int:
    """The character offset of a line/character position in `text` (clamped to the text)."""
    return _index_for(text).offset(pos)


class ByteMap:
    """UTF-8 byte offsets <-> character offsets of one text.

    `to_char` / `to_byte` are the identity for ASCII text (the common case, and the hot path
    of every tree walk), else a bisect over the positions of the non-ASCII characters.
    """

    def __init__(self, text: str) -> None:
        self.ascii = text.isascii()
        self.char_pos: list[int] = []  # character offsets of non-ASCII characters
        self.byte_pos: list[int] = []  # their byte offsets
        self.extra: list[int] = [0]  # extra bytes of the first k non-ASCII characters
        if self.ascii:
            return
        total = 0
        for m in _NON_ASCII.finditer(text):
            i = m.start()
            code = ord(text[i])
            self.char_pos.append(i)
            self.byte_pos.append(i + total)
            total += 1 if code < 0x800 else 2 if code < 0x10000 else 3
            self.extra.append(total)
        self.to_char = self._to_char  # type: ignore[method-assign]
        self.to_byte = self._to_byte  # type: ignore[method-assign]

    @staticmethod
    def to_char(byte_offset: int) -> int:
        return byte_offset

    @staticmethod
    def to_byte(char_offset: int) -> int:
        return char_offset

    def _to_char(self, byte_offset: int) -> int:
        k = bisect_left(self.byte_pos, byte_offset)
        return byte_offset - self.extra[k]

    def _to_byte(self, char_offset: int) -> int:
        k = bisect_left(self.char_pos, char_offset)
        return char_offset + self.extra[k]


def wide_lines(text: str, index: LineIndex | None = None) -> list[int]:
    """Numbers of the lines that hold a character outside the Basic Multilingual Plane (lines
    as LineIndex counts them: LF, CRLF and CR each end one)."""
    if text.isascii() or not WIDE_CHARACTER.search(text):  # isascii is a flag check, no scan
        return []
    index = index or LineIndex(text)
    return sorted({index.position_dict(m.start())["line"] for m in WIDE_CHARACTER.finditer(text)})
