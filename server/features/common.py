"""Shared by the static features: protocol conversions and "what is at this position"."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lsprotocol import types
from pygls.uris import from_fs_path

from server.documents import Snapshot, read_text
from server.features.analysis import MethodTree, Target, method_at, method_tree, target_at
from server.project_model import ProjectModel
from server.stamp_cache import StampCache
from smalltalk_grammar import MethodDef, Position, Range, offset_at, position_at

if TYPE_CHECKING:
    from server.core import SmalltalkLanguageServer

_WORD_CHAR = re.compile(r"[A-Za-z0-9_]")


def lsp_position(pos: Position) -> types.Position:
    return types.Position(line=pos.line, character=pos.character)


def lsp_range(rng: Range) -> types.Range:
    return types.Range(start=lsp_position(rng.start), end=lsp_position(rng.end))


def model_position(pos: types.Position) -> Position:
    return Position(line=max(0, pos.line), character=max(0, pos.character))


_URIS: dict[str, str] = {}


def uri_of(path: str) -> str:
    """The URI of a project-model path (memoised: results list thousands of locations)."""
    found = _URIS.get(path)
    if found is None:
        if path.startswith(("file:", "untitled:")) or "://" in path:
            found = path
        else:
            found = from_fs_path(path) or path
        if len(_URIS) > 100_000:
            _URIS.clear()
        _URIS[path] = found
    return found


def location(path: str, rng: Range) -> types.Location:
    return types.Location(uri=uri_of(path), range=lsp_range(rng))


@dataclass
class Context:
    """A request's position in a document, with what is under it."""

    snap: Snapshot
    offset: int
    position: Position
    method: MethodDef | None
    tree: MethodTree | None
    target: Target | None


def method_tree_of(snap: Snapshot, method: MethodDef) -> MethodTree:
    base = offset_at(snap.text, method.selector_range.start)
    return method_tree(snap.text, snap.source.format, method, base)


def context_at(ls: SmalltalkLanguageServer, uri: str, pos: types.Position) -> Context | None:
    snap = ls.snapshot(uri)
    if snap is None:
        return None
    offset = offset_at(snap.text, model_position(pos))
    position = position_at(snap.text, offset)
    method = method_at(snap.source.methods, position)
    tree = None
    target = None
    if method is not None:
        tree = method_tree_of(snap, method)
        if tree.base <= offset <= tree.base + len(tree.text) + len(tree.escapes) + 1:
            target = target_at(tree, offset, ls.project)
    if target is None:
        target = word_target(snap, offset, ls.project, method)
    return Context(snap, offset, position, method, tree, target)


def word_at(text: str, offset: int) -> tuple[int, int]:
    """The identifier around an offset (a keyword keeps its colon)."""
    start = offset
    while start > 0 and _WORD_CHAR.match(text[start - 1]):
        start -= 1
    end = offset
    while end < len(text) and _WORD_CHAR.match(text[end]):
        end += 1
    if end < len(text) and text[end] == ":" and text[end : end + 2] != ":=" and end > start:
        end += 1
    return start, end


def word_target(
    snap: Snapshot, offset: int, project: ProjectModel, method: MethodDef | None
) -> Target | None:
    """Outside method bodies (class definitions, Tonel method headers): the word under the
    cursor, taken as a class, a variable of the class defined there, or a selector."""
    start, end = word_at(snap.text, offset)
    word = snap.text[start:end]
    if not word or word[0].isdigit():
        return None
    pos = position_at(snap.text, offset)
    classes = snap.source.classes
    for cls in classes:
        if cls.name == word and cls.name_range.contains(pos):
            return Target("class", word, start, end, method, definition=True)
    if word[0].isupper() and (project.class_named(word) or any(c.name == word for c in classes)):
        return Target("class", word, start, end, method)
    for cls in classes:
        if not cls.range.contains(pos):
            continue
        if word in cls.instance_variables or word in cls.class_instance_variables:
            return Target("variable", word, start, end, method, scope="instance")
        if word in cls.class_variables:
            return Target("variable", word, start, end, method, scope="class")
    if project.implementors(word):
        return Target("selector", word, start, end, method)
    return None


# --- texts of other files (references and implementors point into them) -----------------------

_TEXTS: StampCache[str] = StampCache(limit=2048)


def file_text(ls: SmalltalkLanguageServer, path: str) -> str | None:
    """The current text of a file: the open buffer if any, else the file (cached by stamp)."""
    uri = uri_of(path)
    if ls.documents.is_open(uri):
        return ls.document_text(uri)
    return _TEXTS.get(path, read_text)


def file_format(ls: SmalltalkLanguageServer, path: str) -> str:
    source = ls.project.file(path)
    return source.format if source is not None else "method"


def span_range(text: str, start: int, end: int) -> Range:
    return Range(start=position_at(text, start), end=position_at(text, end))
