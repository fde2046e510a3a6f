"""Turning method facts into model objects: one place that maps offsets back to the file.

Chunk, bracket and recovered Tonel methods are parsed from a standalone method source; the
caller gives `to_abs`, which maps an offset in that source back to the file's text.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from smalltalk_grammar import facts as ts
from smalltalk_grammar.construct import make_method_def
from smalltalk_grammar.facts import MethodFacts
from smalltalk_grammar.model import Diagnostic, MethodDef, Side
from smalltalk_grammar.text import ByteMap, LineIndex

_PATTERN = re.compile(
    r"""\s*(?:
        (?P<kw>[A-Za-z_]\w*:\s*[A-Za-z_]\w*(?:[ \t]+[A-Za-z_]\w*:\s*[A-Za-z_]\w*)*)
      | (?P<bin>[-+*/\\~<>=@%|&?!,]+)\s*(?P<arg>[A-Za-z_]\w*)
      | (?P<un>[A-Za-z_]\w*)
    )""",
    re.VERBOSE,
)
_KEYWORD = re.compile(r"([A-Za-z_]\w*:)\s*([A-Za-z_]\w*)")


def guess_pattern(source: str, facts: MethodFacts) -> None:
    """Fill in the selector from the first line when tree-sitter could not read the pattern."""
    m = _PATTERN.match(source)
    if m is None:
        return
    if m.group("kw"):
        pairs = _KEYWORD.findall(m.group("kw"))
        facts.keywords = [kw for kw, _ in pairs]
        facts.arguments = [arg for _, arg in pairs]
        facts.selector = "".join(facts.keywords)
        start, end = m.start("kw"), m.end("kw")
    elif m.group("bin"):
        facts.selector = m.group("bin")
        facts.arguments = [m.group("arg")]
        start, end = m.start("bin"), m.end("arg")
    else:
        facts.selector = m.group("un")
        start, end = m.start("un"), m.end("un")
    facts.pattern_span = (start, end)
    line_end = min(
        (i for i in (source.find("\n", start, end), source.find("\r", start, end)) if i >= 0),
        default=end,
    )
    facts.selector_span = (start, line_end)


def method_facts(source: str) -> MethodFacts:
    """Facts of a standalone method source (chunk or bracket style pattern and body)."""
    data = source.encode("utf-8")
    tree = ts.parse_bytes(data)
    found = ts.collect(tree.root_node, data, ByteMap(source), 0, source)
    if found.selector is None:
        guess_pattern(source, found)
    return found


@dataclass
class FactsCache:
    """Facts of method sources seen before, so re-parsing an edited file only walks the
    methods whose text changed. Bounded: cleared when it grows past `limit` entries."""

    limit: int = 20000

    def __post_init__(self) -> None:
        self._entries: dict[str, MethodFacts] = {}
        # Methods walked (not found in the cache): what an incremental re-parse did anew.
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, source: str) -> MethodFacts:
        found = self._entries.get(source)
        if found is None:
            found = method_facts(source)
            self.store(source, found)
        return found

    def lookup(self, key: str) -> MethodFacts | None:
        return self._entries.get(key)

    def store(self, key: str, value: MethodFacts) -> None:
        self.misses += 1
        if len(self._entries) >= self.limit:
            self._entries.clear()
        self._entries[key] = value


def make_method(
    index: LineIndex,
    *,
    class_name: str,
    side: Side,
    category: str | None,
    source: str,
    start: int,
    end: int,
    found: MethodFacts,
    diagnostics: list[Diagnostic],
    to_abs: Callable[[int], int] | None = None,
    base: int = 0,
) -> MethodDef:
    """A MethodDef whose `range` is `start..end` of the file; facts offsets go through
    `to_abs`, or (without it) are shifted by `base`. Syntax errors of the method are appended
    to `diagnostics`."""
    span = found.selector_span
    if to_abs is None:
        if span is not None:
            sel_start, sel_end = base + span[0], base + span[1]
        else:
            sel_start = sel_end = start
        to_abs = base.__add__  # for the errors, if any
    elif span is not None:
        sel_start, sel_end = to_abs(span[0]), to_abs(span[1])
    else:
        sel_start = sel_end = start
    for err_start, err_end, message in found.errors:
        diagnostics.append(
            Diagnostic(range=index.range(to_abs(err_start), to_abs(err_end)), message=message)
        )
    # The facts are cached and may serve other methods: the method gets its own lists.
    return make_method_def(
        {
            "class_name": class_name,
            "side": side,
            "selector": found.selector or "",
            "keywords": [*found.keywords],
            "category": category if category is not None else found.pragma_category,
            "comment": found.comment,
            "source": source,
            "range": index.range(start, end),
            "selector_range": index.range(sel_start, sel_end),
            "start_offset": start,
            "end_offset": end,
            "sends": [*found.sends],
            "symbols": [*found.symbols],
            "class_references": [*found.class_references],
            "variable_references": [*found.variable_references],
            "arguments": [*found.arguments],
            "temporaries": [*found.temporaries],
        }
    )


def short_name(name: str) -> tuple[str, str | None]:
    """`Smalltalk.Core.Foo` -> (`Foo`, `Core`); `Foo` -> (`Foo`, None)."""
    parts = name.split(".")
    if parts[0] == "Smalltalk" and len(parts) > 1:
        parts = parts[1:]
    if len(parts) == 1:
        return parts[0], None
    return parts[-1], ".".join(parts[:-1])
