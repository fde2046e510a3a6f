"""Does a method source parse? The check behind "trim to the longest prefix that parses".

A bare method (pattern and body, as `MethodSpan.before + suggestion + MethodSpan.after` gives
it) parses with tree-sitter-pharo in every source format once the Tonel header and the chunk
escapes are gone. Parsers are per thread: tree-sitter parsers are not thread-safe.
"""

from __future__ import annotations

from smalltalk_grammar.facts import parser


def method_errors(source: str) -> list[tuple[int, int]]:
    """Character ranges of syntax errors in a bare method source; empty if it parses."""
    data = source.encode("utf-8")
    tree = parser().parse(data)
    root = tree.root_node
    if not root.has_error:
        return []
    ranges: list[tuple[int, int]] = []
    stack = [root]
    while stack:
        node = stack.pop()
        if node.is_error or node.is_missing:
            ranges.append((_char_index(data, node.start_byte), _char_index(data, node.end_byte)))
            continue
        if node.has_error:
            stack.extend(node.children)
    return sorted(ranges) or [(0, len(source))]


def _char_index(data: bytes, byte_index: int) -> int:
    return len(data[:byte_index].decode("utf-8", errors="replace"))


def method_parses(source: str) -> bool:
    return not method_errors(source)
