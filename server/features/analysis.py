"""What is under the cursor: a tree-sitter view of one method, read at a document offset.

The grammar package gives methods with their ranges; this module parses the method's own text
(from the selector pattern to the end of the method) with tree_sitter_pharo, which reads chunk
and bracket style methods alike, and answers: the selector of the send (every keyword part of
a keyword message), a class name, a variable, a pseudo-variable; the statically known class of
a receiver; locals in scope; the occurrences of a name in the method.

All offsets in and out are character offsets of the document text.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Literal

from tree_sitter import Node, Query, QueryCursor, Tree

from server.project_model import MethodRef, ProjectModel
from smalltalk_grammar.facts import LANGUAGE, parser
from smalltalk_grammar.model import MethodDef, Position

PSEUDO_VARIABLES = ("self", "super", "thisContext", "true", "false", "nil")
_MESSAGES = {"keyword_message", "cascaded_keyword_message"}
_UNARY = {"unary_message", "cascaded_unary_message"}
_BINARY = {"binary_message", "cascaded_binary_message"}
_PATTERNS = {"keyword_selector", "unary_selector", "binary_selector"}
_TOKENS = {
    "identifier",
    "unary_identifier",
    "binary_operator",
    "keyword",
    "symbol",
    "block_argument",
    *PSEUDO_VARIABLES,
}
# Classes of literals, for ranking implementors by the receiver.
_LITERAL_CLASSES = {
    "string": "String",
    "symbol": "Symbol",
    "character": "Character",
    "literal_array": "Array",
    "dynamic_array": "Array",
    "byte_array": "ByteArray",
    "block": "BlockClosure",
    "true": "True",
    "false": "False",
    "nil": "UndefinedObject",
    "thisContext": "Context",
}
_CONSTRUCTORS = {"new", "basicNew", "new:", "basicNew:"}

Side = Literal["instance", "class"]
TargetKind = Literal["selector", "class", "variable", "pseudo"]
VariableScope = Literal["argument", "temporary", "instance", "class", "global"]


@dataclass(frozen=True)
class Receiver:
    class_name: str
    side: Side = "instance"


@dataclass
class Target:
    kind: TargetKind
    name: str
    start: int
    end: int
    method: MethodDef | None = None
    receiver: Receiver | None = None
    keyword_index: int = 0
    # On the method's own selector pattern, or on a class definition's name.
    definition: bool = False
    scope: VariableScope | None = None
    # Document span of a local variable's declaration.
    declaration: tuple[int, int] | None = None


@dataclass
class MethodTree:
    """One method's text parsed on its own, with offsets mapped back to the document."""

    method: MethodDef
    base: int
    text: str
    data: bytes
    tree: Tree
    # Offsets in `text` after which the document had one more `!` (chunk `!!` un-doubled).
    escapes: list[int] = field(default_factory=list)

    def to_doc(self, char: int) -> int:
        extra = 0
        for at in self.escapes:
            if at < char:
                extra += 1
        return self.base + char + extra

    def from_doc(self, doc: int) -> int:
        char = doc - self.base
        for at in self.escapes:
            if at < char:
                char -= 1
        return max(0, min(char, len(self.text)))

    def to_byte(self, char: int) -> int:
        if len(self.data) == len(self.text):
            return char
        return len(self.text[:char].encode("utf-8"))

    def to_char(self, byte: int) -> int:
        if len(self.data) == len(self.text):
            return byte
        return len(self.data[:byte].decode("utf-8", "ignore"))

    def span(self, node: Node) -> tuple[int, int]:
        return self.to_doc(self.to_char(node.start_byte)), self.to_doc(self.to_char(node.end_byte))

    def node_text(self, node: Node) -> str:
        return self.data[node.start_byte : node.end_byte].decode("utf-8", "replace")

    def node_at(self, doc_offset: int) -> Node | None:
        """The token under the offset; a cursor just after a token counts as on it."""
        char = self.from_doc(doc_offset)
        byte = self.to_byte(char)
        root = self.tree.root_node
        before = None
        for b in (byte, byte - 1):
            if b < 0 or b > len(self.data):
                continue
            node = root.descendant_for_byte_range(b, b)
            if node is None:
                continue
            if node.type in _TOKENS or node.type in ("string", "comment", "number", "character"):
                return node
            before = before or node
        return before


# Trees of method texts seen recently: requests on one method repeat while the user reads it.
_TREES: OrderedDict[str, tuple[Tree, bytes]] = OrderedDict()
_TREES_LIMIT = 512
_TREES_LOCK = threading.Lock()


def _parse(text: str) -> tuple[Tree, bytes]:
    with _TREES_LOCK:
        found = _TREES.get(text)
        if found is not None:
            _TREES.move_to_end(text)
            return found
    data = text.encode("utf-8")
    tree = parser().parse(data)
    with _TREES_LOCK:
        _TREES[text] = (tree, data)
        if len(_TREES) > _TREES_LIMIT:
            _TREES.popitem(last=False)
    return tree, data


def method_tree(doc_text: str, source_format: str, method: MethodDef, base: int) -> MethodTree:
    """Parse `method` from the document; `base` is the document offset of its pattern."""
    end = max(base, min(method.end_offset, len(doc_text)))
    region = doc_text[base:end]
    escapes: list[int] = []
    if source_format == "chunk":
        region = region.rstrip()
        # A chunk ends at a single `!`; doubled ones are literal bangs.
        trailing = len(region) - len(region.rstrip("!"))
        if trailing % 2 == 1:
            region = region[:-1]
        if "!!" in region:
            region, escapes = _unescape_bangs(region)
    tree, data = _parse(region)
    return MethodTree(method=method, base=base, text=region, data=data, tree=tree, escapes=escapes)


def _unescape_bangs(text: str) -> tuple[str, list[int]]:
    out: list[str] = []
    escapes: list[int] = []
    i = 0
    while i < len(text):
        if text.startswith("!!", i):
            out.append("!")
            escapes.append(len(out))
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out), escapes


def method_at(methods: list[MethodDef], pos: Position) -> MethodDef | None:
    """The innermost method whose range holds the position."""
    best: MethodDef | None = None
    for m in methods:
        if m.range.contains(pos) and (best is None or m.start_offset >= best.start_offset):
            best = m
    return best


# --- classifying the token under the cursor ------------------------------------------------


def target_at(mt: MethodTree, doc_offset: int, project: ProjectModel) -> Target | None:
    node = mt.node_at(doc_offset)
    if node is None:
        return None
    kind = node.type
    parent = node.parent
    ptype = parent.type if parent is not None else ""
    start, end = mt.span(node)
    method = mt.method
    if kind == "keyword" and parent is not None:
        if ptype in _MESSAGES or ptype in _PATTERNS or ptype == "pragma_keyword_selector":
            parts = [c for c in parent.children if c.type == "keyword"]
            selector = "".join(mt.node_text(c) for c in parts)
            index = next((i for i, c in enumerate(parts) if c.id == node.id), 0)
            target = Target("selector", selector, start, end, method, keyword_index=index)
            if ptype in _PATTERNS:
                target.definition = True
                target.receiver = Receiver(method.class_name, method.side)
            elif ptype in _MESSAGES:
                target.receiver = receiver_of(mt, parent, project)
            return target
    if kind in ("unary_identifier", "binary_operator") and parent is not None:
        selector = mt.node_text(node)
        target = Target("selector", selector, start, end, method)
        if ptype in _PATTERNS:
            target.definition = True
            target.receiver = Receiver(method.class_name, method.side)
        elif ptype in _UNARY or ptype in _BINARY:
            target.receiver = receiver_of(mt, parent, project)
        return target
    if kind == "symbol":
        value = _symbol_value(mt.node_text(node))
        if not value:
            return None
        if value[:1].isupper() and not project.implementors(value) and project.class_named(value):
            return Target("class", value, start, end, method)
        return Target("selector", value, start, end, method)
    if kind in PSEUDO_VARIABLES:
        return Target("pseudo", kind, start, end, method)
    if kind == "block_argument":
        name, span = block_argument(mt, node)
        return Target("variable", name, *span, method, scope="temporary", declaration=span)
    if kind == "identifier":
        return _identifier_target(mt, node, project)
    return None


def block_argument(mt: MethodTree, node: Node) -> tuple[str, tuple[int, int]]:
    """`:each` -> ("each", span of `each` without the colon)."""
    raw = mt.node_text(node)
    name = raw.lstrip(":").strip()
    start, end = mt.span(node)
    skip = raw.index(name) if name else 0
    return name, (start + skip, start + skip + len(name))


def _identifier_target(mt: MethodTree, node: Node, project: ProjectModel) -> Target:
    name = mt.node_text(node)
    start, end = mt.span(node)
    method = mt.method
    for local, scope, decl in locals_in_scope(mt, node):
        if local == name:
            return Target("variable", name, start, end, method, scope=scope, declaration=decl)
    found = variable_scope(project, method.class_name, method.side, name)
    if found is not None:
        return Target("variable", name, start, end, method, scope=found)
    if name[:1].isupper():
        return Target("class", name, start, end, method)
    return Target("variable", name, start, end, method, scope="global")


def variable_scope(
    project: ProjectModel, class_name: str, side: str, name: str
) -> VariableScope | None:
    """Whether `name` is an instance or class variable seen from `class_name` (or above)."""
    for cls_name in [class_name, *project.superclass_chain(class_name)]:
        cls = project.class_named(cls_name)
        if cls is None:
            continue
        inst_vars = cls.class_instance_variables if side == "class" else cls.instance_variables
        if name in inst_vars:
            return "instance"
        if name in cls.class_variables:
            return "class"
    return None


def _symbol_value(raw: str) -> str:
    raw = raw.lstrip("#")
    if raw.startswith("'") and raw.endswith("'") and len(raw) >= 2:
        raw = raw[1:-1].replace("''", "'")
    return raw


def receiver_of(mt: MethodTree, message: Node, project: ProjectModel) -> Receiver | None:
    """The statically known class of the receiver of a message node."""
    if message.type.startswith("cascaded_"):
        cascade = message.parent
        first = cascade.children[0] if cascade is not None and cascade.children else None
        if first is None or first.type not in _MESSAGES | _UNARY | _BINARY:
            return None
        message = first
    receiver = message.named_children[0] if message.named_children else None
    if receiver is None or receiver.type in ("keyword", "unary_identifier", "binary_operator"):
        return None
    return static_class(mt, receiver, project)


def static_class(mt: MethodTree, node: Node, project: ProjectModel) -> Receiver | None:
    kind = node.type
    method = mt.method
    if kind == "self":
        return Receiver(method.class_name, method.side)
    if kind == "super":
        chain = project.superclass_chain(method.class_name)
        return Receiver(chain[0], method.side) if chain else None
    if kind == "parenthesized_expression":
        children = node.named_children
        return static_class(mt, children[0], project) if children else None
    if kind in ("primary", "expression", "statement") and node.named_children:
        return static_class(mt, node.named_children[0], project)
    if kind == "number":
        text = mt.node_text(node)
        is_float = ("." in text or "e" in text) and "r" not in text
        return Receiver("Float" if is_float else "SmallInteger")
    if kind in _LITERAL_CLASSES:
        return Receiver(_LITERAL_CLASSES[kind])
    if kind == "identifier":
        name = mt.node_text(node)
        if name[:1].isupper() and project.class_named(name) is not None:
            return Receiver(name, "class")
        return None
    if kind in _UNARY | _MESSAGES and node.named_children:
        # `Foo new`, `Foo new: 3`: an instance of Foo.
        selector = "".join(
            mt.node_text(c) for c in node.children if c.type in ("keyword", "unary_identifier")
        )
        if selector in _CONSTRUCTORS:
            made = static_class(mt, node.named_children[0], project)
            if made is not None and made.side == "class":
                return Receiver(made.class_name, "instance")
    return None


# --- scopes and occurrences -----------------------------------------------------------------


def locals_in_scope(
    mt: MethodTree, node: Node | None
) -> list[tuple[str, VariableScope, tuple[int, int]]]:
    """Arguments, temporaries and block arguments visible at `node`, innermost first."""
    found: list[tuple[str, VariableScope, tuple[int, int]]] = []
    current = node
    while current is not None:
        if current.type in ("block", "method_body", "method"):
            for child in current.children:
                if child.type == "block_argument":
                    name, span = block_argument(mt, child)
                    found.append((name, "temporary", span))
                elif child.type == "temporaries":
                    for ident in child.named_children:
                        if ident.type == "identifier":
                            found.append((mt.node_text(ident), "temporary", mt.span(ident)))
                elif current.type == "method" and child.type in _PATTERNS:
                    for ident in child.named_children:
                        if ident.type == "identifier":
                            found.append((mt.node_text(ident), "argument", mt.span(ident)))
        current = current.parent
    return found


def locals_at(mt: MethodTree, doc_offset: int) -> list[tuple[str, VariableScope, tuple[int, int]]]:
    char = mt.from_doc(doc_offset)
    byte = mt.to_byte(char)
    node = mt.tree.root_node.descendant_for_byte_range(byte, byte)
    # Just after `[`... the smallest node may be the block itself or a child of it; either way
    # walking up collects the enclosing scopes.
    return locals_in_scope(mt, node)


# Tree-sitter queries run in C; only their matches are looked at in Python.
_SENDS = Query(
    LANGUAGE,
    """
    (keyword_message) @keyword
    (cascaded_keyword_message) @keyword
    (unary_message (unary_identifier) @word)
    (cascaded_unary_message (unary_identifier) @word)
    (binary_message (binary_operator) @word)
    (cascaded_binary_message (binary_operator) @word)
    (symbol) @symbol
    """,
)
_IDENTIFIERS = Query(LANGUAGE, "(identifier) @name")


def occurrences(mt: MethodTree, kind: TargetKind, name: str) -> list[tuple[int, int]]:
    """Document spans where the method uses `name`: sends and symbols of a selector (the first
    keyword part of a keyword message), or identifiers naming a class or variable."""
    spans: list[tuple[int, int]] = []
    root = mt.tree.root_node
    if kind != "selector":
        for node in QueryCursor(_IDENTIFIERS).captures(root).get("name", []):
            parent = node.parent
            if parent is not None and (parent.type in _PATTERNS or parent.type == "temporaries"):
                continue
            if mt.node_text(node) == name:
                spans.append(mt.span(node))
        return sorted(spans)
    captures = QueryCursor(_SENDS).captures(root)
    first = name.split(":", 1)[0] + ":" if name.endswith(":") else None
    for node in captures.get("keyword", []) if first else []:
        parts = [c for c in node.children if c.type == "keyword"]
        if parts and mt.node_text(parts[0]) == first:
            if "".join(mt.node_text(c) for c in parts) == name:
                spans.append(mt.span(parts[0]))
    for node in captures.get("word", []) if not first else []:
        if mt.node_text(node) == name:
            spans.append(mt.span(node))
    for node in captures.get("symbol", []):
        if _symbol_value(mt.node_text(node)) == name:
            spans.append(mt.span(node))
    return sorted(spans)


def enclosing_keyword_message(
    mt: MethodTree, doc_offset: int, project: ProjectModel
) -> tuple[str, int, Receiver | None] | None:
    """The innermost keyword message around the offset: selector, active part, receiver."""
    char = mt.from_doc(doc_offset)
    byte = mt.to_byte(char)
    node: Node | None = mt.tree.root_node.descendant_for_byte_range(max(0, byte - 1), byte)
    while node is not None:
        if node.type in _MESSAGES:
            parts = [c for c in node.children if c.type == "keyword"]
            if parts and parts[0].start_byte <= byte:
                index = 0
                for i, part in enumerate(parts):
                    if part.start_byte <= byte:
                        index = i
                selector = "".join(mt.node_text(c) for c in parts)
                return selector, index, receiver_of(mt, node, project)
        node = node.parent
    return None


def rank_implementors(
    project: ProjectModel, selector: str, receiver: Receiver | None
) -> list[tuple[str, MethodDef]]:
    """Implementors of `selector`: the receiver's class first, then its superclasses (and the
    traits they use) nearest first, then the rest by class name."""
    found = []
    for ref in ranked_implementor_refs(project, selector, receiver):
        method = project.method(ref)
        if method is not None:
            found.append((ref.path, method))
    return found


def ranked_implementor_refs(
    project: ProjectModel, selector: str, receiver: Receiver | None
) -> list[MethodRef]:
    """`rank_implementors` without loading any file (refs carry class and side)."""
    refs = project.implementor_refs(selector)
    order: dict[str, int] = {}
    if receiver is not None:
        for name in [receiver.class_name, *project.superclass_chain(receiver.class_name)]:
            order.setdefault(name, len(order))
            cls = project.class_named(name) if len(refs) > 1 else None
            for trait in _trait_names(cls.traits if cls is not None else None):
                order.setdefault(trait, len(order))

    def key(ref: MethodRef) -> tuple[int, int, str, str, str, int]:
        if receiver is not None and ref.class_name in order and ref.side == receiver.side:
            return (0, order[ref.class_name], ref.class_name, ref.side, ref.path, ref.number)
        return (1, 0, ref.class_name, ref.side, ref.path, ref.number)

    return sorted(refs, key=key)


def _trait_names(composition: str | None) -> list[str]:
    if not composition:
        return []
    names: list[str] = []
    for word in composition.replace("+", " ").replace("-", " ").split():
        word = word.strip("{}#()'")
        if word[:1].isupper() and word not in ("classTrait",):
            names.append(word)
    return names
