"""The one cursor analysis: what the code at a cursor is in, from the live text alone.

A half-typed method does not parse and the project model's parse can be a keystroke old, so
this works on the editor's text with regular expressions and the lexical scanner, in every
source format. `analyse_cursor` gives the method around the cursor (its span, for the prompt
and the parse check), the scanner state there, the single-line or multi-line mode, the
class, side, selector and category the code belongs to, and the word typed and the selectors
sent near the cursor (the last two for retrieval). Every method-header and class-section
pattern of the server lives here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from server.completion.lexical import Scanner, ScanState, scan
from server.completion.types import MethodSpan, Mode

# How far back the retrieval facts look for a method's start.
LOOK_BACK = 6000
# How much of the code after the cursor still counts for the sends near it, and of the code
# before it in the similarity query.
LOOK_AHEAD = 300
QUERY_TAIL = 160

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
# The last line of a text that holds only a `]` (Tonel's and GNU's method closer).
_CLOSING_LINE = re.compile(r"(?:^|\n)[ \t]*(?P<close>\])[ \t]*$")
_CHUNK_CLASS = re.compile(rf"!\s*(?P<cls>{_IDENT})(?P<side>\s+class)?\s+\w*[mM]ethods")
_BRACKET_CLASS = re.compile(
    rf"^\s*(?:{_IDENT}\s+subclass:\s*#?(?P<sub>{_IDENT})|(?P<ext>{_IDENT})\s+(?:class\s+)?extend)\s*\[",
    re.MULTILINE,
)
_TEMPS = re.compile(r"^\s*\|[^|]*\|")
_BANG = re.compile(r"(?<!!)!(?!!)")

# The looser patterns of the class facts (a Tonel header with any pattern text, a chunk
# section with its category, a GNU class or extension with its side, a FileTree path).
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
_SECTION_CLASS = re.compile(
    r"(?:subclass:\s*#?(?P<sub>[A-Za-z_]\w*)|(?P<ext>[A-Za-z_]\w*)(?P<side>\s+class)?\s+extend)"
    r"\s*\["
)
_FILETREE = re.compile(r"(?P<cls>[^/\\]+)\.(?:class|extension)[/\\](?P<side>instance|class)[/\\]")

# The sends near the cursor: keyword parts, lower-case words not followed by `:` (a keyword
# part) or `:=` (an assignment), the word being typed; comments and strings are blanked first.
_KEYWORD = re.compile(r"(?<![\w:])([A-Za-z_]\w*):(?!=)")
_UNARY = re.compile(r"(?<![\w:#$])([a-z_]\w*)\b(?!\s*:)")
_TYPED = re.compile(r"([A-Za-z_]\w*:?)$")
_COMMENT_OR_STRING = re.compile(r"\"[^\"]*\"?|'[^']*'?")
_METHOD_END = re.compile(r"\n[ \t]*\]|\n\{|\n\S[^\n]*>>|(?<!!)!(?!!)")
_PSEUDO = {"self", "super", "thisContext", "true", "false", "nil"}

# A method pattern: `at: i put: v`, `+ other`, `size`.
_PATTERN_KEYWORD = re.compile(r"([A-Za-z_]\w*:)\s*[A-Za-z_]\w*")
_PATTERN_BINARY = re.compile(r"^([-+*/\\<>=~@%|&?,!]+)\s*[A-Za-z_]\w*")
_PATTERN_UNARY = re.compile(r"^([A-Za-z_]\w*)\s*$")


@dataclass(frozen=True)
class ClassFacts:
    """The class, side, selector and category of the code at a cursor."""

    class_name: str | None = None
    side: str = "instance"
    # Selector of the method the cursor is in, when its pattern is written already.
    selector: str | None = None
    category: str | None = None
    # Offset where the method (its pattern) starts in the text.
    method_start: int = 0


@dataclass(frozen=True)
class Sends:
    """The word typed at the cursor and the selectors sent near it (retrieval's queries)."""

    # The word being typed at the cursor (`rightsF`, `at:`), or "".
    typed: str = ""
    # Keyword parts and unary selectors near the cursor, each with its position relative to
    # the cursor (negative before it), in text order; see retrieval's `sent_selectors`.
    keywords: tuple[tuple[str, int], ...] = ()
    unary: tuple[tuple[str, int], ...] = ()
    # The method's pattern and the code just before the cursor: the similarity query.
    window: str = ""


@dataclass(frozen=True)
class CursorAnalysis:
    """What the text at a cursor is in (see the module's docstring)."""

    source_format: str
    # The method around the cursor as far as the text shows it (None outside a method).
    method: MethodSpan | None
    # Scanner state at the cursor, relative to the method's body.
    scan: ScanState = field(default_factory=ScanState)
    mode: Mode = "line"
    facts: ClassFacts = field(default_factory=ClassFacts)
    sends: Sends = field(default_factory=Sends)
    # A new line the suggestion starts with (`_next_line_lead`); the analysis is then of the
    # text with it typed after the cursor.
    lead: str = ""


def analyse_cursor(
    text: str, offset: int, source_format: str, path: str | None = None
) -> CursorAnalysis:
    """The one cursor analysis over the live `text` of `path` in `source_format`. At the end
    of a finished line it is the analysis of the text with a new line typed (`lead`)."""
    offset = max(0, min(offset, len(text)))
    analysis = _analyse(text, offset, source_format, path)
    lead = _next_line_lead(text, offset, analysis)
    if not lead:
        return analysis
    typed = text[:offset] + lead + text[offset:]
    return replace(_analyse(typed, offset + len(lead), source_format, path), lead=lead)


def _analyse(text: str, offset: int, source_format: str, path: str | None) -> CursorAnalysis:
    found = find_method(text, offset, source_format)
    method, state = found if found else (None, ScanState())
    line_start = text.rfind("\n", 0, offset) + 1
    line_end = text.find("\n", offset)
    line_end = len(text) if line_end < 0 else line_end
    facts = class_facts(text, offset, path)
    if (
        source_format == "bracket"
        and method is not None
        and method.selector
        and method.start > facts.method_start
    ):
        # A GNU method in a class body (`bar [`) after the last `Foo >> bar [` header: the
        # method found is the nearer one, in the class whose body holds it.
        section = _last(_SECTION_CLASS, text[max(0, method.start - LOOK_BACK) : method.start])
        side = "class" if section is not None and section.group("side") else "instance"
        facts = ClassFacts(method.class_name or facts.class_name, side, method.selector, None,
                           method.start)
    return CursorAnalysis(
        source_format=source_format,
        method=method,
        scan=state,
        mode=choose_mode(text[line_start:offset], text[offset:line_end], method),
        facts=facts,
        sends=sends_near(text, offset, facts),
    )


def _next_line_lead(text: str, offset: int, cursor: CursorAnalysis) -> str:
    """A new line and the line's indentation when the cursor, in a method and outside any
    string or comment, ends a line whose last comment or statement is finished (`"Answer the
    size"`, `count := 0.`) and nothing follows on that line; else "". The code that comes
    next goes on a new line there, and a suggestion for the rest of this line (line mode,
    which stops at the line's end) could only be empty: accepting a one-line comment used to
    end in no next suggestion."""
    if cursor.method is None or cursor.scan.quote is not None:
        return ""
    line_start = text.rfind("\n", 0, offset) + 1
    line_end = text.find("\n", offset)
    if text[offset : len(text) if line_end < 0 else line_end].strip():
        return ""
    prefix = text[line_start:offset]
    code = prefix.rstrip()
    if not code or code[-1] not in '".' or code[-2:-1] == "$":  # `$.` is a character
        return ""
    if any(at >= line_start for _, at in cursor.scan.stack):
        return ""  # a bracket the line opened is still open: `[ self foo. ` goes on
    return "\n" + prefix[: len(prefix) - len(prefix.lstrip(" \t"))]


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


# --- the method around the cursor -------------------------------------------------------------


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
        selector=_span_selector(pattern),
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
    # A `]` that finds a `(` or `{` of the body still open (the cursor's line lacks its
    # `)`) closes the `[` below it; only a `]` with no `[` of the body open is the method's.
    scanner = Scanner(state, offset)
    for ch in text[offset:stop]:
        for event in scanner.feed(ch):
            if event.kind != "bad-close" or event.char != "]":
                continue
            stack = scanner.state.stack
            blocks = [i for i, (bracket, _) in enumerate(stack) if bracket == "["]
            if not blocks:
                return event.offset
            del stack[blocks[-1] :]
    # No closer the scan can see: the cursor is in a comment or string still open, which
    # takes the `]` in. The method's own `]` is then the last line that holds only `]`.
    rest = text[offset:stop].rstrip()
    closer = _CLOSING_LINE.search(rest)
    return offset + (closer.start("close") if closer else len(rest))


def _chunk_method(text: str, offset: int) -> tuple[MethodSpan, ScanState] | None:
    before_bangs = [m.end() for m in _BANG.finditer(text[:offset])]
    start = before_bangs[-1] if before_bangs else 0
    while start < offset and text[start] in " \t\r\n":
        start += 1
    after_bang = _BANG.search(text[offset:])
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
            selector=_span_selector(first_line),
            side="class" if header and header.group("side") else "instance",
        ),
        state,
    )


def _enclosing_bracket_class(text: str, before: int) -> str | None:
    found = None
    for match in _BRACKET_CLASS.finditer(text, 0, before):
        found = match.group("sub") or match.group("ext")
    return found


def _span_selector(pattern: str) -> str | None:
    """The selector of a (possibly half-typed) pattern: keyword parts need no argument yet."""
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


# --- the class facts --------------------------------------------------------------------------


def _last(pattern: re.Pattern[str], text: str) -> re.Match[str] | None:
    last = None
    for last in pattern.finditer(text):  # noqa: B007 - the loop only seeks the last match
        pass
    return last


def class_facts(text: str, offset: int, path: str | None = None) -> ClassFacts:
    """Class, side, selector, category and method start of the code at `offset`."""
    offset = max(0, min(offset, len(text)))
    base = max(0, offset - LOOK_BACK)
    before = text[base:offset]
    class_name: str | None = None
    side = "instance"
    selector: str | None = None
    category: str | None = None
    method_start = 0

    header = _last(_TONEL_HEADER, before)
    if header is not None:
        class_name = header.group("cls")
        side = "class" if header.group("side") else "instance"
        selector = pattern_selector(header.group("pat"))
        method_start = base + header.start("pat")
        found = _TONEL_CATEGORY.search(before[max(0, header.start() - 300): header.start()])
        if found:
            category = found.group("cat").strip() or None
    else:
        section = _last(_CHUNK_SECTION, before)
        va = _last(_VA_SECTION, before)
        if va is not None and (section is None or va.start() > section.start()):
            section = va
        if section is not None:
            class_name = section.group("cls")
            side = "class" if section.group("side") else "instance"
            category = section.groupdict().get("cat") or None
            # The method starts after the last chunk end (a lone `!`) before the cursor.
            bangs = [m.end() for m in _BANG.finditer(before)]
            method_start = base + (bangs[-1] if bangs else section.end())
            first_line = text[method_start:offset].lstrip().split("\n", 1)[0]
            if "\n" in text[method_start:offset].lstrip():
                selector = pattern_selector(first_line)
        else:
            bracket = _last(_SECTION_CLASS, before)
            if bracket is not None:
                class_name = bracket.group("sub") or bracket.group("ext")
                side = "class" if bracket.group("side") else "instance"
                method_start = base + bracket.end()
    if class_name is None and path and (tree := _FILETREE.search(path)):
        class_name = tree.group("cls")
        side = tree.group("side")
        lines = text.split("\n", 2)
        category = lines[0].strip() or None if len(lines) > 1 else None
        method_start = len(lines[0]) + 1 if len(lines) > 1 else 0
        selector = pattern_selector(lines[1] if len(lines) > 1 else "")
    if class_name and "." in class_name:
        class_name = class_name.rsplit(".", 1)[-1]  # VisualWorks namespaces
    if class_name and ":" in class_name:
        class_name = class_name.rsplit(":", 1)[-1]
    return ClassFacts(class_name, side, selector, category, method_start)


# --- the sends near the cursor ----------------------------------------------------------------


def _blank_comments(text: str) -> str:
    """Comments and strings become spaces (same length), so their words are not sends."""
    return _COMMENT_OR_STRING.sub(lambda m: " " * len(m.group(0)), text)


def sends_near(text: str, offset: int, facts: ClassFacts) -> Sends:
    """The word typed at `offset`, the sends in the method around it (from its body's start
    to LOOK_AHEAD after the cursor, not into the next method) and the similarity query."""
    base = max(0, offset - LOOK_BACK)
    # Only the end of the text can hold the word at the cursor (a `$` search over all of it
    # would try every position).
    found = _TYPED.search(text[base:offset][-120:])
    typed = found.group(1) if found else ""
    start = max(facts.method_start, base)
    # Skip the method pattern itself: its keywords are the method's own, not sends.
    body_start = text.find("\n", start, offset)
    body_start = start if body_start < 0 or facts.selector is None else body_start
    end = min(len(text), offset + LOOK_AHEAD)
    boundary = _METHOD_END.search(text, offset, end)
    end = boundary.start() if boundary else end
    region = _blank_comments(text[body_start:end])
    cursor_in_region = offset - body_start
    typed_start = cursor_in_region - len(typed)
    keywords = tuple(
        (match.group(1) + ":", match.start() - cursor_in_region)
        for match in _KEYWORD.finditer(region)
        if match.start() != typed_start
    )
    unary = tuple(
        (match.group(1), match.start() - cursor_in_region)
        for match in _UNARY.finditer(region)
        if match.group(1) not in _PSEUDO and match.start() != typed_start
    )
    # The similarity query for a method the index does not know yet: its pattern and the
    # code just before the cursor. Short on purpose: one embedding costs about 0.3 ms per
    # token on a core, and it is paid while a completion waits.
    head = text[start:body_start].strip() if body_start > start else ""
    tail = text[max(body_start, offset - QUERY_TAIL) : offset].strip()
    return Sends(typed, keywords, unary, f"{head}\n{tail}".strip())
