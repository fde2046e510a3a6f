"""Where each action is offered: what lies under the cursor or the selection of a code-action
request (a method, a class definition, a comment, a selected piece of text), and which of
the five actions make sense there."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from smalltalk_grammar import parse
from smalltalk_grammar.model import ClassDef, MethodDef, SourceFile
from smalltalk_grammar.text import position_at

ActionKind = Literal["explain", "design", "implement", "tests", "comment"]
ACTION_KINDS: tuple[ActionKind, ...] = ("explain", "design", "implement", "tests", "comment")
KIND_PREFIX = "refactor.smalltalk."
TITLES: dict[ActionKind, str] = {
    "explain": "Explain",
    "design": "Design",
    "implement": "Implement design",
    "tests": "Write SUnit tests",
    "comment": "Add method comment",
}
# Formats in which code can be added as an edit (a bare method file has nowhere to put it).
CODE_FORMATS = ("tonel", "chunk", "bracket")

# Comments, and the literals that may contain a double quote without starting a comment.
_LEXEME = re.compile(r"""("[^"]*"?)|('(?:[^']|'')*'?)|(\$.)""", re.S)
# Marks that prose seldom has and Smalltalk code nearly always has.
_CODE_MARK = re.compile(r":=|\^|\[|\]|#|'|\$|\||>>|\b(?:self|super|thisContext|nil|true|false)\b")
_BINARY = re.compile(r"[+*/\\<>=@%~&]")


@dataclass(frozen=True)
class Site:
    """What a code action works on."""

    path: str
    format: str
    text: str
    start: int
    end: int
    method: MethodDef | None = None
    cls: ClassDef | None = None
    # The class in whose context code is written (the method's, the class at the cursor, or the
    # file's only class).
    class_name: str | None = None
    # The selected text (stripped), or "".
    selection: str = ""
    # The comment under the cursor (without its quotes), or "".
    comment: str = ""

    @property
    def code_in_method(self) -> bool:
        """A selection inside (or over the header of) a method that holds code: it is read in
        the context of that method, whole or not."""
        if not self.selection or self.method is None:
            return False
        return holds_code(self.text[self.start : self.end])

    @property
    def subject(self) -> str:
        """A short name for titles and note files."""
        if self.selection:
            return f"selection in {self.class_name or _basename(self.path)}"
        if self.method is not None:
            return method_name(self.method)
        if self.cls is not None:
            return self.cls.name
        return _basename(self.path)


def method_name(method: MethodDef) -> str:
    side = " class" if method.side == "class" else ""
    owner = method.class_name or "(method)"
    return f"{owner}{side} >> {method.selector}"


def _basename(path: str) -> str:
    return path.replace("\\", "/").rsplit("/", 1)[-1]


def site_at(source: SourceFile, text: str, start: int, end: int) -> Site:
    start, end = sorted((max(0, min(start, len(text))), max(0, min(end, len(text)))))
    pos = position_at(text, start)
    method = next((m for m in source.methods if m.start_offset <= start <= m.end_offset), None)
    if method is None and end > start:
        # A selection from the line above a method (its Tonel category) into the method.
        method = next((m for m in source.methods if start <= m.start_offset < end), None)
    cls = None
    if method is None:
        cls = next((c for c in source.classes if c.range.contains(pos)), None)
        # In a bracket file the class range holds its methods too: only its header counts.
    class_name = method.class_name if method is not None and method.class_name else None
    if class_name is None and cls is not None:
        class_name = cls.name
    if class_name is None and len({c.name for c in source.classes}) == 1:
        class_name = source.classes[0].name
    selection = text[start:end].strip() if end > start else ""
    if re.fullmatch(r'"[^"]*"', selection):
        selection = selection[1:-1].strip()  # a selected comment is its words
    return Site(
        path=source.path or "",
        format=source.format,
        text=text,
        start=start,
        end=end,
        method=method,
        cls=cls,
        class_name=class_name,
        selection=selection,
        comment="" if selection else comment_at(text, start),
    )


def comment_at(text: str, offset: int) -> str:
    """The text of the `"..."` comment around `offset` (strings and `$"` are stepped over)."""
    for m in _LEXEME.finditer(text):
        if m.start() > offset:
            break
        if m.group(1) and m.start() < offset <= m.end():
            return m.group(1).strip('"').replace('""', '"').strip()
    return ""


def offered(site: Site) -> dict[ActionKind, str | None]:
    """The actions offered at a site, each with None or the reason it is disabled."""
    found: dict[ActionKind, str | None] = {}
    code_ok = site.format in CODE_FORMATS
    in_method = site.code_in_method
    prose = bool(site.selection) and not in_method and not looks_like_smalltalk(site.selection)
    if site.selection:
        found["explain"] = "the selection is not Smalltalk code" if prose else None
    elif site.method is not None or site.cls is not None:
        found["explain"] = None
    # A description of what is wanted: selected words, or the comment at the cursor; or part
    # of a method whose design is to be improved.
    if prose or site.comment or in_method:
        found["design"] = None
        if code_ok and site.class_name and not in_method:
            found["implement"] = None
    if code_ok and (not site.selection or in_method) and _testable(site):
        found["tests"] = None
    if site.method is not None and not site.selection and not site.method.comment:
        found["comment"] = None
    return found


def _testable(site: Site) -> bool:
    if site.method is not None:
        return bool(site.method.class_name) and not site.method.selector.startswith("test")
    return site.cls is not None and site.cls.superclass != "TestCase"


def holds_code(text: str) -> bool:
    """Anything but comments and white space (strings and `$"` are stepped over)."""
    rest = _LEXEME.sub(lambda m: " " if m.group(1) else "x", text)
    return bool(rest.strip())


def looks_like_smalltalk(text: str) -> bool:
    """Parses as a method or as statements, and is not a sentence of plain words (which parses
    as a chain of unary sends)."""
    stripped = text.strip()
    if not stripped:
        return False
    whole = parse(stripped)
    if whole.format != "method" and whole.methods and not _errors(whole):
        return True
    for candidate in (stripped, "DoIt\n" + stripped):
        found = parse(candidate)
        if found.methods and not _errors(found):
            method = found.methods[0]
            if _CODE_MARK.search(stripped) or _BINARY.search(stripped):
                return True
            # Keyword sends, or a single unary send (`aStore isEmpty`), read as code.
            if method.keywords or any(":" in s for s in method.sends) or len(method.sends) <= 1:
                return True
    return False


def _errors(source: SourceFile) -> bool:
    return any(d.severity == "error" for d in source.diagnostics)
