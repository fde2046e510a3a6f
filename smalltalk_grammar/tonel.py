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
from smalltalk_grammar.facts import comment_text, symbol_value
from smalltalk_grammar.model import ClassDef, ClassKind, Diagnostic, MethodDef, Side
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
        for top in root.children:
            comment: Node | None = None
            for child in top.children:
                kind = child.type
                if kind == "comment":
                    comment = child
                    continue
                if kind == "class_definition":
                    self._class(child, comment)
                elif kind == "method_definition":
                    self._method_node(child)
                comment = None

    def _node_text(self, node: Node) -> str:
        return self.data[node.start_byte : node.end_byte].decode("utf-8", "replace")

    def _char(self, byte_offset: int) -> int:
        return self.bmap.to_char(byte_offset)

    def _class(self, node: Node, comment: Node | None) -> None:
        kind_node = node.child(0)
        header = node.child(1)
        if kind_node is None or header is None:
            return
        values: dict[str, tuple[Node, str | list[str] | None]] = {}
        for pair in header.children:
            if pair.type != "class_header_pair":
                continue
            if pair.child_count == 1 and pair.children[0].type == "ston_pair":
                pair = pair.children[0]
            if pair.child_count < 3:
                continue
            key = symbol_value(self._node_text(pair.children[0]))
            value_node = pair.children[2]
            values[key] = (value_node, self._ston(value_node))
        name_entry = values.get("name")
        if name_entry is None or not isinstance(name_entry[1], str):
            self._error(node, "class definition without #name")
            return
        name_node = name_entry[0]

        def text_value(key: str) -> str | None:
            value = values.get(key, (None, None))[1]
            return value if isinstance(value, str) else None

        def list_value(key: str) -> list[str]:
            value = values.get(key, (None, None))[1]
            if isinstance(value, list):
                return value
            return value.split() if isinstance(value, str) else []

        category = text_value("category")
        if category is None and text_value("package"):
            tag = text_value("tag")
            category = f"{text_value('package')}-{tag}" if tag else text_value("package")
        name_start = self._char(name_node.start_byte)
        if self.text.startswith("#", name_start):
            name_start += 1
        kind = _KINDS.get(self._node_text(kind_node), "class")
        self.result.classes.append(
            ClassDef.model_validate(
                {
                    "name": name_entry[1],
                    "superclass": text_value("superclass"),
                    "kind": kind,
                    "category": category,
                    "comment": comment_text(self._node_text(comment)) if comment else None,
                    "instance_variables": list_value("instVars"),
                    "class_variables": list_value("classVars"),
                    "class_instance_variables": list_value("classInstVars"),
                    "traits": text_value("traits"),
                    "range": self.index.range_dict(
                        self._char(node.start_byte), self._char(node.end_byte)
                    ),
                    "name_range": self.index.range_dict(name_start, self._char(name_node.end_byte)),
                }
            )
        )

    def _ston(self, node: Node) -> str | list[str] | None:
        kind = node.type
        if kind == "ston_value" and node.child_count:
            return self._ston(node.children[0])
        if kind in ("symbol", "string"):
            return symbol_value(self._node_text(node))
        if kind == "ston_array":
            items = [self._ston(c) for c in node.children if c.is_named]
            return [i for i in items if isinstance(i, str)]
        if kind == "identifier":
            return self._node_text(node)
        return None

    def _method_node(self, node: Node) -> None:
        header = metadata = opener = closer = None
        for child in node.children:
            kind = child.type
            if kind == "method_header":
                header = child
            elif kind == "method_metadata":
                metadata = child
            elif kind == "[":
                opener = child
            elif kind == "]":
                closer = child
        header_parts = header.children if header is not None else []
        if header is None or len(header_parts) < 3:
            self._error(node, "method without a header")
            return
        selector_node = header_parts[-1]
        owner = self._node_text(header_parts[0])
        side: Side = "class" if header_parts[1].type == "class_keyword" else "instance"
        category = None
        if metadata is not None:
            found = _CATEGORY.search(self._node_text(metadata))
            if found:
                category = symbol_value(found.group(1))
        to_char = self.bmap.to_char
        start = to_char(header.start_byte)
        end = to_char(node.end_byte)
        body_start = to_char(opener.end_byte) if opener is not None else end
        body_end = to_char(closer.start_byte) if closer is not None else end
        text = self.text
        pattern = text[to_char(selector_node.start_byte) : to_char(selector_node.end_byte)]
        source = pattern + text[body_start:body_end].rstrip()
        key = text[start:end]
        found_facts = self.cache.lookup(key)
        if found_facts is None:
            found_facts = ts.collect(node, self.data, self.bmap, start)
            self.cache.store(key, found_facts)
        self.result.methods.append(
            make_method(
                self.index,
                class_name=owner,
                side=side,
                category=category,
                source=source,
                start=start,
                end=end,
                found=found_facts,
                to_abs=lambda offset: start + offset,
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
