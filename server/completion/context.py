"""Context stage: from a document and a cursor to what the prompt needs.

Takes the method around the cursor, the scanner state and the single-line or multi-line mode
from the one cursor analysis (server.completion.cursor), cuts the prompt windows at stable
points, and asks the context providers for project context.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import Protocol

from server.completion.cursor import CursorAnalysis, analyse_cursor
from server.completion.types import CompletionRequest, ContextSnippet, CursorContext, MethodSpan
from smalltalk_grammar import format_of

log = logging.getLogger(__name__)


class ContextProvider(Protocol):
    """Supplies project context for a completion; retrieval plugs in here.

    Providers are asked in order and their snippets go into the prompt in that order, before
    the file's own text. Return the same snippets while the cursor stays in one method, so the
    prompt's front stays stable and llama.cpp reuses its KV cache. `cursor` is the request's
    one cursor analysis (the method around the cursor, its class facts, the sends near it):
    a provider uses it and never analyses the text again.
    """

    def snippets(
        self, request: CompletionRequest, cursor: CursorAnalysis
    ) -> Sequence[ContextSnippet]: ...


def stable_window_start(offset: int, window: int) -> int:
    """A window start that moves in steps of a quarter window, so the prompt front stays put
    while the user types (llama.cpp then reuses the KV cache of everything before it)."""
    if offset <= window:
        return 0
    step = max(window // 4, 1)
    return ((offset - window) // step + 1) * step


def suffix_end(text: str, offset: int, method: MethodSpan | None, suffix_chars: int) -> int:
    """Where the prompt's text after the cursor ends: the line that closes the cursor's method
    (`]`, `!`), within `suffix_chars`; the whole window outside a method.

    Why not the whole window: fill-in-the-middle prompts put the suffix after the prefix, so
    each keystroke evaluates the suffix again (about 200 tokens for 600 characters), and the
    methods further down say little about this one. Why not the next method's header too: the
    model then tends to write that method's body (seen at Collection >> errorNotFound:)."""
    limit = min(len(text), offset + suffix_chars)
    if method is None or not method.start <= offset <= method.end:
        return limit
    end = method.end
    while end < limit and text[end] in " \t\r\n":
        end += 1
    newline = text.find("\n", end, limit)
    end = limit if newline < 0 else newline
    return max(offset, end)


def build_context(
    request: CompletionRequest,
    providers: Sequence[ContextProvider] = (),
    prefix_chars: int = 3000,
    suffix_chars: int = 600,
) -> CursorContext:
    text, offset = request.text, max(0, min(request.offset, len(request.text)))
    source_format = request.source_format or format_of(text, request.path)
    cursor = analyse_cursor(text, offset, source_format, request.path)
    lead = cursor.lead
    if lead:
        # The context of the text with the new line typed; the suggestion starts with it.
        text, offset = text[:offset] + lead + text[offset:], offset + len(lead)
        request = replace(request, text=text, offset=offset)
    line_start = text.rfind("\n", 0, offset) + 1
    line_end = text.find("\n", offset)
    line_end = len(text) if line_end < 0 else line_end
    method = cursor.method
    start = stable_window_start(offset, prefix_chars)
    if start > 0:
        # Start at a line boundary so the first token is not a fragment of a word.
        newline = text.find("\n", start, offset)
        start = newline + 1 if newline >= 0 else start
    snippets: list[ContextSnippet] = []
    for provider in providers:
        try:
            snippets.extend(provider.snippets(request, cursor))
        except Exception:  # a broken provider costs context, never the completion
            log.exception("context provider %s failed", type(provider).__name__)
    return CursorContext(
        request=request,
        mode=cursor.mode,
        line_prefix=text[line_start:offset],
        line_suffix=text[offset:line_end].rstrip("\r"),
        prefix=text[start:offset],
        suffix=text[offset : suffix_end(text, offset, method, suffix_chars)],
        source_format=source_format,
        scan=cursor.scan,
        method=method,
        snippets=tuple(snippets),
        lead=lead,
    )
