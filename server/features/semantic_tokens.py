"""Semantic tokens (full document) for method bodies: selectors, classes, arguments,
temporaries, instance and class variables, pseudo-variables and literals, from the same
tree-sitter view of each method as the other features."""

from __future__ import annotations

from collections.abc import Container
from typing import TYPE_CHECKING

from lsprotocol import types
from tree_sitter import Query, QueryCursor

from server import positions
from server.features import common
from server.features.analysis import LANGUAGE, PSEUDO_VARIABLES, MethodTree
from server.project_model import ProjectModel
from smalltalk_grammar import position_at

if TYPE_CHECKING:
    from server.core import SmalltalkLanguageServer
    from server.documents import Snapshot

TOKEN_TYPES = [
    "class",
    "method",
    "parameter",
    "variable",
    "property",
    "keyword",
    "string",
    "number",
    "comment",
    "operator",
]
TOKEN_MODIFIERS = ["declaration", "static"]
LEGEND = types.SemanticTokensLegend(token_types=TOKEN_TYPES, token_modifiers=TOKEN_MODIFIERS)
_TYPE = {name: i for i, name in enumerate(TOKEN_TYPES)}
DECLARATION, STATIC = 1, 2
_PATTERNS = ("keyword_selector", "unary_selector", "binary_selector")

_TOKENS = Query(
    LANGUAGE,
    """
    (keyword) @method
    (unary_identifier) @method
    (binary_operator) @operator
    (identifier) @identifier
    (block_argument) @parameter
    [(self) (super) (true) (false) (nil) (thisContext)] @keyword
    (string) @string
    (symbol) @string
    (character) @string
    (number) @number
    (comment) @comment
    """,
)

# (start offset, end offset, type, modifiers) in document characters.
Token = tuple[int, int, int, int]


def method_tokens(tree: MethodTree, project: ProjectModel) -> list[Token]:
    method = tree.method
    fields: dict[str, int] = {}
    for name in [method.class_name, *project.superclass_chain(method.class_name)]:
        cls = project.class_named(name) if name else None
        if cls is None:
            continue
        own = cls.class_instance_variables if method.side == "class" else cls.instance_variables
        for var in own:
            fields.setdefault(var, 0)
        for var in cls.class_variables:
            fields.setdefault(var, STATIC)
    arguments = set(method.arguments)
    found: list[Token] = []
    for capture, nodes in QueryCursor(_TOKENS).captures(tree.tree.root_node).items():
        for node in nodes:
            start, end = tree.span(node)
            if capture == "identifier":
                kind, modifiers = _identifier(tree.node_text(node), node, arguments, fields)
            elif capture == "parameter":
                start += len(tree.node_text(node)) - len(tree.node_text(node).lstrip(":"))
                kind, modifiers = "parameter", DECLARATION
            else:
                kind, modifiers = capture, 0
                if capture == "keyword" and node.type not in PSEUDO_VARIABLES:
                    continue
                parent = node.parent
                if capture == "method" and parent is not None and parent.type in _PATTERNS:
                    modifiers = DECLARATION
            found.append((start, end, _TYPE[kind], modifiers))
    return found


def _identifier(name: str, node, arguments: set[str], fields: dict[str, int]) -> tuple[str, int]:  # type: ignore[no-untyped-def]
    parent = node.parent.type if node.parent is not None else ""
    if parent in ("keyword_selector", "binary_selector"):
        return "parameter", DECLARATION
    if parent == "temporaries":
        return "variable", DECLARATION
    if name in arguments:
        return "parameter", 0
    if name in fields:
        return "property", fields[name]
    if name[:1].isupper():
        return "class", 0
    return "variable", 0


def encode(text: str, tokens: list[Token], wide_lines: Container[int] = ()) -> list[int]:
    """LSP's relative encoding; tokens spanning lines are cut at each line end. On
    `wide_lines` columns and lengths count utf-16 code units (see server.positions)."""
    data: list[int] = []
    last_line = last_char = 0
    for start, end, kind, modifiers in sorted(set(tokens)):
        while start < end:
            pos = position_at(text, start)
            line_end = start
            while line_end < end and text[line_end] not in "\r\n":
                line_end += 1
            if line_end > start:
                column, length = pos.character, line_end - start
                if pos.line in wide_lines:
                    line_start = start - pos.character
                    column = positions.utf16_length(text[line_start:start])
                    length = positions.utf16_length(text[start:line_end])
                delta_line = pos.line - last_line
                delta_char = column - last_char if delta_line == 0 else column
                data += [delta_line, delta_char, length, kind, modifiers]
                last_line, last_char = pos.line, column
            start = line_end
            while start < end and text[start] in "\r\n":
                start += 1
    return data


def document_tokens(snap: Snapshot, project: ProjectModel, utf16: bool = False) -> list[int]:
    tokens: list[Token] = []
    for method in snap.source.methods:
        tree = common.method_tree_of(snap, method)
        tokens += method_tokens(tree, project)
    # The parse knows the lines with characters outside the BMP; only utf-16 counts them.
    return encode(snap.text, tokens, set(snap.source.wide_lines) if utf16 else ())


def setup(ls: SmalltalkLanguageServer) -> None:
    @ls.handler(types.TEXT_DOCUMENT_SEMANTIC_TOKENS_FULL, LEGEND)
    def on_tokens(params: types.SemanticTokensParams) -> types.SemanticTokens | None:
        snap = ls.snapshot(params.text_document.uri)
        if snap is None:
            return None
        utf16 = ls.workspace.position_encoding == positions.UTF16
        return types.SemanticTokens(data=document_tokens(snap, ls.project, utf16))
