"""Chunk ("bang") files: Squeak, Pharo and Cuis fileOuts, VisualWorks and VA Smalltalk.

A chunk ends at a single `!`; `!!` stands for one `!`. The file is split faithfully (as a
Squeak reader does), then read chunk by chunk: a `methodsFor:` / `publicMethods` chunk opens a
method section whose chunks are methods until an empty chunk (`! !`); other chunks are
definitions (`subclass:...`, `defineClass:...`, `Trait named:...`, `commentStamp:prior:`,
Cuis `classDefinition:`) or do-its, which are skipped.

A hand-written `!` inside a string or comment (not doubled) cuts a method in two; when a
method chunk ends inside a literal and joining it with the next chunk closes that literal, the
two are joined and a warning says where the `!` should be doubled.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from dataclasses import dataclass, field

from smalltalk_grammar import lexer
from smalltalk_grammar.build import FactsCache, make_method, short_name
from smalltalk_grammar.model import ClassDef, Diagnostic, MethodDef, Side
from smalltalk_grammar.text import LineIndex


@dataclass
class Chunk:
    start: int  # offset of the chunk's first character in the file
    end: int  # offset of its terminating `!` (len(text) when unterminated)
    value: str  # the text with `!!` un-doubled
    escapes: list[int] = field(default_factory=list)  # offsets in `value` of un-doubled `!`
    terminated: bool = True

    def orig(self, offset: int) -> int:
        """Offset in `value` -> offset in the file."""
        return self.start + offset + bisect_left(self.escapes, offset)


def split_chunks(text: str) -> list[Chunk]:
    chunks = []
    start = 0
    pos = 0
    pieces: list[str] = []
    escapes: list[int] = []
    length = 0
    n = len(text)
    while True:
        bang = text.find("!", pos)
        if bang < 0:
            pieces.append(text[pos:])
            value = "".join(pieces)
            if value.strip():
                chunks.append(Chunk(start, n, value, escapes, terminated=False))
            return chunks
        if bang + 1 < n and text[bang + 1] == "!":
            piece = text[pos : bang + 1]
            pieces.append(piece)
            length += len(piece)
            escapes.append(length - 1)
            pos = bang + 2
            continue
        pieces.append(text[pos:bang])
        chunks.append(Chunk(start, bang, "".join(pieces), escapes))
        start = pos = bang + 1
        pieces, escapes, length = [], [], 0


_LITERALS = re.compile(r"""'[^']*(?:''[^']*)*'|"[^"]*"|\$(?s:.)|['"$]""")


def open_literal(value: str) -> bool:
    """Whether `value` ends inside a string, a comment or a `$` character literal."""
    return any(len(m.group()) == 1 for m in _LITERALS.finditer(value))


def join(first: Chunk, second: Chunk) -> Chunk:
    """Two chunks as one, the `!` between them read as a character."""
    shift = len(first.value) + 1
    return Chunk(
        first.start,
        second.end,
        first.value + "!" + second.value,
        first.escapes + [e + shift for e in second.escapes],
        second.terminated,
    )


@dataclass
class Section:
    class_name: str
    side: Side
    category: str | None


# Chunks that may define something name one of these; other chunks are do-its, skipped
# without tokenizing (a huge do-it must not cost a token list).
_DEFINITION_WORDS = re.compile(
    r"ubclass:|methodsFor|named:|defineClass:|classDefinition:|instanceVariableNames:"
    r"|defineSharedVariable:|comment:|commentStamp:|publicMethods|privateMethods|\bmethods\b"
)
_DEFINITION_LIMIT = 100_000
_SECTION_UNARY = {"publicMethods", "privateMethods", "methods", "methodsFor"}


class ChunkReader:
    def __init__(self, text: str, index: LineIndex, cache: FactsCache) -> None:
        self.text = text
        self.index = index
        self.cache = cache
        self.classes: dict[str, ClassDef] = {}
        self.methods: list[MethodDef] = []
        self.diagnostics: list[Diagnostic] = []
        # Classes only declared so far (Cuis `classDefinition:`), awaiting their definition.
        self.declared: set[str] = set()

    def read(self) -> None:
        chunks = split_chunks(self.text)
        section: Section | None = None
        i = 0
        while i < len(chunks):
            chunk = chunks[i]
            i += 1
            if not chunk.value.strip():
                section = None
                continue
            if section is not None:
                while open_literal(chunk.value) and i < len(chunks) and chunk.terminated:
                    joined = join(chunk, chunks[i])
                    if open_literal(joined.value):
                        break
                    self._warn(chunk.end, "'!' inside a literal must be doubled ('!!')")
                    chunk = joined
                    i += 1
                self._method(chunk, section)
                continue
            if not _DEFINITION_WORDS.search(chunk.value, 0, _DEFINITION_LIMIT):
                continue  # a do-it (`Foo initialize`): nothing to read
            msg = lexer.message(
                lexer.tokens(chunk.value, 0, min(len(chunk.value), _DEFINITION_LIMIT))
            )
            if msg is None:
                continue
            opened = self._section(msg)
            if opened is not None:
                section = opened
                continue
            comment_of = self._definition(chunk, msg)
            if comment_of is not None and i < len(chunks):
                self._set_comment(comment_of, chunks[i].value.strip())
                i += 1

    # --- methods --------------------------------------------------------------------------

    def _section(self, msg: lexer.Message) -> Section | None:
        selector = msg.selector
        if not (selector.startswith("methodsFor") or selector in _SECTION_UNARY):
            return None
        names = [t.text for t in msg.receiver]
        if not names or len(names) > 2 or (len(names) == 2 and names[1] != "class"):
            return None
        category = msg.arg_value("methodsFor:") if msg.keywords else None
        return Section(
            short_name(names[0])[0], "class" if len(names) == 2 else "instance", category
        )

    def _method(self, chunk: Chunk, section: Section) -> None:
        value = chunk.value
        lead = len(value) - len(value.lstrip())
        source = value.strip()
        found = self.cache.get(source)
        start = chunk.orig(lead)
        end = chunk.end + 1 if chunk.terminated else chunk.orig(lead + len(source))
        if not chunk.terminated:
            self._warn(start, "method chunk has no closing '!'", end)
        self.methods.append(
            make_method(
                self.index,
                class_name=section.class_name,
                side=section.side,
                category=section.category,
                source=source,
                start=start,
                end=end,
                found=found,
                to_abs=lambda offset: chunk.orig(lead + offset),
                diagnostics=self.diagnostics,
            )
        )

    def _warn(self, start: int, message: str, end: int | None = None) -> None:
        self.diagnostics.append(
            Diagnostic(
                range=self.index.range(start, start + 1 if end is None else end),
                message=message,
                severity="warning",
            )
        )

    # --- definitions ----------------------------------------------------------------------

    def _class(self, name: str, chunk: Chunk, tok: lexer.Token | None) -> ClassDef:
        short, namespace = short_name(name)
        found = self.classes.get(short)
        if found is None:
            start = chunk.orig(len(chunk.value) - len(chunk.value.lstrip()))
            end = chunk.end + 1 if chunk.terminated else chunk.end
            if tok is not None:
                name_start = chunk.orig(tok.start + (1 if tok.text.startswith("#") else 0))
                name_range = self.index.range(name_start, chunk.orig(tok.end))
            else:
                name_range = self.index.range(start, start)
            found = ClassDef(
                name=short,
                range=self.index.range(start, end),
                name_range=name_range,
                kind="extension",
            )
            found.namespace = namespace
            self.classes[short] = found
        return found

    def _definition(self, chunk: Chunk, msg: lexer.Message) -> str | None:
        """Read a definition chunk; answer the class name when the next chunk is its comment."""
        receiver = [t.text for t in msg.receiver]
        keywords = msg.keywords
        first = keywords[0] if keywords else ""
        if first.endswith("ubclass:") and len(receiver) == 1:
            self._subclass(chunk, msg, receiver[0], first)
        elif first == "named:" and receiver == ["Trait"]:
            cls = self._defined(chunk, msg, "named:")
            if cls is not None:
                cls.kind = "trait"
                cls.superclass = None
                cls.traits = _traits(chunk.value, msg)
                cls.category = msg.arg_value("category:") or msg.arg_value("package:")
        elif first == "defineClass:":
            cls = self._defined(chunk, msg, "defineClass:")
            if cls is not None:
                cls.kind = "class"
                namespace = receiver[0] if receiver else None
                cls.namespace = short_name(namespace + ".X")[1] if namespace else None
                superclass = msg.arg_value("superclass:")
                cls.superclass = short_name(superclass)[0] if superclass else None
                cls.instance_variables = _names(msg.arg_value("instanceVariableNames:"))
                cls.class_instance_variables = _names(msg.arg_value("classInstanceVariableNames:"))
                cls.category = msg.arg_value("category:")
        elif first == "classDefinition:" and not receiver:
            name = msg.arg_value("classDefinition:")
            if name and " " not in name:
                cls = self._defined(chunk, msg, "classDefinition:")
                if cls is not None and cls.category is None:
                    cls.kind = "class"
                    cls.category = msg.arg_value("category:")
        elif len(receiver) == 2 and receiver[1] == "class" and "instanceVariableNames:" in keywords:
            cls = self._class(receiver[0], chunk, None)
            cls.class_instance_variables = _names(msg.arg_value("instanceVariableNames:"))
        elif len(receiver) == 1 and first == "defineSharedVariable:":
            cls = self._class(receiver[0], chunk, None)
            name = msg.arg_value("defineSharedVariable:")
            if name and name not in cls.class_variables:
                cls.class_variables.append(name)
        elif len(receiver) == 1 and keywords == ["comment:"]:
            self._set_comment(receiver[0], msg.arg_value("comment:") or "")
        elif len(receiver) == 1 and first == "commentStamp:":
            return receiver[0]
        return None

    def _defined(self, chunk: Chunk, msg: lexer.Message, keyword: str) -> ClassDef | None:
        arg = msg.arg(keyword)
        name = msg.arg_value(keyword)
        if not arg or not name:
            return None
        cls = self._class(name, chunk, arg[0])
        if cls.kind == "extension" or cls.name in self.declared:
            # The first real definition owns the range: a Cuis `classDefinition:` forward
            # declaration gives way to the full definition that follows it.
            start = chunk.orig(len(chunk.value) - len(chunk.value.lstrip()))
            cls.range = self.index.range(start, chunk.end + 1 if chunk.terminated else chunk.end)
            tok = arg[0]
            name_start = chunk.orig(tok.start + (1 if tok.text.startswith("#") else 0))
            cls.name_range = self.index.range(name_start, chunk.orig(tok.end))
            self.declared.discard(cls.name)
        if keyword == "classDefinition:":
            self.declared.add(cls.name)
        return cls

    def _subclass(self, chunk: Chunk, msg: lexer.Message, superclass: str, first: str) -> None:
        cls = self._defined(chunk, msg, first)
        if cls is None:
            return
        cls.kind = "class"
        cls.superclass = None if superclass == "nil" else short_name(superclass)[0]
        cls.instance_variables = _names(msg.arg_value("instanceVariableNames:"))
        slots = msg.arg("slots:")
        if slots:
            cls.instance_variables += [
                v for t in slots if t.kind == "symbol" and (v := lexer.literal_value(t))
            ]
        cls.class_variables = _names(msg.arg_value("classVariableNames:")) + [
            v for v in cls.class_variables if v not in _names(msg.arg_value("classVariableNames:"))
        ]
        cls.traits = _traits(chunk.value, msg)
        package = msg.arg_value("package:")
        tag = msg.arg_value("tag:")
        cls.category = msg.arg_value("category:") or (
            f"{package}-{tag}" if package and tag else package
        )

    def _set_comment(self, name: str, comment: str) -> None:
        cls = self.classes.get(short_name(name)[0])
        if cls is not None:
            cls.comment = comment


def _names(value: str | None) -> list[str]:
    return value.split() if value else []


def _traits(text: str, msg: lexer.Message) -> str | None:
    composed = msg.arg_text(text, "uses:")
    if composed is None or composed.strip() in ("{}", "{ }"):
        return None
    return composed.strip()


def parse_chunks(
    text: str, index: LineIndex, cache: FactsCache
) -> tuple[list[ClassDef], list[MethodDef], list[Diagnostic]]:
    reader = ChunkReader(text, index, cache)
    reader.read()
    return list(reader.classes.values()), reader.methods, reader.diagnostics
