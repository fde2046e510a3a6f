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
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING

from lsprotocol import types

from server.features import common
from server.features.analysis import Target, method_tree, occurrences, ranked_implementor_refs
from server.project_model import MethodRef, ProjectModel
from smalltalk_grammar import MethodDef, offset_at

if TYPE_CHECKING:
    from server.core import SmalltalkLanguageServer

log = logging.getLogger(__name__)

# Beyond this many methods, references point at the method's selector instead of the exact
# tokens (which means loading and parsing each method).
EXACT_LIMIT = 300
# Senders of `new` or `ifTrue:` in a large project are thousands of locations that take tens
# of milliseconds to gather; they are kept until the project model next changes.
_CACHED_RESULTS = 32
_results: OrderedDict[tuple[int, int, str, str, bool], list[types.Location]] = OrderedDict()
_results_lock = threading.Lock()


def class_locations(project: ProjectModel, name: str) -> list[types.Location]:
    """The definition of a class (or its extensions, when the project does not define it)."""
    defining = project.defining_definitions(name)
    return [common.location(path, cls.name_range) for path, cls in defining]


def implementor_locations(project: ProjectModel, target: Target) -> list[types.Location]:
    ranked = ranked_implementor_refs(project, target.name, target.receiver)
    return [ref_location(ref) for ref in ranked]


def ref_location(ref: MethodRef) -> types.Location:
    """The selector of a method known from the summaries (no file is loaded)."""
    line, char, end_line, end_char = ref.selector_range
    return types.Location(
        uri=common.uri_of(ref.path),
        range=types.Range(
            start=types.Position(line=line, character=char),
            end=types.Position(line=end_line, character=end_char),
        ),
    )


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


def _users(project: ProjectModel, ctx: common.Context, target: Target) -> list[MethodRef]:
    if target.kind == "selector":
        return project.sender_refs(target.name)
    if target.kind == "class":
        return project.class_reference_refs(target.name)
    if target.kind == "variable" and target.scope in ("instance", "class"):
        owner = _variable_owner(project, ctx, target)
        if owner is None:
            return []
        family = {owner, *_all_subclasses(project, owner)}
        refs = project.variable_reference_refs(target.name)
        refs += project.class_reference_refs(target.name)
        return [ref for ref in refs if ref.class_name in family]
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
    if target.kind not in ("selector", "class"):
        return _gather_references(ls, ctx, target, include_declaration)
    # The generation is read first: a change while gathering makes the entry unreachable.
    key = (id(project), project.generation, target.kind, target.name, include_declaration)
    with _results_lock:
        cached = _results.get(key)
        if cached is not None:
            _results.move_to_end(key)
            return list(cached)
    found = _gather_references(ls, ctx, target, include_declaration)
    with _results_lock:
        _results[key] = found
        if len(_results) > _CACHED_RESULTS:
            _results.popitem(last=False)
    return list(found)


def _gather_references(
    ls: SmalltalkLanguageServer, ctx: common.Context, target: Target, include_declaration: bool
) -> list[types.Location]:
    project = ls.project
    found: list[types.Location] = []
    if include_declaration:
        if target.kind == "selector":
            found += implementor_locations(project, target)
        elif target.kind == "class":
            found += class_locations(project, target.name)
    users = _users(project, ctx, target)
    kind = "selector" if target.kind == "selector" else "class"
    texts: dict[str, str | None] = {}
    for count, ref in enumerate(users):
        method = project.method(ref) if count < EXACT_LIMIT else None
        if method is None:
            found.append(ref_location(ref))
            continue
        if ref.path not in texts:
            texts[ref.path] = common.file_text(ls, ref.path)
        text = texts[ref.path]
        spans = _method_occurrences(ls, ref.path, text, method, kind, target.name) if text else []
        if not spans:
            found.append(ref_location(ref))
        for start, end in spans:
            found.append(common.location(ref.path, common.span_range(text or "", start, end)))
    found.sort(key=_location_key)
    return found


def _location_key(loc: types.Location) -> tuple[str, int, int]:
    return (loc.uri, loc.range.start.line, loc.range.start.character)


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
