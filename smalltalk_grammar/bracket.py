"""GNU Smalltalk bracket syntax.

    Object subclass: Foo [ | a b | <comment: '...'> <category: '...'> X := 0.
        sel [ ... ]   Foo class >> sel [ ... ] ]
    Foo class [ | x | ]   Foo extend [ ... ]   Foo class extend [ ... ]
    Foo >> sel [ ... ]    Namespace current: Bar [ ... ]   Eval [ ... ]

Read with the literal-aware scanner in `lexer`: each item of a body is a header up to `[` (or a
statement up to `.`), a `| vars |` declaration or a `<pragma>`. Method bodies are parsed with
tree-sitter as standalone methods: the source from the pattern to the closing `]`, with the
opening `[` blanked, so offsets map back by adding the pattern's offset.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from smalltalk_grammar import lexer
from smalltalk_grammar.build import FactsCache, make_method, short_name
from smalltalk_grammar.model import ClassDef, Diagnostic, MethodDef, Side
from smalltalk_grammar.text import LineIndex

_HEADER_LIMIT = 2000
_PRAGMA = re.compile(r"<\s*[A-Za-z_]\w*(?::|\s*>)")


@dataclass
class Context:
    cls: ClassDef
    side: Side


class BracketReader:
    def __init__(self, text: str, index: LineIndex, cache: FactsCache) -> None:
        self.text = text
        self.index = index
        self.cache = cache
        self.classes: dict[str, ClassDef] = {}
        self.methods: list[MethodDef] = []
        self.doits: list[MethodDef] = []
        self.diagnostics: list[Diagnostic] = []
        self.problems: list[lexer.Problem] = []

    def read(self) -> None:
        self._items(0, len(self.text), None, None)
        for problem in self.problems:
            self._error(problem.offset, problem.end, problem.message)

    def _error(self, start: int, end: int, message: str) -> None:
        self.diagnostics.append(Diagnostic(range=self.index.range(start, end), message=message))

    def _items(self, pos: int, end: int, ctx: Context | None, namespace: str | None) -> None:
        text = self.text
        while True:
            pos = lexer.skip_space(text, pos, end, self.problems)
            if pos >= end:
                return
            c = text[pos]
            if c == "|" and ctx is not None:
                pos = self._variables(pos, end, ctx)
            elif c == "<" and ctx is not None and _PRAGMA.match(text, pos):
                pos = self._pragma(pos, end, ctx)
            else:
                stop = lexer.scan(text, pos, end, "[.", self.problems)
                # Headers and statements worth reading are short; never tokenize a huge one.
                toks = lexer.tokens(text, pos, min(stop, pos + _HEADER_LIMIT))
                if stop < end and text[stop] == "[":
                    if any(t.kind == "assign" for t in toks):
                        stop = lexer.scan(text, pos, end, ".", self.problems)
                        self._statement(toks, ctx)
                    else:
                        stop = self._block(pos, stop, end, toks, ctx, namespace)
                elif stop < end and text[stop] == "]":
                    self._error(stop, stop + 1, "unmatched ']'")
                else:
                    self._statement(toks, ctx)
                pos = stop + 1

    def _variables(self, pos: int, end: int, ctx: Context) -> int:
        close = self.text.find("|", pos + 1, end)
        if close < 0:
            self._error(pos, pos + 1, "unclosed variable declaration '|'")
            return end
        names = [t.text for t in lexer.tokens(self.text, pos + 1, close) if t.kind == "ident"]
        target = (
            ctx.cls.instance_variables
            if ctx.side == "instance"
            else ctx.cls.class_instance_variables
        )
        target.extend(n for n in names if n not in target)
        return close + 1

    def _pragma(self, pos: int, end: int, ctx: Context) -> int:
        close = lexer.scan(self.text, pos + 1, end, ">", self.problems)
        msg = lexer.message(lexer.tokens(self.text, pos + 1, close))
        if msg is not None and ctx.side == "instance":
            if msg.keywords == ["comment:"]:
                comment = msg.arg_value("comment:")
                ctx.cls.comment = comment.strip() if comment is not None else None
            elif msg.keywords == ["category:"]:
                ctx.cls.category = msg.arg_value("category:")
        return close + 1

    def _statement(self, toks: list[lexer.Token], ctx: Context | None) -> None:
        # `Name := value.` in a class body declares a class variable.
        if (
            ctx is not None
            and len(toks) >= 2
            and toks[0].kind == "ident"
            and toks[1].kind == "assign"
        ):
            if toks[0].text not in ctx.cls.class_variables:
                ctx.cls.class_variables.append(toks[0].text)

    def _block(
        self,
        pos: int,
        open_pos: int,
        end: int,
        toks: list[lexer.Token],
        ctx: Context | None,
        namespace: str | None,
    ) -> int:
        """Read `header [ ... ]`; answer the offset of the closing `]`."""
        close = lexer.match_bracket(self.text, open_pos, end, self.problems)
        if close is None:
            self._error(open_pos, open_pos + 1, "'[' is never closed")
            close = end
        texts = [t.text for t in toks]
        arrow = texts.index(">>") if ">>" in texts else -1
        if arrow > 0:
            owner = texts[:arrow]
            side: Side = "class" if owner[-1] == "class" and len(owner) == 2 else "instance"
            cls = self._class(owner[0], toks[0], pos, close, None, kind="extension")
            self._method(toks[arrow + 1 :], open_pos, close, cls.name, side, pos)
        elif texts == ["Eval"]:
            self._method(toks, open_pos, close, "UndefinedObject", "instance", pos, doit=True)
        elif (
            len(toks) >= 3
            and texts[1] in ("subclass:", "current:")
            and toks[2].kind
            in (
                "ident",
                "symbol",
            )
        ):
            name = lexer.literal_value(toks[2]) or ""
            if texts[1] == "current:":
                self._items(open_pos + 1, close, None, name)
            else:
                cls = self._class(name, toks[2], pos, close, namespace, kind="class")
                cls.superclass = None if texts[0] == "nil" else short_name(texts[0])[0]
                self._items(open_pos + 1, close, Context(cls, "instance"), namespace)
        elif (
            len(toks) >= 2
            and toks[0].kind == "ident"
            and texts[1:]
            in (
                ["class"],
                ["extend"],
                ["class", "extend"],
            )
        ):
            side = "class" if texts[1] == "class" else "instance"
            cls = self._class(texts[0], toks[0], pos, close, namespace, kind="extension")
            self._items(open_pos + 1, close, Context(cls, side), namespace)
        elif ctx is not None and _is_pattern(toks):
            self._method(toks, open_pos, close, ctx.cls.name, ctx.side, pos)
        else:
            self._error(pos, open_pos, f"unrecognised definition '{' '.join(texts)[:40]}'")
        return close

    def _class(
        self,
        name: str,
        tok: lexer.Token,
        start: int,
        close: int,
        namespace: str | None,
        kind: str,
    ) -> ClassDef:
        short, ns = short_name(name)
        found = self.classes.get(short)
        name_start = tok.start + (1 if tok.text.startswith("#") else 0)
        if found is None or (kind == "class" and found.kind == "extension"):
            defined = ClassDef(
                name=short,
                kind="class" if kind == "class" else "extension",
                range=self.index.range(start, close + 1),
                name_range=self.index.range(name_start, tok.end),
            )
            defined.namespace = ns or namespace
            if found is not None:
                defined.class_instance_variables = found.class_instance_variables
            self.classes[short] = found = defined
        return found

    def _method(
        self,
        pattern: list[lexer.Token],
        open_pos: int,
        close: int,
        class_name: str,
        side: Side,
        start: int,
        doit: bool = False,
    ) -> None:
        text = self.text
        if not pattern:
            self._error(start, open_pos, "method without a selector")
            return
        begin = pattern[0].start
        parse_text = text[begin:open_pos] + " " + text[open_pos + 1 : close]
        found = self.cache.get(parse_text)
        source = text[begin:open_pos].rstrip() + text[open_pos + 1 : close].rstrip()
        method = make_method(
            self.index,
            class_name=class_name,
            side=side,
            category=None,
            source=source,
            start=start,
            end=min(close + 1, len(text)),
            found=found,
            to_abs=lambda offset: begin + offset,
            diagnostics=self.diagnostics,
        )
        if doit:
            method.selector = "DoIt"
            self.doits.append(method)
        else:
            self.methods.append(method)


def _is_pattern(toks: list[lexer.Token]) -> bool:
    kinds = [t.kind for t in toks]
    if kinds == ["ident"] or kinds == ["binop", "ident"]:
        return True
    return (
        len(kinds) >= 2
        and len(kinds) % 2 == 0
        and all(k == "keyword" for k in kinds[::2])
        and all(k == "ident" for k in kinds[1::2])
    )


def parse_brackets(
    text: str, index: LineIndex, cache: FactsCache
) -> tuple[list[ClassDef], list[MethodDef], list[MethodDef], list[Diagnostic]]:
    reader = BracketReader(text, index, cache)
    reader.read()
    return list(reader.classes.values()), reader.methods, reader.doits, reader.diagnostics
