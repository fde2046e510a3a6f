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


_PSEUDO = frozenset({"self", "super", "thisContext", "true", "false", "nil"})


def collect(root: Node, data: bytes, bmap: ByteMap, base: int) -> MethodFacts:
    """Facts of the method under `root` (a `method`, `method_definition` or `source` node).

    `data` is the byte string the tree was parsed from; offsets come out as characters of the
    decoded text minus `base`.

    Speed matters here (every method of a project passes through): one TreeCursor walk, a
    table lookup per node, and work only at the few node kinds that carry facts. Message
    selectors are read at the message node, so identifier leaves need no parent context.
    """
    facts = MethodFacts()
    sends: list[str] = []
    symbols: list[str] = []
    refs: list[str] = []
    declared: list[str] = []
    check_missing = root.has_error
    error_end = -1  # end byte of the last ERROR reported: nested ERRORs repeat it
    kinds = _KIND
    cursor = root.walk()
    while True:
        node = cursor.node
        assert node is not None
        k = kinds[node.kind_id]
        descend = True
        if k:
            if k == IDENT:
                refs.append(data[node.start_byte : node.end_byte].decode("utf-8", "replace"))
            elif k == KW_MSG or k == CKW_MSG:
                sends.append(
                    "".join(
                        data[c.start_byte : c.end_byte].decode("utf-8", "replace")
                        for c in node.children
                        if kinds[c.kind_id] == KEYWORD
                    )
                )
            elif k == UN_MSG or k == CUN_MSG or k == BIN_MSG or k == CBIN_MSG:
                want = UNARY_ID if k == UN_MSG or k == CUN_MSG else BINOP
                for c in node.children:
                    if kinds[c.kind_id] == want:
                        sends.append(data[c.start_byte : c.end_byte].decode("utf-8", "replace"))
                        break
            elif k == SYMBOL:
                value = symbol_value(
                    data[node.start_byte : node.end_byte].decode("utf-8", "replace")
                )
                if value:
                    symbols.append(value)
                descend = False
            elif k == TEMPS:
                for c in node.children:
                    if kinds[c.kind_id] == IDENT:
                        name = data[c.start_byte : c.end_byte].decode("utf-8", "replace")
                        facts.temporaries.append(name)
                        declared.append(name)
                descend = False
            elif k == BLOCK_ARG:
                raw = data[node.start_byte : node.end_byte].decode("utf-8", "replace")
                name = raw.lstrip(":").strip()
                facts.temporaries.append(name)
                declared.append(name)
            elif k == COMMENT:
                if facts.comment is None:
                    raw = data[node.start_byte : node.end_byte].decode("utf-8", "replace")
                    facts.comment = comment_text(raw)
            elif k == UN_SEL or k == BIN_SEL or k == KW_SEL:
                if facts.selector is None:
                    _pattern(node, facts, data, bmap, base)
                    declared.extend(facts.arguments)
                descend = False
            elif k == HEADER:
                # `Foo class >> pattern`: the class name is no reference; read the pattern.
                for c in node.children:
                    if kinds[c.kind_id] in (UN_SEL, BIN_SEL, KW_SEL):
                        _pattern(c, facts, data, bmap, base)
                        declared.extend(facts.arguments)
                descend = False
            elif k == PRAGMA:
                _pragma(node, facts, data, symbols)
                descend = False
            elif k == METADATA:
                descend = False
            elif k == ERROR:
                if node.start_byte >= error_end:
                    error_end = node.end_byte
                    raw = data[node.start_byte : node.end_byte].decode("utf-8", "replace")
                    lines = raw.strip().splitlines()
                    shown = lines[0][:30] if lines else ""
                    facts.errors.append(
                        (
                            bmap.to_char(node.start_byte) - base,
                            bmap.to_char(node.end_byte) - base,
                            f"syntax error near '{shown}'",
                        )
                    )
        if check_missing and node.is_missing:
            at = bmap.to_char(node.start_byte) - base
            facts.errors.append((at, at, f"missing '{node.type}'"))
        if descend and cursor.goto_first_child():
            continue
        while not cursor.goto_next_sibling():
            if not cursor.goto_parent():
                break
        else:
            continue
        break

    facts.sends = list(dict.fromkeys(sends))
    facts.symbols = list(dict.fromkeys(symbols))
    hidden = _PSEUDO.union(declared)
    classes = facts.class_references
    variables = facts.variable_references
    for name in dict.fromkeys(refs):
        if name not in hidden:
            (classes if name[0].isupper() else variables).append(name)
    if len(facts.temporaries) > 1:
        facts.temporaries = list(dict.fromkeys(facts.temporaries))
    return facts


def _pattern(node: Node, facts: MethodFacts, data: bytes, bmap: ByteMap, base: int) -> None:
    parts: list[Node] = []
    keywords: list[str] = []
    arguments: list[str] = []
    for child in node.children:
        k = _KIND[child.kind_id]
        if k == KEYWORD:
            keywords.append(data[child.start_byte : child.end_byte].decode("utf-8", "replace"))
            parts.append(child)
        elif k == IDENT:
            arguments.append(data[child.start_byte : child.end_byte].decode("utf-8", "replace"))
            parts.append(child)
        elif k in (UNARY_ID, BINOP):
            parts.append(child)
    if not parts:
        return
    first = parts[0]
    facts.keywords = keywords
    facts.arguments = arguments
    if keywords:
        facts.selector = "".join(keywords)
    else:
        facts.selector = data[first.start_byte : first.end_byte].decode("utf-8", "replace")
    start = bmap.to_char(first.start_byte) - base
    facts.pattern_span = (start, bmap.to_char(parts[-1].end_byte) - base)
    # The selector range must stay on the pattern's first line: a keyword pattern split over
    # lines is cut after its last part on the first line.
    last = first
    for part in parts[1:]:
        between = data[first.start_byte : part.start_byte]
        if b"\n" in between or b"\r" in between:
            break
        last = part
    facts.selector_span = (start, bmap.to_char(last.end_byte) - base)


def _pragma(node: Node, facts: MethodFacts, data: bytes, symbols: list[str]) -> None:
    """`<category: 'x'>` gives the category (GNU); symbols in pragmas are still symbols."""
    for child in node.children:
        if child.type != "pragma_keyword_selector":
            continue
        parts = child.children
        for i, part in enumerate(parts):
            k = _KIND[part.kind_id]
            if k == SYMBOL:
                value = symbol_value(
                    data[part.start_byte : part.end_byte].decode("utf-8", "replace")
                )
                if value:
                    symbols.append(value)
            if (
                k == KEYWORD
                and data[part.start_byte : part.end_byte] == b"category:"
                and i + 1 < len(parts)
                and _KIND[parts[i + 1].kind_id] in (STRING, SYMBOL)
            ):
                nxt = parts[i + 1]
                facts.pragma_category = symbol_value(
                    data[nxt.start_byte : nxt.end_byte].decode("utf-8", "replace")
                )
