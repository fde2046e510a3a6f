"""Rename (prepareRename + rename): a selector across its implementors and senders (every
keyword part, on any line; `#symbol` literals, so `perform:` with a literal), a class (its
definitions and references), a temporary or an argument (in its method). One WorkspaceEdit
whose changes carry a change annotation the user confirms.

Refused, with the reason: pseudo-variables, a selector the kernel implements (an implementor
on a class the project does not define, or one of the messages every object understands), a
new name that is not a valid name of the same kind or arity, a name that collides (a class
that already implements the new selector, an existing class, a variable in scope). When
several classes implement the selector, its senders cannot be told apart (Smalltalk is
untyped): the annotation says how many implementors are renamed together.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from lsprotocol import types

from server.features import common
from server.features.analysis import (
    MethodTree,
    Target,
    _symbol_value,
    locals_in_scope,
    method_tree,
    occurrences,
)
from server.project_model import MethodRef
from smalltalk_grammar import MethodDef, offset_at

if TYPE_CHECKING:
    from server.core import SmalltalkLanguageServer

ANNOTATION = "smalltalk-rename"
# Messages the kernel implements for every object: renaming them breaks the image.
KERNEL_SELECTORS = frozenset(
    "= == ~= ~~ hash new new: value value: class printOn: printString displayString "
    "initialize yourself isNil notNil ifNil: ifNotNil: ifTrue: ifFalse: ifTrue:ifFalse: "
    "at: at:put: size do: collect: select: reject: inject:into: copy deepCopy error: "
    "perform: perform:with: respondsTo: isKindOf: isMemberOf: subclassResponsibility".split()
)
_UNARY = re.compile(r"[a-zA-Z_]\w*\Z")
_KEYWORD = re.compile(r"(?:[a-zA-Z_]\w*:)+\Z")
_BINARY = re.compile(r"[-+*/\\<>=~@%|&?,]+\Z")
_CLASS = re.compile(r"[A-Z]\w*\Z")
_VARIABLE = re.compile(r"[a-z_]\w*\Z")


class RenameRefused(Exception):
    """The rename cannot be done safely; the message says why."""


def _parts(selector: str) -> list[str]:
    return re.findall(r"[a-zA-Z_]\w*:", selector) if selector.endswith(":") else [selector]


def check_selector(ls: SmalltalkLanguageServer, old: str, new: str) -> None:
    if old in KERNEL_SELECTORS:
        raise RenameRefused(f"#{old} is implemented by the kernel: it cannot be renamed")
    for cls in ls.project.implementor_classes(old):
        if not ls.project.defining_definitions(cls) or all(
            c.kind == "extension" for _, c in ls.project.class_definitions(cls)
        ):
            raise RenameRefused(
                f"#{old} is implemented by {cls}, a class this project does not define"
            )
    valid = (
        _KEYWORD.match(new) if old.endswith(":") else
        _BINARY.match(new) if _BINARY.match(old) else _UNARY.match(new)
    )
    if not valid or len(_parts(new)) != len(_parts(old)):
        raise RenameRefused(f"{new!r} is not a selector of the same kind and arity as #{old}")
    taken = set(ls.project.implementor_classes(new)) & set(ls.project.implementor_classes(old))
    if taken:
        raise RenameRefused(f"#{new} already exists in {', '.join(sorted(taken))}")


def _selector_spans(mt: MethodTree, name: str) -> list[tuple[int, int, str | None]]:
    """Spans to rewrite in one method: each keyword part (replacement index), whole unary or
    binary selectors, and `#symbol` literals (None: the whole symbol)."""
    found: list[tuple[int, int, str | None]] = []
    todo = [mt.tree.root_node]
    while todo:
        node = todo.pop()
        todo.extend(node.children)
        kind = node.type
        if kind in ("keyword_message", "cascaded_keyword_message", "keyword_selector"):
            parts = [c for c in node.children if c.type == "keyword"]
            if "".join(mt.node_text(c) for c in parts) == name:
                found += [(*mt.span(c), str(i)) for i, c in enumerate(parts)]
        elif kind in ("unary_identifier", "binary_operator") and mt.node_text(node) == name:
            parent = node.parent.type if node.parent is not None else ""
            if "message" in parent or parent in ("unary_selector", "binary_selector"):
                found.append((*mt.span(node), "0"))
        elif kind == "symbol" and _symbol_value(mt.node_text(node)) == name:
            found.append((*mt.span(node), None))
    return found


def _tree(ls: SmalltalkLanguageServer, path: str, text: str, method: MethodDef) -> MethodTree:
    base = offset_at(text, method.selector_range.start)
    return method_tree(text, common.file_format(ls, path), method, base)


def _edit(text: str, start: int, end: int, new: str) -> types.AnnotatedTextEdit:
    return types.AnnotatedTextEdit(
        range=common.lsp_range(common.span_range(text, start, end)),
        new_text=new,
        annotation_id=ANNOTATION,
    )


def rename_selector(
    ls: SmalltalkLanguageServer, old: str, new: str
) -> tuple[dict[str, list[types.AnnotatedTextEdit]], int]:
    """Edits per URI, and the number of implementors renamed together."""
    check_selector(ls, old, new)
    new_parts = _parts(new)
    refs: list[MethodRef] = ls.project.implementor_refs(old) + ls.project.sender_refs(old)
    edits: dict[str, list[types.AnnotatedTextEdit]] = {}
    seen: set[tuple[str, int, int]] = set()
    texts: dict[str, str | None] = {}
    for ref in refs:
        method = ls.project.method(ref)
        if method is None:
            continue
        if ref.path not in texts:
            texts[ref.path] = common.file_text(ls, ref.path)
        text = texts[ref.path]
        if not text:
            continue
        for start, end, part in _selector_spans(_tree(ls, ref.path, text, method), old):
            if (ref.path, start, end) in seen:
                continue
            seen.add((ref.path, start, end))
            value = "#" + new if part is None else new_parts[int(part)]
            edits.setdefault(common.uri_of(ref.path), []).append(_edit(text, start, end, value))
    return edits, ls.project.implementor_count(old)


def rename_class(
    ls: SmalltalkLanguageServer, old: str, new: str
) -> dict[str, list[types.AnnotatedTextEdit]]:
    if not _CLASS.match(new):
        raise RenameRefused(f"{new!r} is not a class name")
    if ls.project.class_definitions(new):
        raise RenameRefused(f"a class {new} already exists")
    if not ls.project.defining_definitions(old):
        raise RenameRefused(f"{old} is not defined in this project")
    edits: dict[str, list[types.AnnotatedTextEdit]] = {}
    texts: dict[str, str | None] = {}

    def text_of(path: str) -> str | None:
        if path not in texts:
            texts[path] = common.file_text(ls, path)
        return texts[path]

    for path, cls in ls.project.class_definitions(old):
        text = text_of(path)
        if text:
            start = offset_at(text, cls.name_range.start)
            end = offset_at(text, cls.name_range.end)
            if old in text[start:end]:
                start += text[start:end].index(old)
                edits.setdefault(common.uri_of(path), []).append(
                    _edit(text, start, start + len(old), new)
                )
    for ref in dict.fromkeys(ls.project.class_reference_refs(old)):
        method = ls.project.method(ref)
        text = text_of(ref.path)
        if method is None or not text:
            continue
        for start, end in occurrences(_tree(ls, ref.path, text, method), "class", old):
            edits.setdefault(common.uri_of(ref.path), []).append(_edit(text, start, end, new))
    return edits


def rename_local(ctx: common.Context, target: Target, new: str) -> list[types.AnnotatedTextEdit]:
    if not _VARIABLE.match(new):
        raise RenameRefused(f"{new!r} is not a variable name")
    if ctx.tree is None:
        raise RenameRefused("no method here")
    if any(name == new for name, _s, _d in _all_locals(ctx.tree)):
        raise RenameRefused(f"{new} is already a variable of this method")
    spans = set(occurrences(ctx.tree, "class", target.name))
    if target.declaration is not None:
        spans.add(target.declaration)
    return [_edit(ctx.snap.text, s, e, new) for s, e in sorted(spans)]


def _all_locals(mt: MethodTree) -> list[tuple[str, str, tuple[int, int]]]:
    found: list[tuple[str, str, tuple[int, int]]] = []
    todo = [mt.tree.root_node]
    while todo:
        node = todo.pop()
        todo.extend(node.children)
        if node.type in ("block", "method_body", "method"):
            found += locals_in_scope(mt, node.children[0] if node.children else node)
    return found


def prepare(ctx: common.Context) -> types.PrepareRenamePlaceholder:
    target = ctx.target
    if target is None:
        raise RenameRefused("nothing to rename here")
    if target.kind == "pseudo":
        raise RenameRefused(f"{target.name} is a pseudo-variable: it cannot be renamed")
    if target.kind == "variable" and target.scope not in ("argument", "temporary"):
        raise RenameRefused("renaming instance, class and global variables is not supported yet")
    rng = common.lsp_range(common.span_range(ctx.snap.text, target.start, target.end))
    return types.PrepareRenamePlaceholder(range=rng, placeholder=target.name)


def rename(ls: SmalltalkLanguageServer, ctx: common.Context, new: str) -> types.WorkspaceEdit:
    placeholder = prepare(ctx)
    target = ctx.target
    assert target is not None
    description = f"rename {placeholder.placeholder} to {new}"
    if target.kind == "selector":
        edits, implementors = rename_selector(ls, target.name, new)
        if implementors > 1:
            description += (
                f" in all {implementors} implementors and every sender: senders of one "
                "implementor cannot be told from senders of another"
            )
    elif target.kind == "class":
        edits = rename_class(ls, target.name, new)
    else:
        edits = {common.uri_of(ctx.snap.path): rename_local(ctx, target, new)}
    annotation = types.ChangeAnnotation(
        label=description, needs_confirmation=True, description=description
    )
    changes: list[types.TextDocumentEdit] = [
        types.TextDocumentEdit(
            text_document=types.OptionalVersionedTextDocumentIdentifier(uri=uri, version=None),
            edits=list(file_edits),
        )
        for uri, file_edits in sorted(edits.items())
    ]
    return types.WorkspaceEdit(
        document_changes=list(changes), change_annotations={ANNOTATION: annotation}
    )


def setup(ls: SmalltalkLanguageServer) -> None:
    @ls.handler(types.TEXT_DOCUMENT_PREPARE_RENAME)
    def on_prepare(params: types.PrepareRenameParams) -> types.PrepareRenamePlaceholder | None:
        ctx = common.context_at(ls, params.text_document.uri, params.position)
        if ctx is None:
            return None
        try:
            return prepare(ctx)
        except RenameRefused as err:
            ls.show_message(f"Rename: {err}", types.MessageType.Warning)
            return None

    @ls.handler(types.TEXT_DOCUMENT_RENAME, types.RenameOptions(prepare_provider=True))
    def on_rename(params: types.RenameParams) -> types.WorkspaceEdit | None:
        ctx = common.context_at(ls, params.text_document.uri, params.position)
        if ctx is None:
            return None
        try:
            return rename(ls, ctx, params.new_name)
        except RenameRefused as err:
            ls.show_message(f"Rename: {err}", types.MessageType.Warning)
            return None
