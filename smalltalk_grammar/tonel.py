"""Tonel files (Pharo): `"comment" Class { #name : #Foo, ... }` then `{ #category : #x }
Foo >> sel [ ... ]` methods; also `Trait { }`, `Extension { }` and `Package { }` files.

The whole file is parsed by tree-sitter (incrementally when an old tree is given). A clean tree
is read directly. Tree-sitter recovers from an error inside one method by swallowing the rest
of the file, so a tree with errors is read the way a Tonel reader does instead: method headers
(`Foo >> ` at the start of a line) delimit regions, each method is bracket-matched within its
region and parsed alone, and the damage stays inside the broken method.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tree_sitter import Node, Tree

from smalltalk_grammar import facts as ts
from smalltalk_grammar import lexer
from smalltalk_grammar.build import FactsCache, make_method
from smalltalk_grammar.construct import make_class_def
from smalltalk_grammar.facts import MethodFacts, comment_text, symbol_value
from smalltalk_grammar.model import ClassDef, ClassKind, Diagnostic, MethodDef
from smalltalk_grammar.text import ByteMap, LineIndex

_DEFINITION = re.compile(r"\A\s*(?:\"[^\"]*\"\s*)*(Class|Trait|Extension|Package)\s*\{")
# `^` with re.M misses lines that end in a lone CR, so line starts are spelled out.
_HEADER = re.compile(
    r"(?:\A|(?<=[\r\n]))(?P<cls>[A-Za-z_][\w.]*)(?P<side>[ \t]+class)?[ \t]*>>[ \t]*"
)
_CLOSER_LINE = re.compile(r"(?:\A|(?<=[\r\n]))\][ \t]*(?=[\r\n]|\Z)")
_CATEGORY = re.compile(r"#category\s*:\s*(#?'(?:[^']|'')*'|#?[\w:*-]+)")
# What may follow a method's closing `]`: another method, its metadata, or the end.
_NEXT_ITEM = re.compile(
    r"[ \t]*(?:\r\n|\r|\n)\s*(?:\{|[A-Za-z_][\w.]*(?:[ \t]+class)?[ \t]*>>|\Z)|\s*\Z"
)
_KINDS: dict[str, ClassKind] = {"Class": "class", "Trait": "trait", "Extension": "extension"}


# A plain Tonel method header (`Foo class >> at: i put: v`), read from its text instead of its
# nodes; anything else (comments, trailing dots) is read from the nodes.
_ID = r"[A-Za-z_][A-Za-z0-9_]*"
_SP = r"[ \t\r\n\f]"
_METHOD_HEADER = re.compile(
    rf"(?P<owner>{_ID})(?:{_SP}+(?P<side>class|classSide))?{_SP}*>>(?:{_SP}+|(?=[A-Za-z_]))"
    rf"(?:(?P<kw>{_ID}:{_SP}*{_ID}(?:{_SP}+{_ID}:{_SP}*{_ID})*)"
    rf"|(?P<bin>[-+\\/*~<>=@,%|&?!]+){_SP}*(?P<arg>{_ID})"
    rf"|(?P<un>{_ID}))"
)
_KEYWORD_ARG = re.compile(rf"({_ID}:){_SP}*({_ID})")
_PATTERN_PART = re.compile(rf"{_ID}:?|[-+\\/*~<>=@,%|&?!]+")


def _header_facts(text: str, start: int, end: int) -> MethodFacts | None:
    """The facts a header gives (what `facts._header` reads from its nodes), offsets relative
    to `start`; None when the header is not a plain one."""
    m = _METHOD_HEADER.fullmatch(text, start, end)
    if m is None:
        return None
    facts = MethodFacts()
    facts.owner = m.group("owner")
    facts.class_side = m.group("side") is not None
    facts.header_parts = 4 if facts.class_side else 3
    keywords = m.group("kw")
    if keywords is not None:
        pattern_start, pattern_end = m.span("kw")
        pairs = _KEYWORD_ARG.findall(keywords)
        facts.keywords = [keyword for keyword, _ in pairs]
        facts.arguments = [argument for _, argument in pairs]
        facts.selector = "".join(facts.keywords)
    elif m.group("bin") is not None:
        pattern_start, pattern_end = m.start("bin"), m.end("arg")
        facts.selector = m.group("bin")
        facts.arguments = [m.group("arg")]
    else:
        pattern_start, pattern_end = m.span("un")
        facts.selector = m.group("un")
    facts.header_tail = facts.pattern_span = (pattern_start - start, pattern_end - start)
    # The selector range stays on the pattern's first line: cut after the last part that
    # starts before the first line break.
    selector_end = pattern_end
    cut = text.find("\n", pattern_start, pattern_end)
    cr = text.find("\r", pattern_start, pattern_end)
    if cr >= 0 and (cut < 0 or cr < cut):
        cut = cr
    if cut >= 0:
        for part in _PATTERN_PART.finditer(text, pattern_start, cut):
            selector_end = part.end()
    facts.selector_span = (pattern_start - start, selector_end - start)
    return facts


# A class definition (`Class { #name : #Foo, ... }`) whose values are all symbols, strings,
# nil or arrays of symbols and strings, read from its text instead of its nodes; anything
# else (numbers, nested objects, dashed symbols, comments) is read from the nodes.
_Values = dict[str, tuple[int, int, str | list[str] | None]]
_WS = r"[ \t\r\n\f]*"
_END = r"(?=[ \t\r\n\f,}\]])"
_STON_ATOM = rf"#[A-Za-z0-9_:]+{_END}|#'(?:[^']|'')*'{_END}|'(?:[^']|'')*'{_END}"
_DEFINITION_OPEN = re.compile(rf"(Class|Trait|Extension){_WS}\{{{_WS}")
_DEFINITION_PAIR = re.compile(
    rf"#(?P<key>[A-Za-z0-9_]+)[ \t\r\n\f]+:{_WS}"
    rf"(?:(?P<atom>{_STON_ATOM})|(?P<nil>nil){_END}|\[(?P<array>[^\]\"]*)\]{_END})"
    rf"{_WS}(?P<comma>,{_WS})?"
)
_STON_ITEMS = re.compile(rf"{_WS}(?:(?:{_STON_ATOM}){_WS},{_WS})*(?:(?:{_STON_ATOM}){_WS})?")
_STON_ITEM = re.compile(_STON_ATOM)


def _simple_definition(text: str, start: int, end: int) -> tuple[str, _Values] | None:
    opened = _DEFINITION_OPEN.match(text, start, end)
    if opened is None:
        return None
    values: _Values = {}
    pos = opened.end()
    while text.startswith("#", pos):
        pair = _DEFINITION_PAIR.match(text, pos, end)
        if pair is None:
            return None
        key = pair.group("key")
        if pair.group("atom") is not None:
            values[key] = (*pair.span("atom"), symbol_value(pair.group("atom")))
        elif pair.group("nil") is not None:
            values[key] = (*pair.span("nil"), None)
        else:
            items_start, items_end = pair.span("array")
            if _STON_ITEMS.fullmatch(text, items_start, items_end) is None:
                return None
            values[key] = (
                items_start - 1,
                items_end + 1,
                [
                    symbol_value(m.group())
                    for m in _STON_ITEM.finditer(text, items_start, items_end)
                ],
            )
        pos = pair.end()
        if pair.group("comma") is None:
            break
    if pos != end - 1 or not text.startswith("}", pos):
        return None
    return opened.group(1), values


_categories: dict[bytes, str | None] = {}
_UNKNOWN = "\0"


def _category(metadata: bytes) -> str | None:
    """The category in a method's metadata (`{ #category : #accessing }`); the few distinct
    metadata texts of a project are remembered."""
    known = _categories.get(metadata, _UNKNOWN)  # one lookup: another thread may clear it
    if known is not _UNKNOWN:
        return known
    found = _CATEGORY.search(metadata.decode("utf-8", "replace"))
    category = symbol_value(found.group(1)) if found else None
    if len(_categories) >= 4096:
        _categories.clear()
    _categories[metadata] = category
    return category


def looks_like_tonel(text: str) -> bool:
    return _DEFINITION.match(text) is not None


@dataclass
class TonelResult:
    classes: list[ClassDef]
    methods: list[MethodDef]
    diagnostics: list[Diagnostic]


class TonelReader:
    def __init__(
        self, text: str, data: bytes, tree: Tree, index: LineIndex, cache: FactsCache
    ) -> None:
        self.text = text
        self.data = data
        self.tree = tree
        self.index = index
        self.cache = cache
        self.bmap = ByteMap(text)
        self.result = TonelResult([], [], [])

    def read(self) -> TonelResult:
        root = self.tree.root_node
        if not root.has_error:
            self._clean(root)
        else:
            self._recover(root)
        return self.result

    # --- clean trees ----------------------------------------------------------------------

    def _clean(self, root: Node) -> None:
        kinds = ts.KIND
        for top in root.children:
            comment: Node | None = None
            for child in top.children:
                kind = kinds[child.kind_id]
                if kind == ts.COMMENT:
                    comment = child
                    continue
                if kind == ts.METHOD_DEF:
                    self._method_node(child)
                elif kind == ts.CLASS_DEF:
                    self._class(child, comment)
                comment = None

    def _node_text(self, node: Node) -> str:
        return self.data[node.start_byte : node.end_byte].decode("utf-8", "replace")

    def _char(self, byte_offset: int) -> int:
        return self.bmap.to_char(byte_offset)

    def _class(self, node: Node, comment: Node | None) -> None:
        start, end = self._char(node.start_byte), self._char(node.end_byte)
        read = _simple_definition(self.text, start, end)
        if read is None:
            read = self._definition_nodes(node)
            if read is None:
                return
        kind_text, values = read
        name_entry = values.get("name")
        if name_entry is None or not isinstance(name_entry[2], str):
            self._error(node, "class definition without #name")
            return

        def text_value(key: str) -> str | None:
            value = values.get(key, (0, 0, None))[2]
            return value if isinstance(value, str) else None

        def list_value(key: str) -> list[str]:
            value = values.get(key, (0, 0, None))[2]
            if isinstance(value, list):
                return value
            return value.split() if isinstance(value, str) else []

        category = text_value("category")
        if category is None and text_value("package"):
            tag = text_value("tag")
            category = f"{text_value('package')}-{tag}" if tag else text_value("package")
        name_start, name_end = name_entry[0], name_entry[1]
        if self.text.startswith("#", name_start):
            name_start += 1
        self.result.classes.append(
            make_class_def(
                {
                    "name": name_entry[2],
                    "superclass": text_value("superclass"),
                    "kind": _KINDS.get(kind_text, "class"),
                    "category": category,
                    "comment": comment_text(self._node_text(comment)) if comment else None,
                    "instance_variables": list_value("instVars"),
                    "class_variables": list_value("classVars"),
                    "class_instance_variables": list_value("classInstVars"),
                    "traits": text_value("traits"),
                    "range": self.index.range(start, end),
                    "name_range": self.index.range(name_start, name_end),
                }
            )
        )

    def _definition_nodes(self, node: Node) -> tuple[str, _Values] | None:
        """The kind (`Class`...) and the header's values, read from the nodes."""
        kind_node = node.child(0)
        header = node.child(1)
        if kind_node is None or header is None:
            return None
        kinds = ts.KIND
        values: _Values = {}
        for pair in header.children:
            if kinds[pair.kind_id] != ts.HEADER_PAIR:
                continue
            parts = pair.children
            if len(parts) == 1 and kinds[parts[0].kind_id] == ts.STON_PAIR:
                parts = parts[0].children
            if len(parts) < 3:
                continue
            value = parts[2]
            values[symbol_value(self._node_text(parts[0]))] = (
                self._char(value.start_byte),
                self._char(value.end_byte),
                self._ston(value),
            )
        return self._node_text(kind_node), values

    def _ston(self, node: Node) -> str | list[str] | None:
        kind = ts.KIND[node.kind_id]
        if kind == ts.STON_VALUE and node.child_count:
            return self._ston(node.children[0])
        if kind == ts.SYMBOL or kind == ts.STRING:
            return symbol_value(self._node_text(node))
        if kind == ts.STON_ARRAY:
            items = [self._ston(c) for c in node.children if c.is_named]
            return [i for i in items if isinstance(i, str)]
        if kind == ts.IDENT:
            return self._node_text(node)
        return None

    def _method_node(self, node: Node) -> None:
        # Only the metadata and the header are looked up here; everything else (owner, side,
        # pattern, the body's brackets, sends...) comes from the facts walk, which a re-parse
        # finds in the cache by the method's text.
        metadata = header = None
        cursor = node.walk()
        more = cursor.goto_first_child()
        while more:
            child: Node = cursor.node  # type: ignore[assignment]
            kind = ts.KIND[child.kind_id]
            if kind == ts.HEADER:
                header = child
                break
            if kind == ts.METADATA:
                metadata = child
            more = cursor.goto_next_sibling()
        if header is None:
            self._error(node, "method without a header")
            return
        to_char = self.bmap.to_char
        start = to_char(header.start_byte)
        end = to_char(node.end_byte)
        text = self.text
        key = text[start:end]
        found = self.cache.lookup(key)
        if found is None or found.header_parts is None:
            found = ts.collect(
                node,
                self.data,
                self.bmap,
                start,
                text,
                _header_facts(text, start, to_char(header.end_byte)),
                clean=True,  # read only from trees without errors
            )
            self.cache.store(key, found)
        if found.header_parts is None or found.header_parts < 3 or found.header_tail is None:
            self._error(node, "method without a header")
            return
        category = None
        if metadata is not None:
            category = _category(self.data[metadata.start_byte : metadata.end_byte])
        body_start = start + found.body_open if found.body_open is not None else end
        body_end = start + found.body_close if found.body_close is not None else end
        pattern = text[start + found.header_tail[0] : start + found.header_tail[1]]
        self.result.methods.append(
            make_method(
                self.index,
                class_name=found.owner,
                side="class" if found.class_side else "instance",
                category=category,
                source=pattern + text[body_start:body_end].rstrip(),
                start=start,
                end=end,
                found=found,
                base=start,
                diagnostics=self.result.diagnostics,
            )
        )

    def _error(self, node: Node, message: str) -> None:
        self.result.diagnostics.append(
            Diagnostic(
                range=self.index.range(self._char(node.start_byte), self._char(node.end_byte)),
                message=message,
            )
        )

    # --- trees with errors ----------------------------------------------------------------

    def _recover(self, root: Node) -> None:
        text = self.text
        headers = list(_HEADER.finditer(text))
        self._recover_definition(headers[0].start() if headers else len(text))
        previous_end = 0
        problems: list[lexer.Problem] = []
        for i, header in enumerate(headers):
            if header.start() < previous_end:
                continue  # inside the previous method (a string or comment that looks like one)
            region_end = headers[i + 1].start() if i + 1 < len(headers) else len(text)
            pattern_start = header.end()
            open_pos = lexer.scan(text, pattern_start, region_end, "[", problems)
            if open_pos >= region_end or text[open_pos] != "[":
                self._error_at(header.start(), header.end(), "method header without '['")
                continue
            close = lexer.match_bracket(text, open_pos, region_end, [])
            if close is None:
                close = self._unclosed(open_pos, region_end)
            category = None
            metadata = list(_CATEGORY.finditer(text, previous_end, header.start()))
            if metadata:
                category = symbol_value(metadata[-1].group(1))
            previous_end = close + 1
            parse_text = text[pattern_start:open_pos] + " " + text[open_pos + 1 : close]
            found = self.cache.get(parse_text)
            self.result.methods.append(
                make_method(
                    self.index,
                    class_name=header.group("cls"),
                    side="class" if header.group("side") else "instance",
                    category=category,
                    source=text[pattern_start:open_pos].rstrip()
                    + text[open_pos + 1 : close].rstrip(),
                    start=header.start(),
                    end=min(close + 1, len(text)),
                    found=found,
                    to_abs=lambda offset, base=pattern_start: base + offset,  # type: ignore[misc]
                    diagnostics=self.result.diagnostics,
                )
            )
        for problem in problems:
            self._error_at(problem.offset, problem.end, problem.message)

    def _unclosed(self, open_pos: int, region_end: int) -> int:
        """The end of a method whose `[` is not closed within its region (up to the next
        method header)."""
        text = self.text
        whole = lexer.match_bracket(text, open_pos, len(text), [])
        if whole is not None and _NEXT_ITEM.match(text, whole + 1):
            # A string or comment of this method held a line that looks like a header.
            return whole
        self._error_at(open_pos, open_pos + 1, "method is not closed: missing ']'")
        last = None
        for m in _CLOSER_LINE.finditer(text, open_pos, region_end):
            last = m
        if last is not None:
            return last.start()
        return max(open_pos + 1, len(text[:region_end].rstrip()))

    def _recover_definition(self, end: int) -> None:
        """Read the comment and class definition (up to its closing brace) alone."""
        start = _DEFINITION.match(self.text)
        if start is not None:
            close = lexer.scan(self.text, start.end(), end, "}", [])
            end = min(close + 1, end)
        prefix = self.text[:end]
        data = prefix.encode("utf-8")
        tree = ts.parse_bytes(data)
        if tree.root_node.has_error:
            self._error_at(0, len(prefix.rstrip()), "syntax error in the class definition")
            return
        reader = TonelReader(prefix, data, tree, self.index, self.cache)
        reader.bmap = ByteMap(prefix)
        reader._clean(tree.root_node)
        self.result.classes.extend(reader.result.classes)

    def _error_at(self, start: int, end: int, message: str) -> None:
        self.result.diagnostics.append(
            Diagnostic(range=self.index.range(start, end), message=message)
        )


def parse_tonel(
    text: str, data: bytes, tree: Tree, index: LineIndex, cache: FactsCache
) -> TonelResult:
    return TonelReader(text, data, tree, index, cache).read()
