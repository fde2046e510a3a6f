"""What one method says, read from its tree-sitter subtree in a single cursor walk.

Every format ends up here: Tonel methods straight from the file's tree, chunk and bracket
methods from a tree of the method source alone. Offsets in `MethodFacts` are character offsets
relative to a base the caller chooses (the method's first character), so facts of unchanged
method text can be cached and reused at another place in the file.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import tree_sitter_pharo
from tree_sitter import Language, Node, Parser, Tree

from smalltalk_grammar.text import ByteMap

LANGUAGE = Language(tree_sitter_pharo.language())
_local = threading.local()


def parser() -> Parser:
    """A parser for this thread (tree-sitter parsers must not be shared between threads)."""
    found = getattr(_local, "parser", None)
    if found is None:
        found = _local.parser = Parser(LANGUAGE)
    return found


def parse_bytes(data: bytes, old_tree: Tree | None = None) -> Tree:
    if old_tree is None:
        return parser().parse(data)
    return parser().parse(data, old_tree)


# Node kinds as small ints: one kind name may have several ids (aliases), so map every id.
_NAMES = [LANGUAGE.node_kind_for_id(i) or "" for i in range(LANGUAGE.node_kind_count)]
_CODES = {
    name: code
    for code, name in enumerate(
        [
            "other",
            "identifier",
            "unary_identifier",
            "binary_operator",
            "keyword",
            "keyword_message",
            "cascaded_keyword_message",
            "unary_message",
            "cascaded_unary_message",
            "binary_message",
            "cascaded_binary_message",
            "symbol",
            "block_argument",
            "temporaries",
            "comment",
            "ERROR",
            "pragma",
            "unary_selector",
            "binary_selector",
            "keyword_selector",
            "method_metadata",
            "method_header",
            "string",
            "number",
            "character",
            "method_body",
            "method",
            "source",
            "method_definition",
            "literal_array",
        ]
    )
}
# Indexed by kind_id; ERROR nodes have the id 65535, so the table covers every 16-bit id.
_KIND = [_CODES.get(name, 0) for name in _NAMES] + [0] * (65536 - len(_NAMES))
_KIND[65535] = _CODES["ERROR"]
(
    OTHER,
    IDENT,
    UNARY_ID,
    BINOP,
    KEYWORD,
    KW_MSG,
    CKW_MSG,
    UN_MSG,
    CUN_MSG,
    BIN_MSG,
    CBIN_MSG,
    SYMBOL,
    BLOCK_ARG,
    TEMPS,
    COMMENT,
    ERROR,
    PRAGMA,
    UN_SEL,
    BIN_SEL,
    KW_SEL,
    METADATA,
    HEADER,
    STRING,
    NUMBER,
    CHARACTER,
    BODY,
    METHOD,
    SOURCE,
    METHOD_DEF,
    LIT_ARRAY,
) = range(30)
_LEAVES = {STRING, NUMBER, CHARACTER, SYMBOL, COMMENT, BLOCK_ARG, METADATA}
_SEND_PARENTS_UNARY = {UN_MSG, CUN_MSG}
_SEND_PARENTS_BINARY = {BIN_MSG, CBIN_MSG}


def kind(node: Node) -> int:
    return _KIND[node.kind_id]


@dataclass(slots=True)
class MethodFacts:
    selector: str | None = None
    keywords: list[str] = field(default_factory=list)
    # The pattern (`at: i put: v`) as (start, end), and the part of it on its first line.
    pattern_span: tuple[int, int] | None = None
    selector_span: tuple[int, int] | None = None
    arguments: list[str] = field(default_factory=list)
    temporaries: list[str] = field(default_factory=list)
    sends: list[str] = field(default_factory=list)
    symbols: list[str] = field(default_factory=list)
    class_references: list[str] = field(default_factory=list)
    variable_references: list[str] = field(default_factory=list)
    comment: str | None = None
    # `<category: 'x'>` (GNU Smalltalk writes method categories this way).
    pragma_category: str | None = None
    errors: list[tuple[int, int, str]] = field(default_factory=list)


def comment_text(raw: str) -> str:
    """`"text"` -> `text`: quotes removed, `""` un-doubled, surrounding blank space trimmed."""
    inner = raw[1:-1] if len(raw) >= 2 and raw.endswith('"') else raw[1:]
    return inner.replace('""', '"').strip()


def string_value(raw: str) -> str:
    inner = raw[1:-1] if len(raw) >= 2 and raw.endswith("'") else raw[1:]
    return inner.replace("''", "'")


def symbol_value(raw: str) -> str:
    raw = raw.lstrip("#")
    if raw.startswith("'"):
        return string_value(raw)
    return raw


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def collect(root: Node, data: bytes, bmap: ByteMap, base: int) -> MethodFacts:
    """Facts of the method under `root` (a `method`, `method_definition` or `source` node).

    `data` is the byte string the tree was parsed from; offsets come out as characters of the
    decoded text minus `base`.
    """
    facts = MethodFacts()
    sends: list[str] = []
    symbols: list[str] = []
    refs: list[str] = []
    declared: list[str] = []
    check_missing = root.has_error
    to_char = bmap.to_char

    def span(node: Node) -> tuple[int, int]:
        return to_char(node.start_byte) - base, to_char(node.end_byte) - base

    def text(node: Node) -> str:
        return data[node.start_byte : node.end_byte].decode("utf-8", "replace")

    cursor = root.walk()
    parents: list[int] = []
    while True:
        node = cursor.node
        assert node is not None
        k = _KIND[node.kind_id]
        parent = parents[-1] if parents else OTHER
        descend = k not in _LEAVES
        if k == IDENT:
            name = text(node)
            if parent == TEMPS:
                facts.temporaries.append(name)
                declared.append(name)
            elif parent != HEADER:
                refs.append(name)
        elif k == UNARY_ID:
            if parent in _SEND_PARENTS_UNARY:
                sends.append(text(node))
        elif k == BINOP:
            if parent in _SEND_PARENTS_BINARY:
                sends.append(text(node))
        elif k == KW_MSG or k == CKW_MSG:
            sends.append("".join(text(c) for c in node.children if _KIND[c.kind_id] == KEYWORD))
        elif k == SYMBOL:
            value = symbol_value(text(node))
            if value:
                symbols.append(value)
        elif k == BLOCK_ARG:
            name = text(node).lstrip(":").strip()
            facts.temporaries.append(name)
            declared.append(name)
        elif k == COMMENT:
            if facts.comment is None:
                facts.comment = comment_text(text(node))
        elif k in (UN_SEL, BIN_SEL, KW_SEL) and parent in (METHOD, HEADER):
            _pattern(node, facts, span, text, data)
            declared.extend(facts.arguments)
            descend = False
        elif k == PRAGMA:
            _pragma(node, facts, text)
        elif k == ERROR and parent != ERROR:  # nested errors repeat the outer one
            start, end = span(node)
            snippet = text(node).strip().splitlines()
            shown = snippet[0][:30] if snippet else ""
            facts.errors.append((start, end, f"syntax error near '{shown}'"))
        elif check_missing and node.is_missing:
            start, end = span(node)
            facts.errors.append((start, end, f"missing '{node.type}'"))
        if descend and cursor.goto_first_child():
            parents.append(k)
            continue
        while not cursor.goto_next_sibling():
            if not parents or not cursor.goto_parent():
                break
            parents.pop()
        else:
            continue
        break

    facts.sends = _unique(sends)
    facts.symbols = _unique(symbols)
    hidden = set(declared) | {"self", "super", "thisContext", "true", "false", "nil"}
    names = _unique([name for name in refs if name not in hidden])
    facts.class_references = [n for n in names if n[:1].isupper()]
    facts.variable_references = [n for n in names if not n[:1].isupper()]
    facts.temporaries = _unique(facts.temporaries)
    return facts


def _pattern(node: Node, facts: MethodFacts, span, text, data: bytes) -> None:  # type: ignore[no-untyped-def]
    parts: list[Node] = []
    for child in node.children:
        k = _KIND[child.kind_id]
        if k == KEYWORD:
            facts.keywords.append(text(child))
            parts.append(child)
        elif k == IDENT:
            facts.arguments.append(text(child))
            parts.append(child)
        elif k in (UNARY_ID, BINOP):
            parts.append(child)
    if not parts:
        return
    if facts.keywords:
        facts.selector = "".join(facts.keywords)
    else:
        facts.selector = text(parts[0])
        facts.keywords = []
    start = span(parts[0])[0]
    facts.pattern_span = (start, span(parts[-1])[1])
    # The selector range must stay on the pattern's first line: a keyword pattern split over
    # lines is cut after its last part on the first line.
    last = parts[0]
    first_byte = parts[0].start_byte
    for part in parts[1:]:
        between = data[first_byte : part.start_byte]
        if b"\n" in between or b"\r" in between:
            break
        last = part
    facts.selector_span = (start, span(last)[1])


def _pragma(node: Node, facts: MethodFacts, text) -> None:  # type: ignore[no-untyped-def]
    for child in node.children:
        if child.type != "pragma_keyword_selector":
            continue
        parts = child.children
        if (
            len(parts) == 2
            and text(parts[0]) == "category:"
            and _KIND[parts[1].kind_id] in (STRING, SYMBOL)
        ):
            facts.pragma_category = symbol_value(text(parts[1]))
