"""What one method says, read from its tree-sitter subtree in a single cursor walk.

Every format ends up here: Tonel methods straight from the file's tree, chunk and bracket
methods from a tree of the method source alone. Offsets in `MethodFacts` are character offsets
relative to a base the caller chooses (the method's first character), so facts of unchanged
method text can be cached and reused at another place in the file.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

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
# Kinds below LEAF may have children and are walked into; LEAF and above are read where the
# walk meets them and never walked into (leaves, and subtrees read as a whole).
(
    OTHER,
    KW_MSG,
    CKW_MSG,
    UN_MSG,
    CUN_MSG,
    BIN_MSG,
    CBIN_MSG,
    ERROR,
    # Walked into but read only outside methods (Tonel files, class definitions).
    METHOD_DEF,
    CLASS_DEF,
    HEADER_PAIR,
    STON_PAIR,
    STON_VALUE,
    STON_ARRAY,
    LEAF,
    IDENT,
    KEYWORD,
    UNARY_ID,
    BINOP,
    SYMBOL,
    TEMPS,
    BLOCK_ARG,
    COMMENT,
    UN_SEL,
    BIN_SEL,
    KW_SEL,
    HEADER,
    PRAGMA,
    METADATA,
    OPEN,
    CLOSE,
    STRING,
    CLASS_KW,
) = range(33)
_CODES = {
    "keyword_message": KW_MSG,
    "cascaded_keyword_message": CKW_MSG,
    "unary_message": UN_MSG,
    "cascaded_unary_message": CUN_MSG,
    "binary_message": BIN_MSG,
    "cascaded_binary_message": CBIN_MSG,
    "ERROR": ERROR,
    "method_definition": METHOD_DEF,
    "class_definition": CLASS_DEF,
    "class_header_pair": HEADER_PAIR,
    "ston_pair": STON_PAIR,
    "ston_value": STON_VALUE,
    "ston_array": STON_ARRAY,
    "identifier": IDENT,
    "keyword": KEYWORD,
    "unary_identifier": UNARY_ID,
    "binary_operator": BINOP,
    "symbol": SYMBOL,
    "temporaries": TEMPS,
    "block_argument": BLOCK_ARG,
    "comment": COMMENT,
    "unary_selector": UN_SEL,
    "binary_selector": BIN_SEL,
    "keyword_selector": KW_SEL,
    "method_header": HEADER,
    "pragma": PRAGMA,
    "method_metadata": METADATA,
    "[": OPEN,
    "]": CLOSE,
    "string": STRING,
    "class_keyword": CLASS_KW,
    # Named leaves that carry no facts.
    "number": LEAF,
    "character": LEAF,
    "self": LEAF,
    "super": LEAF,
    "thisContext": LEAF,
    "true": LEAF,
    "false": LEAF,
    "nil": LEAF,
}
_NAMES = [LANGUAGE.node_kind_for_id(i) or "" for i in range(LANGUAGE.node_kind_count)]
_KIND = [
    _CODES.get(name, OTHER if LANGUAGE.node_kind_is_named(i) else LEAF)
    for i, name in enumerate(_NAMES)
]
# ERROR nodes have the id 65535, so the table covers every 16-bit id.
_KIND += [OTHER] * (65536 - len(_KIND))
_KIND[65535] = ERROR
KIND = _KIND


def kind(node: Node) -> int:
    return _KIND[node.kind_id]


@dataclass(slots=True, init=False)
class MethodFacts:
    selector: str | None
    keywords: list[str]
    # The pattern (`at: i put: v`) as (start, end), and the part of it on its first line.
    pattern_span: tuple[int, int] | None
    selector_span: tuple[int, int] | None
    arguments: list[str]
    temporaries: list[str]
    sends: list[str]
    symbols: list[str]
    class_references: list[str]
    variable_references: list[str]
    comment: str | None
    # `<category: 'x'>` (GNU Smalltalk writes method categories this way).
    pragma_category: str | None
    errors: list[tuple[int, int, str]]
    # Of a Tonel `method_definition`, so that a cached entry needs no tree: the header's
    # children (count, first one's text, whether the second is `class`, the last one's span)
    # and the method's own `[` end and `]` start.
    header_parts: int | None
    owner: str
    class_side: bool
    header_tail: tuple[int, int] | None
    body_open: int | None
    body_close: int | None

    def __init__(self) -> None:
        # Written out (not generated): one of these is made for every method.
        self.selector = None
        self.keywords = []
        self.pattern_span = None
        self.selector_span = None
        self.arguments = []
        self.temporaries = []
        self.sends = []
        self.symbols = []
        self.class_references = []
        self.variable_references = []
        self.comment = None
        self.pragma_category = None
        self.errors = []
        self.header_parts = None
        self.owner = ""
        self.class_side = False
        self.header_tail = None
        self.body_open = None
        self.body_close = None


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


def collect(
    root: Node,
    data: bytes,
    bmap: ByteMap,
    base: int,
    text: str | None = None,
    facts: MethodFacts | None = None,
    clean: bool = False,
) -> MethodFacts:
    """Facts of the method under `root` (a `method`, `method_definition` or `source` node).

    `data` is the byte string the tree was parsed from and `text` (optional) the same text
    decoded; offsets come out as characters of the decoded text minus `base`. `facts` may
    come with the pattern already read (a Tonel header read from its text); the walk then
    leaves the header alone. `clean`: the caller knows the tree has no errors.

    Speed matters here (every method of a project passes through): one TreeCursor walk, a
    table lookup per node, leaves never asked for children, and work only at the few node
    kinds that carry facts. A message's selector is read from its keyword/identifier/operator
    leaves as the walk reaches them (the kind of each node on the path down is kept per
    depth), so message nodes need no child lists; the message takes its place in `sends`
    when the walk enters it, so the order is the tree's pre-order.
    """
    if facts is None:
        facts = MethodFacts()
    # In the order the walk enters the messages; None while a unary or binary message's
    # selector is unread.
    sends: list[str | None] = []
    symbols: list[str] = []
    refs: list[str] = []
    declared: list[str] = list(facts.arguments)
    temporaries = facts.temporaries
    check_missing = not clean and root.has_error
    error_end = -1  # end byte of the last ERROR reported: nested ERRORs repeat it
    kinds = _KIND
    # For ASCII text byte offsets are character offsets: slice the str, no decoding.
    chars = text if text is not None and bmap.ascii else None
    limit = 32
    path = [OTHER] * limit  # the kind of the node at each depth above the current one
    slots: list[Any] = [None] * limit  # per depth: a message's index in `sends`
    depth = 0
    cursor = root.walk()
    while True:
        node: Node = cursor.node  # type: ignore[assignment]  # never None inside a tree
        k = kinds[node.kind_id]
        if check_missing and node.is_missing:
            at = bmap.to_char(node.start_byte) - base
            facts.errors.append((at, at, f"missing '{node.type}'"))
        if k >= LEAF:
            if k == LEAF or k == STRING:
                pass
            elif k == IDENT:
                s, e = node.start_byte, node.end_byte
                refs.append(
                    chars[s:e] if chars is not None else data[s:e].decode("utf-8", "replace")
                )
            elif k == KEYWORD:
                if path[depth - 1] == KW_MSG or path[depth - 1] == CKW_MSG:
                    s, e = node.start_byte, node.end_byte
                    sends[slots[depth - 1]] += (
                        chars[s:e] if chars is not None else data[s:e].decode("utf-8", "replace")
                    )
            elif k == UNARY_ID or k == BINOP:
                parent = path[depth - 1]
                if (
                    (parent == UN_MSG or parent == CUN_MSG)
                    if k == UNARY_ID
                    else (parent == BIN_MSG or parent == CBIN_MSG)
                ) and sends[slots[depth - 1]] is None:  # the message's first selector child
                    s, e = node.start_byte, node.end_byte
                    sends[slots[depth - 1]] = (
                        chars[s:e] if chars is not None else data[s:e].decode("utf-8", "replace")
                    )
            elif k == OPEN or k == CLOSE:
                if depth == 1:  # the brackets of a Tonel method_definition
                    at = node.end_byte if k == OPEN else node.start_byte
                    at = (at if chars is not None else bmap.to_char(at)) - base
                    if k == OPEN:
                        facts.body_open = at
                    else:
                        facts.body_close = at
            elif k == SYMBOL:
                s, e = node.start_byte, node.end_byte
                value = symbol_value(
                    chars[s:e] if chars is not None else data[s:e].decode("utf-8", "replace")
                )
                if value:
                    symbols.append(value)
            elif k == TEMPS:
                for c in node.children:
                    if kinds[c.kind_id] == IDENT:
                        name = data[c.start_byte : c.end_byte].decode("utf-8", "replace")
                        temporaries.append(name)
                        declared.append(name)
            elif k == BLOCK_ARG:
                raw = data[node.start_byte : node.end_byte].decode("utf-8", "replace")
                name = raw.lstrip(":").strip()
                temporaries.append(name)
                declared.append(name)
            elif k == COMMENT:
                if facts.comment is None:
                    raw = data[node.start_byte : node.end_byte].decode("utf-8", "replace")
                    facts.comment = comment_text(raw)
            elif k == HEADER:
                if facts.header_parts is None:
                    _header(node, facts, data, bmap, base)
                    declared.extend(facts.arguments)
            elif k == UN_SEL or k == BIN_SEL or k == KW_SEL:
                if facts.selector is None:
                    _pattern(node, facts, data, bmap, base)
                    declared.extend(facts.arguments)
            elif k == PRAGMA:
                _pragma(node, facts, data, symbols)
        else:
            if not k:
                pass
            elif k == KW_MSG or k == CKW_MSG:
                slots[depth] = len(sends)
                sends.append("")  # its keywords are added as the walk meets them
            elif k == UN_MSG or k == CUN_MSG or k == BIN_MSG or k == CBIN_MSG:
                slots[depth] = len(sends)
                sends.append(None)
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
            if cursor.goto_first_child():
                path[depth] = k
                depth += 1
                if depth == limit:
                    limit += 32
                    path.extend([OTHER] * 32)
                    slots.extend([None] * 32)
                continue
        while not cursor.goto_next_sibling():
            if not cursor.goto_parent():
                break
            depth -= 1
        else:
            continue
        break

    read: list[str] = [send for send in sends if send is not None] if None in sends else sends  # type: ignore[assignment]
    facts.sends = list(dict.fromkeys(read)) if len(read) > 1 else read
    if symbols:
        facts.symbols = list(dict.fromkeys(symbols))
    classes = facts.class_references
    variables = facts.variable_references
    for name in dict.fromkeys(refs):
        if name not in _PSEUDO and name not in declared:
            (classes if name[0].isupper() else variables).append(name)
    if len(temporaries) > 1:
        facts.temporaries = list(dict.fromkeys(temporaries))
    return facts


def _header(node: Node, facts: MethodFacts, data: bytes, bmap: ByteMap, base: int) -> None:
    """`Foo class >> pattern`: the class name is no reference; read the pattern, and what a
    Tonel reader needs of the header."""
    parts = node.children
    facts.header_parts = len(parts)
    if parts:
        first, last = parts[0], parts[-1]
        facts.owner = data[first.start_byte : first.end_byte].decode("utf-8", "replace")
        facts.class_side = len(parts) > 1 and _KIND[parts[1].kind_id] == CLASS_KW
        facts.header_tail = (
            bmap.to_char(last.start_byte) - base,
            bmap.to_char(last.end_byte) - base,
        )
    for c in parts:
        if _KIND[c.kind_id] in (UN_SEL, BIN_SEL, KW_SEL):
            _pattern(c, facts, data, bmap, base)


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
