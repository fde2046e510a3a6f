"""Rename (prepareRename + rename): a selector across its implementors and senders (every
keyword part, on any line; `#symbol` literals, so `perform:` with a literal), a class
(server.features.rename_class: its definitions, references, and its files when the client can
rename files), an instance or class variable (server.features.rename_fields: in its class and
subclasses), a temporary or an argument (in its method). One WorkspaceEdit whose changes carry
a change annotation the user confirms. A rename touching many methods reports `$/progress`
and ends at once on `$/cancelRequest` (RequestCancelled, no edit): its steps run on a thread
(server.features.rename_support), the event loop stays free to read the cancel.

Refused, with the reason: pseudo-variables, a selector the kernel implements (an implementor
on a class the project does not define, or one of the messages every object understands), a
new name that is not a valid name of the same kind or arity, a name that collides (a class
that already implements the new selector, an existing class, a variable in scope). When
several classes implement the selector, its senders cannot be told apart (Smalltalk is
untyped): the annotation says how many implementors are renamed together.
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lsprotocol import types

from server.features import common, rename_class, rename_fields
from server.features.analysis import MethodTree, Target, _symbol_value, locals_in_scope, occurrences
from server.features.rename_support import (
    ANNOTATION,
    BATCH,
    Edits,
    RenameRefused,
    Steps,
    run,
)
from server.project_model import MethodRef

if TYPE_CHECKING:
    from server.core import SmalltalkLanguageServer

__all__ = ["ANNOTATION", "RenameRefused", "prepare", "rename", "setup"]

# Messages the kernel implements for every object: renaming them breaks the image.
KERNEL_SELECTORS = frozenset(
    "= == ~= ~~ hash new new: value value: class printOn: printString displayString "
    "initialize yourself isNil notNil ifNil: ifNotNil: ifTrue: ifFalse: ifTrue:ifFalse: "
    "at: at:put: size do: collect: select: reject: inject:into: copy deepCopy error: "
    "perform: perform:with: respondsTo: isKindOf: isMemberOf: subclassResponsibility".split()
)
# A rename looking at more methods than this reports `$/progress`.
PROGRESS_FROM = 200
_UNARY = re.compile(r"[a-zA-Z_]\w*\Z")
_KEYWORD = re.compile(r"(?:[a-zA-Z_]\w*:)+\Z")
_BINARY = re.compile(r"[-+*/\\<>=~@%|&?,]+\Z")
_VARIABLE = re.compile(r"[a-z_]\w*\Z")
FILES_KEEP_NAMES = "the client cannot rename files: the class's files keep their names"
FOLDERS_NEEDED = (
    "FileTree takes a class's name from its folder, and the client cannot rename folders "
    "(workspace.workspaceEdit.resourceOperations without rename)"
)


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


def selector_refs(ls: SmalltalkLanguageServer, old: str) -> list[MethodRef]:
    return ls.project.implementor_refs(old) + ls.project.sender_refs(old)


def selector_steps(ls: SmalltalkLanguageServer, old: str, new: str, edits: Edits) -> Steps:
    """The edits of renaming selector `old` (checked by `check_selector`) to `new`."""
    new_parts = _parts(new)
    refs = selector_refs(ls, old)
    for done, ref in enumerate(refs):
        if done % BATCH == 0:
            yield done, len(refs)
        method = ls.project.method(ref)
        tree = edits.tree(ref.path, method) if method is not None else None
        if tree is None:
            continue
        for start, end, part in _selector_spans(tree, old):
            edits.add(ref.path, start, end, "#" + new if part is None else new_parts[int(part)])
    yield len(refs), len(refs)


def rename_local(ctx: common.Context, target: Target, new: str, edits: Edits) -> None:
    if not _VARIABLE.match(new):
        raise RenameRefused(f"{new!r} is not a variable name")
    if ctx.tree is None:
        raise RenameRefused("no method here")
    if any(name == new for name, _s, _d in _all_locals(ctx.tree)):
        raise RenameRefused(f"{new} is already a variable of this method")
    spans = set(occurrences(ctx.tree, "class", target.name))
    if target.declaration is not None:
        spans.add(target.declaration)
    for s, e in sorted(spans):
        edits.add(ctx.snap.path, s, e, new)


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
    if target.kind == "variable" and target.scope == "global":
        raise RenameRefused(f"{target.name} is not declared in this project")
    rng = common.lsp_range(common.span_range(ctx.snap.text, target.start, target.end))
    return types.PrepareRenamePlaceholder(range=rng, placeholder=target.name)


@dataclass
class Plan:
    """A rename being computed: `steps` fills `edits` (and may refuse); then `edit()`."""

    description: str
    edits: Edits
    steps: Steps
    size: int = 0
    # (old path, new path) of files and folders to rename after the text edits.
    moves: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def edit(self) -> types.WorkspaceEdit:
        annotation = types.ChangeAnnotation(
            label=self.description, needs_confirmation=True, description=self.description
        )
        changes: list[types.TextDocumentEdit | types.RenameFile] = [
            types.TextDocumentEdit(
                text_document=types.OptionalVersionedTextDocumentIdentifier(uri=uri, version=None),
                edits=list(file_edits),
            )
            for uri, file_edits in sorted(self.edits.by_uri.items())
        ]
        changes += [
            types.RenameFile(
                old_uri=common.uri_of(a), new_uri=common.uri_of(b), annotation_id=ANNOTATION
            )
            for a, b in self.moves
        ]
        return types.WorkspaceEdit(
            document_changes=list(changes), change_annotations={ANNOTATION: annotation}
        )


def plan(
    ls: SmalltalkLanguageServer, ctx: common.Context, new: str, rename_files: bool = False
) -> Plan:
    """What renaming the target under the cursor to `new` takes (refusals of the target at
    once, those of the new name when the steps run)."""
    placeholder = prepare(ctx)
    target = ctx.target
    assert target is not None
    edits = Edits(ls)
    description = f"rename {placeholder.placeholder} to {new}"
    if target.kind == "selector":
        implementors = ls.project.implementor_count(target.name)
        if implementors > 1:
            description += (
                f" in all {implementors} implementors and every sender: senders of one "
                "implementor cannot be told from senders of another"
            )
        check_selector(ls, target.name, new)
        size = len(selector_refs(ls, target.name))
        return Plan(description, edits, selector_steps(ls, target.name, new, edits), size)
    if target.kind == "class":
        rename_class.check_class(ls, target.name, new)
        found = Plan(description, edits, rename_class.class_steps(ls, target.name, new, edits))
        found.size = len(ls.project.class_reference_refs(target.name))
        moves = rename_class.file_renames(ls, target.name, new)
        if moves and rename_files:
            found.moves = moves
            found.description += ", and the files named after it: " + ", ".join(
                f"{os.path.basename(a)} -> {os.path.basename(b)}" for a, b in moves
            )
        elif any(not a.endswith(".st") for a, _b in moves):
            raise RenameRefused(FOLDERS_NEEDED)
        elif moves:
            found.notes.append(FILES_KEEP_NAMES)
        return found
    if target.scope in ("instance", "class"):
        steps = rename_fields.field_steps(ls, ctx, target, new, edits)
        return Plan(description, edits, steps)
    rename_local(ctx, target, new, edits)
    return Plan(description, edits, iter(()))


def rename(
    ls: SmalltalkLanguageServer, ctx: common.Context, new: str, rename_files: bool = False
) -> types.WorkspaceEdit:
    """The whole rename at once (no progress, no cancellation)."""
    found = plan(ls, ctx, new, rename_files)
    run(found.steps)
    return found.edit()


def can_rename_files(ls: SmalltalkLanguageServer) -> bool:
    try:
        edit = ls.client_capabilities.workspace.workspace_edit  # type: ignore[union-attr]
    except AttributeError:
        return False
    kinds = (edit.resource_operations or []) if edit is not None else []
    return edit is not None and bool(edit.document_changes) and (
        types.ResourceOperationKind.Rename in kinds
    )


async def run_reporting(ls: SmalltalkLanguageServer, found: Plan, token: object) -> None:
    """Run a plan's steps; one that looks at many methods runs on a thread and reports
    `$/progress`, while the event loop stays free to read `$/cancelRequest`: then the request
    ends at once (CancelledError) and the thread stops at its next step. The progress is
    cancellable too (VS Code shows a Cancel button): the same end."""
    if found.size < PROGRESS_FROM:
        run(found.steps)
        return
    stop = threading.Event()
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()

    def cancelled() -> None:  # window/workDoneProgress/cancel: as $/cancelRequest
        if task is not None:
            loop.call_soon_threadsafe(task.cancel)

    title = found.description.split(" in all ")[0]
    with ls.progress(title, token=token, on_cancel=cancelled) as work:

        def steps() -> None:
            for done, total in found.steps:
                if stop.is_set():
                    return
                work.report(f"{done} of {total} methods", 100 * done // max(1, total))

        try:
            await asyncio.to_thread(steps)
        except asyncio.CancelledError:
            stop.set()
            raise


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
    async def on_rename(params: types.RenameParams) -> types.WorkspaceEdit | None:
        ctx = common.context_at(ls, params.text_document.uri, params.position)
        if ctx is None:
            return None
        try:
            found = plan(ls, ctx, params.new_name, can_rename_files(ls))
            await run_reporting(ls, found, params.work_done_token)
        except RenameRefused as err:
            ls.show_message(f"Rename: {err}", types.MessageType.Warning)
            return None
        for note in found.notes:
            ls.show_message(f"Rename: {note}", types.MessageType.Info)
        return found.edit()
