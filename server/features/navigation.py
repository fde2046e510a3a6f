"""Definition, references and implementation.

- definition: a class name goes to its definition; a selector to its implementors, ranked by
  the receiver's statically known class (self, super, a class, a literal), then superclasses;
  a local variable to its declaration, an instance/class variable to the defining class.
- references: senders of a selector (sends, `#symbol` literals, so `perform:` too), or the
  methods that use a class or an instance/class variable, each at the exact token.
- implementation: implementors of a selector; on a class, its subclasses.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from lsprotocol import types

from server.features import common
from server.features.analysis import Target, method_tree, occurrences, rank_implementors
from server.project_model import ProjectModel
from smalltalk_grammar.model import MethodDef
from smalltalk_grammar.text import offset_at

if TYPE_CHECKING:
    from server.lsp import SmalltalkLanguageServer

log = logging.getLogger(__name__)

# Beyond this many methods, references point at the method instead of parsing each one.
EXACT_LIMIT = 2000


def class_locations(project: ProjectModel, name: str) -> list[types.Location]:
    """The definition of a class (or its extensions, when the project does not define it)."""
    defs = project.class_definitions(name)
    defining = [(p, c) for p, c in defs if c.kind != "extension"] or defs
    return [common.location(path, cls.name_range) for path, cls in defining]


def implementor_locations(project: ProjectModel, target: Target) -> list[types.Location]:
    ranked = rank_implementors(project, target.name, target.receiver)
    return [common.location(path, m.selector_range) for path, m in ranked]


def definition(ls: SmalltalkLanguageServer, ctx: common.Context) -> list[types.Location]:
    target = ctx.target
    if target is None:
        return []
    project = ls.project
    if target.kind == "class":
        return class_locations(project, target.name)
    if target.kind == "selector":
        return implementor_locations(project, target)
    if target.kind == "variable":
        if target.declaration is not None:
            rng = common.span_range(ctx.snap.text, *target.declaration)
            return [common.location(ctx.snap.path, rng)]
        owner = _variable_owner(project, ctx, target)
        return class_locations(project, owner) if owner else []
    if target.kind == "pseudo" and ctx.method is not None:
        if target.name == "self":
            return class_locations(project, ctx.method.class_name)
        if target.name == "super":
            chain = project.superclass_chain(ctx.method.class_name)
            return class_locations(project, chain[0]) if chain else []
    return []


def _variable_owner(project: ProjectModel, ctx: common.Context, target: Target) -> str | None:
    """The class (the current one or a superclass) that declares an instance/class variable."""
    start = ctx.method.class_name if ctx.method is not None else None
    if start is None:
        for defined in ctx.snap.source.classes:
            if defined.range.contains(ctx.position):
                start = defined.name
    if start is None:
        return None
    for name in [start, *project.superclass_chain(start)]:
        cls = project.class_named(name)
        if cls is None:
            continue
        names = cls.instance_variables + cls.class_variables + cls.class_instance_variables
        if target.name in names:
            return name
    return start


def _users(
    project: ProjectModel, ctx: common.Context, target: Target
) -> list[tuple[str, MethodDef]]:
    if target.kind == "selector":
        return project.senders(target.name)
    if target.kind == "class":
        return project.class_references(target.name)
    if target.kind == "variable" and target.scope in ("instance", "class"):
        owner = _variable_owner(project, ctx, target)
        if owner is None:
            return []
        family = {owner, *_all_subclasses(project, owner)}
        return [
            (p, m) for p, m in project.variable_references(target.name) if m.class_name in family
        ] + [(p, m) for p, m in project.class_references(target.name) if m.class_name in family]
    return []


def _all_subclasses(project: ProjectModel, name: str) -> set[str]:
    found: set[str] = set()
    todo = [name]
    while todo:
        for sub in project.subclasses(todo.pop()):
            if sub not in found:
                found.add(sub)
                todo.append(sub)
    return found


def references(
    ls: SmalltalkLanguageServer, ctx: common.Context, include_declaration: bool
) -> list[types.Location]:
    target = ctx.target
    if target is None or target.kind == "pseudo":
        return []
    project = ls.project
    if target.kind == "variable" and target.scope in ("argument", "temporary"):
        return _local_references(ctx, target)
    found: list[types.Location] = []
    if include_declaration:
        if target.kind == "selector":
            found += implementor_locations(project, target)
        elif target.kind == "class":
            found += class_locations(project, target.name)
    users = _users(project, ctx, target)
    kind = "selector" if target.kind == "selector" else "class"
    texts: dict[str, str | None] = {}
    for count, (path, method) in enumerate(users):
        if count >= EXACT_LIMIT:
            found.append(common.location(path, method.selector_range))
            continue
        if path not in texts:
            texts[path] = common.file_text(ls, path)
        text = texts[path]
        spans = _method_occurrences(ls, path, text, method, kind, target.name) if text else []
        if not spans:
            found.append(common.location(path, method.selector_range))
        for start, end in spans:
            found.append(common.location(path, common.span_range(text or "", start, end)))
    return found


def _method_occurrences(
    ls: SmalltalkLanguageServer, path: str, text: str, method: MethodDef, kind: str, name: str
) -> list[tuple[int, int]]:
    base = offset_at(text, method.selector_range.start)
    if method.end_offset > len(text) or not text.startswith(method.selector[:1], base):
        return []  # the text changed since this method was indexed
    tree = method_tree(text, common.file_format(ls, path), method, base)
    return occurrences(tree, "selector" if kind == "selector" else "class", name)


def _local_references(ctx: common.Context, target: Target) -> list[types.Location]:
    if ctx.tree is None:
        return []
    spans = occurrences(ctx.tree, "class", target.name)
    if target.declaration is not None and target.declaration not in spans:
        spans.insert(0, target.declaration)
    text = ctx.snap.text
    return [common.location(ctx.snap.path, common.span_range(text, s, e)) for s, e in spans]


def implementation(ls: SmalltalkLanguageServer, ctx: common.Context) -> list[types.Location]:
    target = ctx.target
    if target is None:
        return []
    if target.kind == "selector":
        return implementor_locations(ls.project, target)
    if target.kind == "class":
        found: list[types.Location] = []
        for sub in sorted(_all_subclasses(ls.project, target.name)):
            found += class_locations(ls.project, sub)
        return found
    return []


def setup(ls: SmalltalkLanguageServer) -> None:
    @ls.handler(types.TEXT_DOCUMENT_DEFINITION, empty=list)
    def on_definition(params: types.DefinitionParams) -> list[types.Location]:
        ctx = common.context_at(ls, params.text_document.uri, params.position)
        return definition(ls, ctx) if ctx is not None else []

    @ls.handler(types.TEXT_DOCUMENT_REFERENCES, empty=list)
    def on_references(params: types.ReferenceParams) -> list[types.Location]:
        ctx = common.context_at(ls, params.text_document.uri, params.position)
        if ctx is None:
            return []
        return references(ls, ctx, params.context.include_declaration)

    @ls.handler(types.TEXT_DOCUMENT_IMPLEMENTATION, empty=list)
    def on_implementation(params: types.ImplementationParams) -> list[types.Location]:
        ctx = common.context_at(ls, params.text_document.uri, params.position)
        return implementation(ls, ctx) if ctx is not None else []
