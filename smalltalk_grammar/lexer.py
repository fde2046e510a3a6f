"""Literal-aware scanning of Smalltalk text: find brackets, statement ends and tokens while
stepping over strings `'..''..'`, comments `".."` and character literals (`$'`, `$"`, `$]`).

Used where tree-sitter cannot look (GNU bracket bodies, chunk definitions, recovery of broken
Tonel files). Unterminated strings and comments are reported, and scanning resumes at the end
of the line they started on, so one stray quote does not swallow the rest of a file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_INTERESTING = re.compile(r"""[\[\](){}'"$]""")
_OPEN = "[({"
_CLOSE = "])}"


@dataclass
class Problem:
    offset: int
    end: int
    message: str


def _line_end(text: str, pos: int, end: int) -> int:
    for i in range(pos, end):
        if text[i] in "\r\n":
            return i
    return end


def skip_string(text: str, pos: int, end: int, problems: list[Problem]) -> int:
    """`text[pos]` is `'`: the offset after the closing quote (`''` is an escaped quote)."""
    i = pos + 1
    while True:
        close = text.find("'", i, end)
        if close < 0:
            stop = _line_end(text, pos, end)
            problems.append(Problem(pos, stop, "unterminated string"))
            return stop
        if close + 1 < end and text[close + 1] == "'":
            i = close + 2
            continue
        return close + 1


def skip_comment(text: str, pos: int, end: int, problems: list[Problem]) -> int:
    close = text.find('"', pos + 1, end)
    if close < 0:
        stop = _line_end(text, pos, end)
        problems.append(Problem(pos, stop, "unterminated comment"))
        return stop
    return close + 1


def skip_space(text: str, pos: int, end: int, problems: list[Problem]) -> int:
    """Skip white space and comments."""
    while pos < end:
        c = text[pos]
        if c.isspace():
            pos += 1
        elif c == '"':
            pos = skip_comment(text, pos, end, problems)
        else:
            break
    return pos


def scan(text: str, pos: int, end: int, stops: str, problems: list[Problem]) -> int:
    """Offset of the first character of `stops` at nesting depth 0 from `pos`, or of an
    unmatched closing bracket, or `end` if there is none. Stops may include `.`, `!`, `>`, `|`
    (checked only outside literals and at depth 0)."""
    depth = 0
    simple = [c for c in stops if c not in _OPEN + _CLOSE]
    pattern = _INTERESTING
    if simple:
        pattern = re.compile("[" + re.escape("".join(simple)) + r"""\[\](){}'"$]""")
    while True:
        m = pattern.search(text, pos, end)
        if m is None:
            return end
        i = m.start()
        c = text[i]
        if c == "'":
            pos = skip_string(text, i, end, problems)
        elif c == '"':
            pos = skip_comment(text, i, end, problems)
        elif c == "$":
            pos = i + 2
        elif c in _OPEN:
            if depth == 0 and c in stops:
                return i
            depth += 1
            pos = i + 1
        elif c in _CLOSE:
            if depth == 0:
                return i
            depth -= 1
            pos = i + 1
        else:
            if depth == 0 and _is_stop(text, i, c):
                return i
            pos = i + 1


def _is_stop(text: str, i: int, c: str) -> bool:
    if c == ".":
        # A statement period, not the dot of `3.14` or `Smalltalk.Core`.
        nxt = text[i + 1 : i + 2]
        return not (nxt.isalnum() or nxt == "_")
    return True


def match_bracket(text: str, open_pos: int, end: int, problems: list[Problem]) -> int | None:
    """Offset of the `]` closing the `[` at `open_pos`, or None when it is not closed before
    `end`."""
    close = scan(text, open_pos + 1, end, "]", problems)
    if close >= end or text[close] != "]":
        return None
    return close


# --- tokens ---------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<comment>"[^"]*"?)
  | (?P<string>'(?:[^']|'')*'?)
  | (?P<binding>\#\{[^}]*\}?)
  | (?P<symbol>\#(?:'(?:[^']|'')*'?|[A-Za-z_][\w:]*(?:\.[A-Za-z_][\w:]*)*|[-+*/\\~<>=@%|&?!,]+))
  | (?P<litarray>\#[(\[])
  | (?P<char>\$(?s:.)?)
  | (?P<assign>:=|_(?=\s))
  | (?P<keyword>[A-Za-z_][\w]*:(?!=))
  | (?P<ident>[A-Za-z_][\w]*(?:\.[A-Za-z_][\w]*)*)
  | (?P<number>-?\d[\w.]*)
  | (?P<binop>[-+*/\\~<>=@%|&?!,]+)
  | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)


@dataclass
class Token:
    kind: str
    text: str
    start: int
    end: int


def tokens(text: str, pos: int = 0, end: int | None = None) -> list[Token]:
    """Tokens of `text[pos:end]` without white space and comments."""
    end = len(text) if end is None else end
    found = []
    for m in _TOKEN.finditer(text, pos, end):
        kind = m.lastgroup or "other"
        if kind in ("space", "comment"):
            continue
        found.append(Token(kind, m.group(), m.start(), m.end()))
    return found


def string_value(raw: str) -> str:
    inner = raw[1:-1] if len(raw) >= 2 and raw.endswith("'") else raw[1:]
    return inner.replace("''", "'")


def literal_value(tok: Token) -> str | None:
    """The value of a literal token: strings and symbols as text, bindings `#{A.B}` as `A.B`,
    identifiers as written; None for anything else."""
    if tok.kind == "string":
        return string_value(tok.text)
    if tok.kind == "symbol":
        raw = tok.text[1:]
        return string_value(raw) if raw.startswith("'") else raw
    if tok.kind == "binding":
        return tok.text[2:].rstrip("}").strip()
    if tok.kind in ("ident", "keyword", "number"):
        return tok.text
    return None


@dataclass
class Message:
    """`receiver keyword: arg keyword: arg` (or `receiver unary`), read from tokens."""

    receiver: list[Token]
    keywords: list[str]
    args: list[list[Token]]
    unary: str | None = None

    @property
    def selector(self) -> str:
        return "".join(self.keywords) if self.keywords else (self.unary or "")

    def arg(self, keyword: str) -> list[Token] | None:
        for kw, arg in zip(self.keywords, self.args, strict=True):
            if kw == keyword:
                return arg
        return None

    def arg_value(self, keyword: str) -> str | None:
        arg = self.arg(keyword)
        if not arg:
            return None
        if len(arg) == 1:
            return literal_value(arg[0])
        return None

    def arg_text(self, text: str, keyword: str) -> str | None:
        arg = self.arg(keyword)
        if not arg:
            return None
        return text[arg[0].start : arg[-1].end]


def message(toks: list[Token]) -> Message | None:
    """Split a token list into receiver and keyword parts at bracket depth 0."""
    depth = 0
    receiver: list[Token] = []
    keywords: list[str] = []
    args: list[list[Token]] = []
    for tok in toks:
        if tok.kind in ("other", "litarray"):
            if tok.text[-1] in _OPEN:
                depth += 1
            elif tok.text in _CLOSE:
                depth -= 1
        if depth == 0 and tok.kind == "keyword":
            keywords.append(tok.text)
            args.append([])
        elif keywords:
            args[-1].append(tok)
        else:
            receiver.append(tok)
    if keywords:
        return Message(receiver, keywords, args)
    if len(receiver) >= 2 and receiver[-1].kind == "ident":
        return Message(receiver[:-1], [], [], unary=receiver[-1].text)
    return None
