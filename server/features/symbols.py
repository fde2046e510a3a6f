"""Document symbols (classes -> protocols -> methods, class side apart) and workspace symbols."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from lsprotocol import types

from server.features.common import location, lsp_range
from server.project_model import ProjectModel
from smalltalk_grammar.model import ClassDef, MethodDef, Range, SourceFile

if TYPE_CHECKING:
    from server.core import SmalltalkLanguageServer

UNCLASSIFIED = "as yet unclassified"
WORKSPACE_LIMIT = 200
_CLASS_KINDS = {
    "class": types.SymbolKind.Class,
    "trait": types.SymbolKind.Interface,
    "extension": types.SymbolKind.Class,
}


def _union(ranges: Iterable[Range]) -> Range:
    items = list(ranges)
    start = min((r.start for r in items), key=lambda p: (p.line, p.character))
    end = max((r.end for r in items), key=lambda p: (p.line, p.character))
    return Range(start=start, end=end)


def _protocols(methods: list[MethodDef]) -> list[types.DocumentSymbol]:
    groups: dict[str, list[MethodDef]] = {}
    for method in methods:
        groups.setdefault(method.category or UNCLASSIFIED, []).append(method)
    return [
        types.DocumentSymbol(
            name=category,
            kind=types.SymbolKind.Namespace,
            range=lsp_range(_union(m.range for m in group)),
            selection_range=lsp_range(group[0].selector_range),
            children=[_method_symbol(m) for m in group],
        )
        for category, group in groups.items()
    ]


def _method_symbol(method: MethodDef) -> types.DocumentSymbol:
    return types.DocumentSymbol(
        name=method.selector,
        kind=types.SymbolKind.Method,
        range=lsp_range(method.range),
        selection_range=lsp_range(method.selector_range),
    )


def document_symbols(source: SourceFile) -> list[types.DocumentSymbol]:
    """One symbol per class in the file (in order), holding its protocols and methods; the
    class side is a child named `Foo class`. Methods of a class not defined in the file get a
    class symbol of their own; methods with no class (a bare method file) stay top level."""
    by_class: dict[str, list[MethodDef]] = {}
    loose: list[MethodDef] = []
    for method in source.methods:
        if method.class_name:
            by_class.setdefault(method.class_name, []).append(method)
        else:
            loose.append(method)
    defs: dict[str, ClassDef] = {}
    order: list[str] = []
    for defined in source.classes:
        if defined.name not in defs:
            defs[defined.name] = defined
            order.append(defined.name)
    order += [name for name in by_class if name not in defs]
    symbols: list[types.DocumentSymbol] = []
    for name in order:
        cls = defs.get(name)
        methods = by_class.get(name, [])
        instance = [m for m in methods if m.side == "instance"]
        class_side = [m for m in methods if m.side == "class"]
        children = _protocols(instance)
        if class_side:
            children.append(
                types.DocumentSymbol(
                    name=f"{name} class",
                    kind=types.SymbolKind.Class,
                    range=lsp_range(_union(m.range for m in class_side)),
                    selection_range=lsp_range(class_side[0].selector_range),
                    children=_protocols(class_side),
                )
            )
        ranges = [m.range for m in methods] + ([cls.range] if cls is not None else [])
        if cls is not None:
            detail = "extension" if cls.kind == "extension" else cls.superclass or cls.kind
            kind = _CLASS_KINDS.get(cls.kind, types.SymbolKind.Class)
            selection = cls.name_range
        else:
            detail, kind, selection = "extension", types.SymbolKind.Class, methods[0].selector_range
        symbols.append(
            types.DocumentSymbol(
                name=name,
                detail=detail,
                kind=kind,
                range=lsp_range(_union(ranges)),
                selection_range=lsp_range(selection),
                children=children,
            )
        )
    symbols += [_method_symbol(m) for m in loose]
    return symbols


def _score(query: str, pattern: re.Pattern[str] | None, name: str) -> int | None:
    """Lower is better; None if `name` does not match (a case-insensitive subsequence)."""
    if not query:
        return 3
    lowered = name.lower()
    q = query.lower()
    if lowered == q:
        return 0
    if lowered.startswith(q):
        return 1
    if q in lowered:
        return 2
    if pattern is not None and pattern.search(name):
        return 3
    return None


def workspace_symbols(project: ProjectModel, query: str) -> list[types.WorkspaceSymbol]:
    """Classes and selectors whose names fuzzily match the query, best first."""
    query = query.strip()
    pattern = re.compile(".*?".join(map(re.escape, query)), re.IGNORECASE) if query else None
    scored: list[tuple[int, int, str, int, str, types.WorkspaceSymbol]] = []
    for name in project.class_names():
        score = _score(query, pattern, name)
        if score is None:
            continue
        for path, cls in project.class_definitions(name):
            if cls.kind == "extension":
                continue
            symbol = types.WorkspaceSymbol(
                name=name,
                kind=_CLASS_KINDS.get(cls.kind, types.SymbolKind.Class),
                location=location(path, cls.name_range),
                container_name=cls.category,
            )
            scored.append((score, len(name), name, 0, path, symbol))
    for selector in project.selectors():
        score = _score(query, pattern, selector)
        if score is None:
            continue
        for path, method in project.implementors(selector):
            side = " class" if method.side == "class" else ""
            symbol = types.WorkspaceSymbol(
                name=selector,
                kind=types.SymbolKind.Method,
                location=location(path, method.selector_range),
                container_name=f"{method.class_name}{side}",
            )
            scored.append((score, len(selector), selector, 1, symbol.container_name or "", symbol))
    # Ties (one selector, several classes) go by class name, so the order is stable.
    scored.sort(key=lambda item: item[:5])
    return [item[5] for item in scored[:WORKSPACE_LIMIT]]


def setup(ls: SmalltalkLanguageServer) -> None:
    @ls.handler(types.TEXT_DOCUMENT_DOCUMENT_SYMBOL, empty=list)
    def document_symbol(params: types.DocumentSymbolParams) -> list[types.DocumentSymbol]:
        snap = ls.snapshot(params.text_document.uri)
        return document_symbols(snap.source) if snap is not None else []

    @ls.handler(types.WORKSPACE_SYMBOL, empty=list)
    def workspace_symbol(params: types.WorkspaceSymbolParams) -> list[types.WorkspaceSymbol]:
        return workspace_symbols(ls.project, params.query)
