"""Type hierarchy: superclasses and subclasses of a class, the traits it uses (and the users
of a trait), on the instance side or the metaclass side (`Foo class`).

An item's `data` is `{"name": class name, "side": "instance" | "class"}`; the metaclass side
is asked from a class-side method, or on `Foo class`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lsprotocol import types

from server.features import common
from server.features.analysis import _trait_names
from server.project_model import ProjectModel

if TYPE_CHECKING:
    from server.core import SmalltalkLanguageServer


def item(project: ProjectModel, name: str, side: str) -> types.TypeHierarchyItem | None:
    """The item of a class the project defines (its definition), else None."""
    defining = project.defining_definitions(name)
    if not defining:
        return None
    path, cls = defining[0]
    kind = types.SymbolKind.Interface if cls.kind == "trait" else types.SymbolKind.Class
    label = f"{name} class" if side == "class" else name
    detail = f"{cls.kind}, {cls.category}" if cls.category else cls.kind
    return types.TypeHierarchyItem(
        name=label,
        kind=kind,
        uri=common.uri_of(path),
        range=common.lsp_range(cls.range),
        selection_range=common.lsp_range(cls.name_range),
        detail=detail,
        data={"name": name, "side": side},
    )


def prepare(ls: SmalltalkLanguageServer, ctx: common.Context) -> list[types.TypeHierarchyItem]:
    target = ctx.target
    name = None
    side = "instance"
    if target is not None and target.kind == "class":
        name = target.name
        if ctx.snap.text[target.end : target.end + 7].strip().startswith("class"):
            side = "class"
    elif ctx.method is not None and ctx.method.class_name:
        name = ctx.method.class_name
        side = ctx.method.side
    else:
        for cls in ctx.snap.source.classes:
            if cls.range.contains(ctx.position):
                name = cls.name
    if name is None:
        return []
    found = item(ls.project, name, side)
    return [found] if found is not None else []


def _key(data: Any) -> tuple[str, str] | None:
    if isinstance(data, dict) and isinstance(data.get("name"), str):
        return data["name"], "class" if data.get("side") == "class" else "instance"
    return None


def supertypes(project: ProjectModel, name: str, side: str) -> list[types.TypeHierarchyItem]:
    names: list[str] = []
    superclass = project.superclass_of(name)
    if superclass:
        names.append(superclass)
    cls = project.class_named(name)
    if cls is not None:
        names += [t for t in _trait_names(cls.traits) if t not in names]
    return [i for i in (item(project, n, side) for n in names) if i is not None]


def subtypes(project: ProjectModel, name: str, side: str) -> list[types.TypeHierarchyItem]:
    names = list(project.subclasses(name))
    cls = project.class_named(name)
    if cls is not None and cls.kind == "trait":
        for other in project.class_names():
            user = project.class_named(other)
            if user is not None and name in _trait_names(user.traits) and other not in names:
                names.append(other)
    return [i for i in (item(project, n, side) for n in sorted(names)) if i is not None]


def setup(ls: SmalltalkLanguageServer) -> None:
    @ls.handler(types.TEXT_DOCUMENT_PREPARE_TYPE_HIERARCHY, empty=list)
    def on_prepare(params: types.TypeHierarchyPrepareParams) -> list[types.TypeHierarchyItem]:
        ctx = common.context_at(ls, params.text_document.uri, params.position)
        return prepare(ls, ctx) if ctx is not None else []

    @ls.handler(types.TYPE_HIERARCHY_SUPERTYPES, empty=list)
    def on_supertypes(params: types.TypeHierarchySupertypesParams) -> list[types.TypeHierarchyItem]:
        key = _key(params.item.data)
        return supertypes(ls.project, *key) if key is not None else []

    @ls.handler(types.TYPE_HIERARCHY_SUBTYPES, empty=list)
    def on_subtypes(params: types.TypeHierarchySubtypesParams) -> list[types.TypeHierarchyItem]:
        key = _key(params.item.data)
        return subtypes(ls.project, *key) if key is not None else []
