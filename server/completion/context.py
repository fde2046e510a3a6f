"""Context stage: from a document and a cursor to what the prompt needs.

Finds the method around the cursor from the text alone (a half-typed method does not parse,
so this cannot wait for the parser), decides between a single-line and a multi-line
suggestion, cuts the prompt windows at stable points, and asks the context providers for
project context.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Protocol

from server.completion.lexical import ScanState, scan
from server.completion.types import (
    CompletionRequest,
    ContextSnippet,
    CursorContext,
    MethodSpan,
    Mode,
)
from smalltalk_grammar import format_of

log = logging.getLogger(__name__)

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_PATTERN = (
    rf"(?:{_IDENT}:\s*{_IDENT}\s*)+"  # keyword
    rf"|[-+*/\\<>=~@%|&?,]+\s*{_IDENT}"  # binary
    rf"|{_IDENT}"  # unary
)
# `Foo >> bar [`, `Foo class >> at: i put: x [` (Tonel, GNU) or `bar [` (GNU class body).
_HEADER = re.compile(
    rf"^[ \t]*(?:(?P<cls>{_IDENT}(?:\.{_IDENT})*)(?P<side>[ \t]+class)?[ \t]*>>[ \t]*)?"
    rf"(?P<pattern>{_PATTERN})[ \t]*\[[ \t\r]*$",
    re.MULTILINE,
)
_TONEL_PRAGMA = re.compile(r"^\{[ \t]*#category", re.MULTILINE)
_CHUNK_CLASS = re.compile(rf"!\s*(?P<cls>{_IDENT})(?P<side>\s+class)?\s+\w*[mM]ethods")
_BRACKET_CLASS = re.compile(
    rf"^\s*(?:{_IDENT}\s+subclass:\s*#?(?P<sub>{_IDENT})|(?P<ext>{_IDENT})\s+(?:class\s+)?extend)\s*\[",
    re.MULTILINE,
)
_TEMPS = re.compile(r"^\s*\|[^|]*\|")


class ContextProvider(Protocol):
    """Supplies project context for a completion; retrieval plugs in here.

    Providers are asked in order and their snippets go into the prompt in that order, before
    the file's own text. Return the same snippets while the cursor stays in one method, so the
    prompt's front stays stable and llama.cpp reuses its KV cache.
    """

    def snippets(
        self, request: CompletionRequest, method: MethodSpan | None
    ) -> Sequence[ContextSnippet]: ...


def find_method(text: str, offset: int, source_format: str) -> tuple[MethodSpan, ScanState] | None:
    """The method around `offset` and the scanner state at the cursor relative to its body."""
    if source_format == "chunk":
        return _chunk_method(text, offset)
    if source_format in ("filetree", "method"):
        start = text.index("\n") + 1 if source_format == "filetree" and "\n" in text else 0
        start = min(start, offset)
        state, _ = scan(text[start:offset])
        end = len(text)
        return MethodSpan(start, end, text[start:offset], text[offset:end]), state
    return _bracketed_method(text, offset)


def _bracketed_method(text: str, offset: int) -> tuple[MethodSpan, ScanState] | None:
    headers = [m for m in _HEADER.finditer(text, 0, offset) if m.end() <= offset]
    if not headers:
        return None
    header = headers[-1]
    body_start = header.end()
    state, events = scan(text[body_start:offset], ScanState(), body_start)
    if any(event.kind == "bad-close" for event in events):
        return None  # that method closed before the cursor
    end = _method_end(text, offset, state)
    pattern = header.group("pattern")
    cls_name = header.group("cls") or _enclosing_bracket_class(text, header.start())
    span = MethodSpan(
        start=header.start("pattern"),
        end=end,
        before=pattern + text[body_start:offset],
        after=text[offset:end],
        class_name=cls_name,
        selector=_selector(pattern),
        side="class" if header.group("side") else "instance",
    )
    return span, state


def _method_end(text: str, offset: int, state: ScanState) -> int:
    """Where the method body open at `offset` ends: its own `]` (the first closer the body did
    not open), or else the next method header, whichever comes first."""
    stop = len(text)
    for match in (_HEADER.search(text, offset), _TONEL_PRAGMA.search(text, offset)):
        if match is not None:
            stop = min(stop, match.start())
    _, events = scan(text[offset:stop], state, offset)
    for event in events:
        if event.kind == "bad-close":
            return event.offset
    return offset + len(text[offset:stop].rstrip())


def _chunk_method(text: str, offset: int) -> tuple[MethodSpan, ScanState] | None:
    before_bangs = [m.end() for m in re.finditer(r"(?<!!)!(?!!)", text[:offset])]
    start = before_bangs[-1] if before_bangs else 0
    while start < offset and text[start] in " \t\r\n":
        start += 1
    after_bang = re.search(r"(?<!!)!(?!!)", text[offset:])
    end = offset + after_bang.start() if after_bang else len(text)
    before = text[start:offset].replace("!!", "!")
    after = text[offset:end].replace("!!", "!")
    state, _ = scan(before)
    header = None
    for match in _CHUNK_CLASS.finditer(text, 0, start):
        header = match
    first_line = before.split("\n", 1)[0].strip()
    return (
        MethodSpan(
            start=start,
            end=end,
            before=before,
            after=after,
            class_name=header.group("cls") if header else None,
            selector=_selector(first_line),
            side="class" if header and header.group("side") else "instance",
        ),
        state,
    )


def _enclosing_bracket_class(text: str, before: int) -> str | None:
    found = None
    for match in _BRACKET_CLASS.finditer(text, 0, before):
        found = match.group("sub") or match.group("ext")
    return found


def _selector(pattern: str) -> str | None:
    pattern = pattern.strip()
    keywords = re.findall(rf"({_IDENT}:)", pattern)
    if keywords:
        return "".join(keywords)
    binary = re.match(r"([-+*/\\<>=~@%|&?,]+)", pattern)
    if binary:
        return binary.group(1)
    unary = re.match(_IDENT, pattern)
    return unary.group(0) if unary else None


def _body_is_empty(method: MethodSpan) -> bool:
    """True at the start of an empty method body: only the pattern, a comment and temps."""
    if method.after.strip():
        return False
    lines = method.before.split("\n", 1)
    body = lines[1] if len(lines) > 1 else ""
    if not body.strip() and len(lines) == 1:
        return False  # still typing the pattern line
    body = re.sub(r'"(?:[^"]|"")*"', "", body)
    body = _TEMPS.sub("", body)
    return not body.strip()


def choose_mode(line_prefix: str, line_suffix: str, method: MethodSpan | None) -> Mode:
    if line_prefix.strip() or line_suffix.strip() or method is None:
        return "line"
    return "block" if _body_is_empty(method) else "line"


def stable_window_start(offset: int, window: int) -> int:
    """A window start that moves in steps of a quarter window, so the prompt front stays put
    while the user types (llama.cpp then reuses the KV cache of everything before it)."""
    if offset <= window:
        return 0
    step = max(window // 4, 1)
    return ((offset - window) // step + 1) * step


def build_context(
    request: CompletionRequest,
    providers: Sequence[ContextProvider] = (),
    prefix_chars: int = 3000,
    suffix_chars: int = 600,
) -> CursorContext:
    text, offset = request.text, max(0, min(request.offset, len(request.text)))
    source_format = request.source_format or format_of(text, request.path)
    line_start = text.rfind("\n", 0, offset) + 1
    line_end = text.find("\n", offset)
    line_end = len(text) if line_end < 0 else line_end
    found = find_method(text, offset, source_format)
    method, state = found if found else (None, ScanState())
    start = stable_window_start(offset, prefix_chars)
    if start > 0:
        # Start at a line boundary so the first token is not a fragment of a word.
        newline = text.find("\n", start, offset)
        start = newline + 1 if newline >= 0 else start
    snippets: list[ContextSnippet] = []
    for provider in providers:
        try:
            snippets.extend(provider.snippets(request, method))
        except Exception:  # a broken provider costs context, never the completion
            log.exception("context provider %s failed", type(provider).__name__)
    return CursorContext(
        request=request,
        mode=choose_mode(text[line_start:offset], text[offset:line_end], method),
        line_prefix=text[line_start:offset],
        line_suffix=text[offset:line_end].rstrip("\r"),
        prefix=text[start:offset],
        suffix=text[offset : offset + suffix_chars],
        source_format=source_format,
        scan=state,
        method=method,
        snippets=tuple(snippets),
    )
