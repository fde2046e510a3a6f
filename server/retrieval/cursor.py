"""What the code at a cursor is about: its class, side, method and the selectors sent near it.

The class, side, selector and category come from the one cursor analysis
(server.completion.cursor); this module adds the sends near the cursor and the similarity query.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from server.completion.cursor import LOOK_BACK, analyse_cursor, pattern_selector
from smalltalk_grammar import format_of

__all__ = ["LOOK_AHEAD", "QUERY_TAIL", "Cursor", "analyse", "pattern_selector", "sent_selectors"]

# How much of the code after the cursor still counts, and of the code before it in the query.
LOOK_AHEAD = 300
QUERY_TAIL = 160

_KEYWORD = re.compile(r"(?<![\w:])([A-Za-z_]\w*):(?!=)")
# A lower-case word not followed by `:` (a keyword part) or `:=` (an assignment).
_UNARY = re.compile(r"(?<![\w:#$])([a-z_]\w*)\b(?!\s*:)")
_TYPED = re.compile(r"([A-Za-z_]\w*:?)$")
_COMMENT_OR_STRING = re.compile(r"\"[^\"]*\"?|'[^']*'?")
_METHOD_END = re.compile(r"\n[ \t]*\]|\n\{|\n\S[^\n]*>>|(?<!!)!(?!!)")
_PSEUDO = {"self", "super", "thisContext", "true", "false", "nil"}


@dataclass
class Cursor:
    class_name: str | None = None
    side: str = "instance"
    # Selector of the method the cursor is in, when its pattern is written already.
    selector: str | None = None
    category: str | None = None
    # Offset where the method (its pattern) starts in the text.
    method_start: int = 0
    # The word being typed at the cursor (`rightsF`, `at:`), or "".
    typed: str = ""
    # Identifiers and keyword parts near the cursor, nearest first; see `sent_selectors`.
    keywords: list[tuple[str, int]] = field(default_factory=list)
    unary: list[tuple[str, int]] = field(default_factory=list)
    # The method's pattern and the code just before the cursor: the similarity query.
    window: str = ""


def _blank_comments(text: str) -> str:
    """Comments and strings become spaces (same length), so their words are not sends."""
    return _COMMENT_OR_STRING.sub(lambda m: " " * len(m.group(0)), text)


def analyse(
    text: str, offset: int, path: str | None = None, source_format: str | None = None
) -> Cursor:
    """The cursor's class facts (from the one cursor analysis) and the sends around it."""
    offset = max(0, min(offset, len(text)))
    cursor = Cursor()
    base = max(0, offset - LOOK_BACK)
    before = text[base:offset]
    facts = analyse_cursor(text, offset, source_format or format_of(text, path), path).facts
    cursor.class_name, cursor.side, cursor.selector = facts.class_name, facts.side, facts.selector
    cursor.category, cursor.method_start = facts.category, facts.method_start

    # Only the end of the text can hold the word at the cursor (a `$` search over all of it
    # would try every position).
    typed = _TYPED.search(before[-120:])
    cursor.typed = typed.group(1) if typed else ""

    start = max(cursor.method_start, base)
    # Skip the method pattern itself: its keywords are the method's own, not sends.
    body_start = text.find("\n", start, offset)
    body_start = start if body_start < 0 or cursor.selector is None else body_start
    end = min(len(text), offset + LOOK_AHEAD)
    # The code after the cursor counts up to the end of the method, not into the next one.
    boundary = _METHOD_END.search(text, offset, end)
    end = boundary.start() if boundary else end
    region = _blank_comments(text[body_start:end])
    cursor_in_region = offset - body_start
    typed_start = cursor_in_region - len(cursor.typed)
    for match in _KEYWORD.finditer(region):
        if match.start() != typed_start:
            cursor.keywords.append((match.group(1) + ":", match.start() - cursor_in_region))
    for match in _UNARY.finditer(region):
        word = match.group(1)
        if word not in _PSEUDO and match.start() != typed_start:
            cursor.unary.append((word, match.start() - cursor_in_region))
    # The similarity query for a method the index does not know yet: its pattern and the
    # code just before the cursor. Short on purpose: one embedding costs about 0.3 ms per
    # token on a core, and it is paid while a completion waits.
    head = text[start:body_start].strip() if body_start > start else ""
    tail = text[max(body_start, offset - QUERY_TAIL):offset].strip()
    cursor.window = f"{head}\n{tail}".strip()
    return cursor


def sent_selectors(cursor: Cursor, known: set[str] | None = None, limit: int = 12) -> list[str]:
    """Selectors sent near the cursor, nearest first. Keyword parts in a row are joined
    (`at:` `put:` -> `at:put:`) when `known` says such a selector exists; code before the
    cursor counts as nearer than code after it."""

    def distance(position: int) -> int:
        return -position if position < 0 else 2 * position

    candidates: dict[str, int] = {}
    parts = cursor.keywords
    for i, (word, position) in enumerate(parts):
        joined = word
        for j in range(i, min(i + 4, len(parts))):
            if j > i:
                joined += parts[j][0]
            if known is None and j > i:
                break
            if known is None or joined in known:
                d = distance(position)
                candidates[joined] = min(candidates.get(joined, d), d)
    for word, position in cursor.unary:
        if known is None or word in known:
            d = distance(position)
            candidates[word] = min(candidates.get(word, d), d)
    # At the same distance the longer (joined) selector is the more specific one.
    ranked = sorted(candidates, key=lambda s: (candidates[s], -len(s), s))
    return ranked[:limit]
