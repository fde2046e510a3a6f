"""Rename of an instance variable (instance or class side) or a class variable: in the class
that declares it and its subclasses, the declaration in the class definition (every format's:
Tonel `#instVars`, chunk `instanceVariableNames:`, FileTree `properties.json`, GNU `| a b |`)
and every read and write in the methods of those classes. Refused when the new name is
already a variable of that hierarchy (or above it), a temporary or argument of one of its
methods, or, for a class variable, a class."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from server.features import common
from server.features.analysis import Target, occurrences
from server.features.rename_support import BATCH, Edits, RenameRefused, Steps
from smalltalk_grammar import offset_at

if TYPE_CHECKING:
    from server.core import SmalltalkLanguageServer

_INSTANCE = re.compile(r"[a-z_]\w*\Z")
_CLASS_VAR = re.compile(r"[A-Z]\w*\Z")


def owner(ls: SmalltalkLanguageServer, ctx: common.Context, target: Target) -> tuple[str, str]:
    """(declaring class, side) of the variable under the cursor: side "class" for a class
    instance variable, "both" for a class variable."""
    if ctx.method is not None:
        start, side = ctx.method.class_name, ctx.method.side
    else:
        here = [c for c in ctx.snap.source.classes if c.range.contains(ctx.position)]
        if not here:
            raise RenameRefused(f"no class declares {target.name} here")
        start = here[0].name
        side = "instance" if target.name in here[0].instance_variables else "class"
    for name in [start, *ls.project.superclass_chain(start)]:
        cls = ls.project.class_named(name)
        if cls is None:
            continue
        if target.scope == "class" and target.name in cls.class_variables:
            return name, "both"
        declared = cls.class_instance_variables if side == "class" else cls.instance_variables
        if target.scope == "instance" and target.name in declared:
            return name, side
    raise RenameRefused(f"no class of this project declares {target.name}")


def hierarchy(ls: SmalltalkLanguageServer, name: str) -> list[str]:
    """The class and all its subclasses."""
    found = [name]
    for current in found:
        found += [s for s in ls.project.subclasses(current) if s not in found]
    return found


def check_field(
    ls: SmalltalkLanguageServer, classes: list[str], old: str, new: str, class_var: bool
) -> None:
    if not (_CLASS_VAR if class_var else _INSTANCE).match(new):
        kind = "class variable" if class_var else "instance variable"
        raise RenameRefused(f"{new!r} is not an {kind} name")
    if class_var and ls.project.class_definitions(new):
        raise RenameRefused(f"{new} is a class")
    for name in [*classes, *ls.project.superclass_chain(classes[0])]:
        cls = ls.project.class_named(name)
        if cls is not None and new in (
            *cls.instance_variables, *cls.class_variables, *cls.class_instance_variables
        ):
            raise RenameRefused(f"{new} is already a variable of {name}")
    for name in classes:
        for _path, method in ls.project.methods_of(name):
            if new in (*method.arguments, *method.temporaries):
                raise RenameRefused(
                    f"{new} is already a temporary or argument of {name}>>{method.selector}"
                )


def field_steps(
    ls: SmalltalkLanguageServer, ctx: common.Context, target: Target, new: str, edits: Edits
) -> Steps:
    """The edits of renaming the variable under the cursor (checked at the first step)."""
    declaring, side = owner(ls, ctx, target)
    classes = hierarchy(ls, declaring)
    check_field(ls, classes, target.name, new, side == "both")
    old = target.name
    for path, cls in ls.project.class_definitions(declaring):
        text = edits.text(path)
        if cls.kind == "extension" or not text:
            continue
        start, end = offset_at(text, cls.range.start), offset_at(text, cls.range.end)
        spans = edits.outside_methods(path, start, end)
        # A class side declared apart: chunk `Foo class instanceVariableNames: 'x'`, GNU
        # `Foo class [ | x | ]`.
        for m in re.finditer(rf"^\s*!?{re.escape(declaring)} class\b[^!\]]*", text, re.M):
            spans += edits.outside_methods(path, m.start(), m.end())
        edits.words(path, spans, old, new, symbols=False)
        # VisualWorks declares a class variable apart: `Foo defineSharedVariable: #Bar`.
        shared = rf"\b{re.escape(declaring)}\s+defineSharedVariable:\s*#({re.escape(old)})\b"
        for m in re.finditer(shared, text):
            edits.add(path, m.start(1), m.end(1), new)
    seen = set(classes)
    index = ls.project.class_reference_refs if side == "both" else (
        ls.project.variable_reference_refs
    )
    refs = [
        r for r in dict.fromkeys(index(old))
        if r.class_name in seen and side in ("both", r.side)
    ]
    for done, ref in enumerate(refs):
        if done % BATCH == 0:
            yield done, len(refs)
        method = ls.project.method(ref)
        tree = edits.tree(ref.path, method) if method is not None else None
        if tree is None or old in (*method.arguments, *method.temporaries):  # type: ignore[union-attr]
            continue
        for start, end in occurrences(tree, "variable", old):
            edits.add(ref.path, start, end, new)
    yield len(refs), len(refs)
