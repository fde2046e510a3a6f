"""Rename of a class: its definitions and extensions, the class definitions that name it (a
subclass's superclass, a trait user's composition), its methods' headers, every reference in
methods, and the files named after it: Tonel's `Foo.class.st` / `Foo.extension.st` /
`Foo.trait.st` and FileTree's `Foo.class/` (`.extension/`, `.trait/`) folders."""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

from server.features.analysis import _trait_names, occurrences
from server.features.rename_support import BATCH, Edits, RenameRefused, Steps
from smalltalk_grammar.filetree import method_location

if TYPE_CHECKING:
    from server.core import SmalltalkLanguageServer

CLASS_NAME = re.compile(r"[A-Z]\w*\Z")
_TONEL_FILE = re.compile(r"(?P<name>\w+)(?P<kind>\.(?:class|extension|trait)\.st)\Z")
_FILETREE_DIR = re.compile(r"(?P<name>\w+)(?P<kind>\.(?:class|extension|trait))\Z")


def check_class(ls: SmalltalkLanguageServer, old: str, new: str) -> None:
    if not CLASS_NAME.match(new):
        raise RenameRefused(f"{new!r} is not a class name")
    if ls.project.class_definitions(new):
        raise RenameRefused(f"a class {new} already exists")
    if not ls.project.defining_definitions(old):
        raise RenameRefused(f"{old} is not defined in this project")


def class_steps(ls: SmalltalkLanguageServer, old: str, new: str, edits: Edits) -> Steps:
    """The edits of renaming class `old` (checked by `check_class`) to `new`."""
    # The files that name the class outside methods: its definitions and extensions, its
    # methods' headers (Tonel `Foo >> bar`, chunk `!Foo methodsFor:`, GNU `Foo class >> bar`),
    # its subclasses' definitions. FileTree method files name it only in their folder.
    paths = [p for p, _c in ls.project.class_definitions(old)]
    paths += [p for p, _m in ls.project.methods_of(old) if method_location(p) is None]
    for sub in ls.project.subclasses(old) + trait_users(ls, old):
        paths += [p for p, _c in ls.project.class_definitions(sub)]
    for path in dict.fromkeys(paths):
        edits.words(path, edits.outside_methods(path), old, new, symbols=True)
    refs = list(dict.fromkeys(ls.project.class_reference_refs(old)))
    for done, ref in enumerate(refs):
        if done % BATCH == 0:
            yield done, len(refs)
        method = ls.project.method(ref)
        tree = edits.tree(ref.path, method) if method is not None else None
        if tree is not None:
            for start, end in occurrences(tree, "class", old):
                edits.add(ref.path, start, end, new)
    yield len(refs), len(refs)


def trait_users(ls: SmalltalkLanguageServer, name: str) -> list[str]:
    """The classes and traits whose composition names trait `name` (none if not a trait)."""
    if all(c.kind != "trait" for _p, c in ls.project.class_definitions(name)):
        return []
    users = []
    for other in ls.project.class_names():
        cls = ls.project.class_named(other)
        if cls is not None and other != name and name in _trait_names(cls.traits):
            users.append(other)
    return users


def file_renames(ls: SmalltalkLanguageServer, old: str, new: str) -> list[tuple[str, str]]:
    """(old path, new path) of the files and folders named after the class: Tonel files and
    FileTree class folders of its definitions and extensions, when the name is free."""
    moves: dict[str, str] = {}
    for path, _cls in ls.project.class_definitions(old):
        folder, name = os.path.split(path)
        tonel = _TONEL_FILE.match(name)
        if tonel and tonel["name"] == old:
            moves[path] = os.path.join(folder, new + tonel["kind"])
            continue
        parent, class_dir = os.path.split(folder)
        tree = _FILETREE_DIR.match(class_dir)
        if tree and tree["name"] == old:
            moves[folder] = os.path.join(parent, new + tree["kind"])
    return [(a, b) for a, b in sorted(moves.items()) if not os.path.exists(b)]
