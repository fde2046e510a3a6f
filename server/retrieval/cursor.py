"""What the code at a cursor is about: its class, side, method and the selectors sent near it.

Works on the live text of the editor (which may be unsaved and broken), in every source
format, with regular expressions only: the parse in the project model can be a keystroke old.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# How far back a method can start, and how much of the code after the cursor still counts.
LOOK_BACK = 6000
LOOK_AHEAD = 300
QUERY_TAIL = 160

_TONEL_HEADER = re.compile(
    r"^[ \t]*(?P<cls>[A-Za-z_][\w.:]*)(?P<side>[ \t]+class)?[ \t]*>>[ \t]*(?P<pat>[^\[\n]*)\[",
    re.M,
)
_TONEL_CATEGORY = re.compile(r"\{\s*#category\s*:\s*#?'?(?P<cat>[^'}]*?)'?\s*\}\s*$")
_CHUNK_SECTION = re.compile(
    r"!\s*(?P<cls>[A-Za-z_][\w.]*)(?P<side>\s+class)?\s+methodsFor:\s*'(?P<cat>[^']*)'"
)
_VA_SECTION = re.compile(
    r"!\s*(?P<cls>[A-Za-z_][\w.]*)(?P<side>\s+class)?\s+(?:public|private)Methods\s*!"
)
_BRACKET_CLASS = re.compile(
    r"(?:subclass:\s*#?(?P<sub>[A-Za-z_]\w*)|(?P<ext>[A-Za-z_]\w*)(?P<side>\s+class)?\s+extend)"
    r"\s*\["
)
_FILETREE = re.compile(r"(?P<cls>[^/\\]+)\.(?:class|extension)[/\\](?P<side>instance|class)[/\\]")
_PATTERN_KEYWORD = re.compile(r"([A-Za-z_]\w*:)\s*[A-Za-z_]\w*")
_PATTERN_BINARY = re.compile(r"^([-+*/\\<>=~@%|&?,!]+)\s*[A-Za-z_]\w*")
_PATTERN_UNARY = re.compile(r"^([A-Za-z_]\w*)\s*$")
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


def pattern_selector(pattern: str) -> str | None:
    """`at: i put: v` -> `at:put:`; `+ other` -> `+`; `size` -> `size`."""
    pattern = pattern.strip()
    keywords = _PATTERN_KEYWORD.findall(pattern)
    if keywords:
        return "".join(keywords)
    if match := _PATTERN_BINARY.match(pattern):
        return match.group(1)
    if match := _PATTERN_UNARY.match(pattern):
        return match.group(1)
    return None


def _blank_comments(text: str) -> str:
    """Comments and strings become spaces (same length), so their words are not sends."""
    return _COMMENT_OR_STRING.sub(lambda m: " " * len(m.group(0)), text)


def _last(pattern: re.Pattern[str], text: str) -> re.Match[str] | None:
    last = None
    for last in pattern.finditer(text):  # noqa: B007 - the loop only seeks the last match
        pass
    return last


def analyse(text: str, offset: int, path: str | None = None) -> Cursor:
    offset = max(0, min(offset, len(text)))
    cursor = Cursor()
    base = max(0, offset - LOOK_BACK)
    before = text[base:offset]
    starts: list[int] = []

    header = _last(_TONEL_HEADER, before)
    if header is not None:
        cursor.class_name = header.group("cls")
        cursor.side = "class" if header.group("side") else "instance"
        cursor.selector = pattern_selector(header.group("pat"))
        cursor.method_start = base + header.start("pat")
        category = _TONEL_CATEGORY.search(before[max(0, header.start() - 300): header.start()])
        if category:
            cursor.category = category.group("cat").strip() or None
        starts.append(cursor.method_start)
    else:
        section = _last(_CHUNK_SECTION, before)
        va = _last(_VA_SECTION, before)
        if va is not None and (section is None or va.start() > section.start()):
            section = va
        if section is not None:
            cursor.class_name = section.group("cls")
            cursor.side = "class" if section.group("side") else "instance"
            cursor.category = section.groupdict().get("cat") or None
            # The method starts after the last chunk end (a lone `!`) before the cursor.
            bangs = [m.end() for m in re.finditer(r"(?<!!)!(?!!)", before)]
            cursor.method_start = base + (bangs[-1] if bangs else section.end())
            first_line = text[cursor.method_start:offset].lstrip().split("\n", 1)[0]
            if "\n" in text[cursor.method_start:offset].lstrip():
                cursor.selector = pattern_selector(first_line)
        else:
            bracket = _last(_BRACKET_CLASS, before)
            if bracket is not None:
                cursor.class_name = bracket.group("sub") or bracket.group("ext")
                cursor.side = "class" if bracket.group("side") else "instance"
                cursor.method_start = base + bracket.end()
    if cursor.class_name is None and path and (tree := _FILETREE.search(path)):
        cursor.class_name = tree.group("cls")
        cursor.side = tree.group("side")
        lines = text.split("\n", 2)
        cursor.category = lines[0].strip() or None if len(lines) > 1 else None
        cursor.method_start = len(lines[0]) + 1 if len(lines) > 1 else 0
        pattern_line = lines[1] if len(lines) > 1 else ""
        cursor.selector = pattern_selector(pattern_line)
    if cursor.class_name and "." in cursor.class_name:
        cursor.class_name = cursor.class_name.rsplit(".", 1)[-1]  # VisualWorks namespaces
    if cursor.class_name and ":" in cursor.class_name:
        cursor.class_name = cursor.class_name.rsplit(":", 1)[-1]

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
