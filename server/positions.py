"""Columns between the client's position encoding and the project model's.

The model counts columns in code points, which LSP calls "utf-32". A client that offers
utf-32 gets it and nothing is converted. Every other client gets LSP's default, utf-16, where a
character outside the Basic Multilingual Plane (an emoji in a comment, say) counts as two:
columns after one on the same line are converted on the way in and out. Such lines are rare,
so a document without any ("wide lines") is passed through untouched. utf-8 is never chosen,
although Neovim offers it first: it would mean converting every line with an accent.

Conversion happens at the boundary (requests' positions and ranges in, results out), so the
features keep to code points.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Container
from typing import Any

import attrs
from lsprotocol import types

from smalltalk_grammar.text import WIDE_CHARACTER, LineIndex
from smalltalk_grammar.text import wide_lines as grammar_wide_lines

CODE_POINTS = types.PositionEncodingKind.Utf32
UTF16 = types.PositionEncodingKind.Utf16

# Fields that hold no positions of the document: the client's or our own opaque data, a
# command's arguments, the identifier of the document.
_OPAQUE = frozenset({"data", "arguments", "command", "text_document"})

# uri -> the numbers of the document's lines that hold a wide character.
WideLines = Callable[[str], Container[int]]
# (uri, line number) -> that line's text, or None when it cannot be read.
LineText = Callable[[str, int], str | None]


def prefer_code_points(capabilities: types.ClientCapabilities) -> None:
    """Reorder the encodings a client offers so that pygls picks utf-32 if offered, else
    utf-16 (utf-8 is dropped; utf-16 is every client's fallback)."""
    general = capabilities.general
    if general is None or not general.position_encodings:
        return
    offered = list(general.position_encodings)
    general.position_encodings = [e for e in (CODE_POINTS, UTF16) if e in offered] or [UTF16]


def wide_lines(text: str) -> frozenset[int]:
    """Numbers of the lines that hold a character outside the Basic Multilingual Plane."""
    return frozenset(grammar_wide_lines(text))


def line_text(text: str, number: int) -> str | None:
    """One line of a text, without its line break; None past the end."""
    index = LineIndex(text)
    if not 0 <= number < len(index.starts):
        return None
    start = index.starts[number]
    end = index.starts[number + 1] if number + 1 < len(index.starts) else len(text)
    return text[start:end].rstrip("\r\n")


def utf16_length(text: str) -> int:
    return len(text) + len(WIDE_CHARACTER.findall(text))


def to_utf16(line: str, column: int) -> int:
    return column + len(WIDE_CHARACTER.findall(line, 0, column))


def from_utf16(line: str, units: int) -> int:
    column = counted = 0
    for char in line:
        step = 2 if ord(char) > 0xFFFF else 1
        if counted + step > units:
            return column
        counted += step
        column += 1
    return column + units - counted  # past the end of the line: kept as far past


class Converter:
    """Converts positions inside LSP values for one direction ("in" from the client, "out"
    to it); values are copied where something changes, never changed in place (results may
    be cached)."""

    def __init__(self, wide: WideLines, line_text: LineText, direction: str) -> None:
        self.wide = wide
        self.line_text = line_text
        self.column = to_utf16 if direction == "out" else from_utf16

    def convert(self, value: Any, uri: str | None) -> Any:
        if isinstance(value, types.Position):
            return self._position(value, uri)
        if isinstance(value, list):
            items = [self.convert(item, uri) for item in value]
            return items if any(a is not b for a, b in zip(items, value, strict=True)) else value
        if not attrs.has(type(value)):
            return value
        uri = _uri_of(value) or uri
        updates = {}
        for field in attrs.fields(type(value)):
            if field.name in _OPAQUE:
                continue
            old = getattr(value, field.name)
            if old is None or isinstance(old, (str, int, float, bool)):
                continue
            if field.name == "changes" and isinstance(old, dict):
                new = self._changes(old)
            else:
                new = self.convert(old, uri)
            if new is not old:
                updates[field.name] = new
        return attrs.evolve(value, **updates) if updates else value

    def _changes(self, changes: dict[str, Any]) -> dict[str, Any]:
        """WorkspaceEdit.changes: uri -> edits of that document."""
        converted = {uri: self.convert(edits, uri) for uri, edits in changes.items()}
        return converted if any(converted[k] is not v for k, v in changes.items()) else changes

    def _position(self, pos: types.Position, uri: str | None) -> types.Position:
        if uri is None or pos.line not in self.wide(uri):
            return pos
        line = self.line_text(uri, pos.line)
        if line is None:
            return pos
        return types.Position(line=pos.line, character=self.column(line, pos.character))


def _uri_of(value: Any) -> str | None:
    """The document a value's positions belong to, when it names one."""
    for name in ("uri", "target_uri"):
        found = getattr(value, name, None)
        if isinstance(found, str):
            return found
    document = getattr(value, "text_document", None)
    found = getattr(document, "uri", None)
    return found if isinstance(found, str) else None


class ClientColumns:
    """Wraps request handlers so their positions are converted while `active()` says the
    client counts in utf-16 and some document has a wide line."""

    def __init__(self, wide: WideLines, line_text: LineText, active: Callable[[], bool]):
        self.incoming = Converter(wide, line_text, "in")
        self.outgoing = Converter(wide, line_text, "out")
        self.active = active

    def to_client(self, value: Any, uri: str | None = None) -> Any:
        return self.outgoing.convert(value, uri) if self.active() else value

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any) -> Any:
                if not args or not self.active():
                    return await fn(*args)
                uri = _uri_of(args[0])
                result = await fn(self.incoming.convert(args[0], uri), *args[1:])
                return self.outgoing.convert(result, uri)

            return async_wrapper

        @functools.wraps(fn)
        def wrapper(*args: Any) -> Any:
            if not args or not self.active():
                return fn(*args)
            uri = _uri_of(args[0])
            result = fn(self.incoming.convert(args[0], uri), *args[1:])
            return self.outgoing.convert(result, uri)

        return wrapper
