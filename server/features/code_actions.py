"""Code actions from the models (wiring only; the actions are plain functions in
server.actions).

`textDocument/codeAction` answers at once with the actions that fit the range (a method, a
class, a comment, a selection), without running any model; `codeAction/resolve` runs the
chosen one on the actions' worker, with `$/progress` counting tokens (cancellable, and
`$/cancelRequest` stops the model too). Code arrives as a WorkspaceEdit; explanations and
designs are notes under `.smalltalk-lsp/notes/` that the action's command opens with
`window/showDocument` and also answers as text (for clients without showDocument). Clients
without `codeAction/resolve` get a command that runs the action and applies its edit.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lsprotocol import types
from pydantic import BaseModel, ValidationError
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams
from pygls.uris import from_fs_path, to_fs_path

from server.actions import (
    ACTION_KINDS,
    KIND_PREFIX,
    TITLES,
    ActionCancelled,
    ActionError,
    ActionInput,
    ActionKind,
    ActionOptions,
    ActionResult,
    EditResult,
    NoteResult,
    Run,
    offered,
    run_action,
    site_at,
)
from server.actions.formats import CodeEdit
from server.actions.notes import read_note
from server.engine.types import Role
from server.features import common
from server.lora.manager import AdapterSelection
from smalltalk_grammar.text import offset_at, position_at

if TYPE_CHECKING:
    from server.core import SmalltalkLanguageServer

log = logging.getLogger(__name__)

COMMAND_SHOW = "smalltalk.actions.show"
COMMAND_RUN = "smalltalk.actions.run"
CODE_ACTION_KINDS = [KIND_PREFIX + kind for kind in ACTION_KINDS]
# LSP's RequestFailed: the request was valid but could not be carried out.
REQUEST_FAILED = -32803
CONTEXT_TOKENS = 400
_PROGRESS_EVERY_S = 0.2


class ActionData(BaseModel):
    """What a code action carries from `codeAction` to `codeAction/resolve`."""

    kind: ActionKind
    uri: str
    range: list[int]  # start line, start character, end line, end character
    version: int | None = None


# --- offering ---------------------------------------------------------------------------------


def _version(ls: SmalltalkLanguageServer, uri: str) -> int | None:
    if not ls.documents.is_open(uri):
        return None
    try:
        return ls.workspace.get_text_document(uri).version
    except Exception:
        return None


def _wanted(kind: str, only: list[str] | None) -> bool:
    if not only:
        return True
    return any(kind == o or kind.startswith(o + ".") for o in only)


def _client_resolves(ls: SmalltalkLanguageServer) -> bool:
    """Whether the client calls codeAction/resolve. VS Code lists only `edit` as lazy, yet
    runs the command of a resolved action too; Neovim resolves an action with neither."""
    try:
        support = ls.client_capabilities.text_document.code_action.resolve_support  # type: ignore[union-attr]
    except AttributeError:
        return False
    return support is not None


def code_actions(
    ls: SmalltalkLanguageServer, params: types.CodeActionParams
) -> list[types.CodeAction]:
    uri = params.text_document.uri
    snap = ls.snapshot(uri)
    if snap is None:
        return []
    rng = params.range
    start = offset_at(snap.text, common.model_position(rng.start))
    end = offset_at(snap.text, common.model_position(rng.end))
    site = site_at(snap.source, snap.text, start, end)
    only = [str(k) for k in params.context.only] if params.context.only else None
    resolvable = _client_resolves(ls)
    version = _version(ls, uri)
    actions = []
    for kind, reason in offered(site).items():
        code_kind = KIND_PREFIX + kind
        if not _wanted(code_kind, only):
            continue
        data = ActionData(
            kind=kind,
            uri=uri,
            range=[rng.start.line, rng.start.character, rng.end.line, rng.end.character],
            version=version,
        ).model_dump()
        action = types.CodeAction(title=TITLES[kind], kind=code_kind, data=data)
        if reason:
            action.disabled = types.CodeActionDisabled(reason=reason)
        elif not resolvable:
            action.command = types.Command(
                title=TITLES[kind], command=COMMAND_RUN, arguments=[data]
            )
        actions.append(action)
    return actions


# --- running ----------------------------------------------------------------------------------


class _Progress:
    """A cancellable `$/progress` report of one action, usable from the worker thread."""

    def __init__(self, ls: SmalltalkLanguageServer, title: str) -> None:
        self.ls = ls
        self.title = title
        self.token = f"smalltalk-lsp/action/{uuid.uuid4()}"
        self.enabled = ls.client_supports_progress()
        self.on_cancel: list[Any] = []
        self._last = 0.0
        self._lock = threading.Lock()

    async def begin(self) -> None:
        if not self.enabled:
            return
        progress = self.ls.work_done_progress
        try:
            await progress.create_async(self.token)
        except Exception as err:  # a client may refuse; the action still runs
            log.debug("progress not created: %s", err)
            self.enabled = False
            return
        future = progress.tokens.get(self.token)
        if future is not None:
            future.add_done_callback(self._done)
        begin = types.WorkDoneProgressBegin(title=self.title, cancellable=True, message="starting")
        progress.begin(self.token, begin)

    def _done(self, future: Any) -> None:
        if future.cancelled():  # window/workDoneProgress/cancel
            for callback in list(self.on_cancel):
                callback()

    def report(self, tokens: int, message: str) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        with self._lock:
            if now - self._last < _PROGRESS_EVERY_S:
                return
            self._last = now
        value = types.WorkDoneProgressReport(message=message)
        self.ls.call_threadsafe(self.ls.work_done_progress.report, self.token, value)

    def end(self, message: str) -> None:
        if not self.enabled:
            return
        progress = self.ls.work_done_progress
        progress.end(self.token, types.WorkDoneProgressEnd(message=message))
        progress.tokens.pop(self.token, None)


def _failed(message: str) -> JsonRpcException:
    return JsonRpcException(message=message, code=REQUEST_FAILED)


def action_input(ls: SmalltalkLanguageServer, data: ActionData) -> ActionInput:
    """The action's input from the document as it is now; ActionError if it changed since
    the action was offered (its range would point elsewhere)."""
    version = _version(ls, data.uri)
    if data.version is not None and version is not None and version != data.version:
        raise ActionError("the document changed since this action was offered; ask again")
    snap = ls.snapshot(data.uri)
    if snap is None:
        raise ActionError(f"cannot read {data.uri}")
    sl, sc, el, ec = (data.range + [0, 0, 0, 0])[:4]
    start = offset_at(snap.text, common.model_position(types.Position(line=sl, character=sc)))
    end = offset_at(snap.text, common.model_position(types.Position(line=el, character=ec)))
    site = site_at(snap.source, snap.text, start, end)
    reason = offered(site).get(data.kind, "this action does not apply here")
    if reason:
        raise ActionError(reason)
    return ActionInput(
        kind=data.kind,
        site=site,
        source=snap.source,
        project=ls.project,
        root=ls.root_for(snap.path),
        options=ActionOptions.from_settings(ls.settings),
    )


def _retrieved(ls: SmalltalkLanguageServer, inp: ActionInput) -> str:
    # Without the retrieval index (off, or not built yet) the project model still gives the
    # class, its siblings and the implementors of what the code sends.
    if inp.kind not in ("explain", "design", "implement"):
        return ""
    try:
        site = inp.site
        return ls.retrieval_context(site.path, site.text, site.start, CONTEXT_TOKENS).render()
    except Exception:  # retrieval is a help, never a reason to fail
        log.exception("retrieval for a code action failed")
        return ""


async def execute(ls: SmalltalkLanguageServer, data: ActionData) -> ActionResult:
    """Run an action on the actions' worker; ActionError (with a message) if it fails."""
    inp = action_input(ls, data)
    progress = _Progress(ls, f"{TITLES[data.kind]}: {inp.site.subject}")
    await progress.begin()

    def adapters(role: Role) -> AdapterSelection:
        # Asked when a role generates (the model may still be loading when the action starts).
        return ls.models.select_adapters(role, inp.site.path)

    def work(cancel: Any) -> ActionResult:
        inp.context = _retrieved(ls, inp)
        return run_action(inp, Run(ls.models, cancel, progress.report, adapters))

    job = ls.models.submit(work)
    progress.on_cancel.append(job.cancel.cancel)
    outcome = "cancelled"
    try:
        result = await asyncio.wrap_future(job.future)
        if result is None:
            raise ActionCancelled("cancelled")
        if isinstance(result, ActionError):
            raise result
        outcome = f"done: {result.tokens} tokens"
        return result
    except asyncio.CancelledError:
        # $/cancelRequest: stop the model too, not just this coroutine.
        job.cancel.cancel()
        raise
    except ActionCancelled:
        raise
    except ActionError as err:
        outcome = str(err)
        raise
    finally:
        progress.end(outcome)


def workspace_edit(ls: SmalltalkLanguageServer, edit: CodeEdit) -> types.WorkspaceEdit:
    """Text changes (and new files) as a WorkspaceEdit; files are created with documentChanges,
    which the client must support."""
    texts: dict[str, str] = {}
    text_edits: dict[str, list[types.TextEdit]] = {}
    for change in edit.changes:
        uri = common.uri_of(change.path)
        text = texts.get(uri)
        if text is None:
            text = ls.document_text(uri) or ""
            texts[uri] = text
        rng = types.Range(
            start=common.lsp_position(position_at(text, change.start)),
            end=common.lsp_position(position_at(text, change.end)),
        )
        text_edits.setdefault(uri, []).append(types.TextEdit(range=rng, new_text=change.new_text))
    if not edit.files:
        return ls.columns.to_client(types.WorkspaceEdit(changes=text_edits))
    if not _can_create_files(ls):
        raise ActionError(
            "this editor cannot create files through workspace edits (no 'create' resource "
            "operation); nothing was changed"
        )
    changes: list[Any] = []
    for uri, edits in text_edits.items():
        identifier = types.OptionalVersionedTextDocumentIdentifier(uri=uri, version=None)
        changes.append(types.TextDocumentEdit(text_document=identifier, edits=edits))
    origin = types.Position(line=0, character=0)
    for new_file in edit.files:
        uri = from_fs_path(new_file.path) or new_file.path
        options = types.CreateFileOptions(overwrite=False, ignore_if_exists=False)
        changes.append(types.CreateFile(uri=uri, options=options))
        identifier = types.OptionalVersionedTextDocumentIdentifier(uri=uri, version=None)
        insert = types.TextEdit(range=types.Range(start=origin, end=origin), new_text=new_file.text)
        changes.append(types.TextDocumentEdit(text_document=identifier, edits=[insert]))
    # In the client's columns (server.positions); the edits are built in code points.
    return ls.columns.to_client(types.WorkspaceEdit(document_changes=changes))


def _can_create_files(ls: SmalltalkLanguageServer) -> bool:
    """Whether the client creates files from a WorkspaceEdit. Resource operations exist only
    in documentChanges, so a client that lists `create` handles those too (Neovim 0.12 lists
    it without setting documentChanges)."""
    try:
        ws_edit = ls.client_capabilities.workspace.workspace_edit  # type: ignore[union-attr]
    except AttributeError:
        return False
    if ws_edit is None:
        return False
    operations = ws_edit.resource_operations or []
    return types.ResourceOperationKind.Create in operations


def _note_uri(result: NoteResult) -> str:
    return from_fs_path(str(result.path)) or str(result.path)


def _show_command(result: NoteResult) -> types.Command:
    return types.Command(
        title=f"Show {result.title}", command=COMMAND_SHOW, arguments=[_note_uri(result)]
    )


async def resolve(ls: SmalltalkLanguageServer, action: types.CodeAction) -> types.CodeAction:
    try:
        data = ActionData.model_validate(action.data)
    except ValidationError as err:
        raise JsonRpcInvalidParams(f"not a smalltalk-lsp code action: {err}") from err
    try:
        result = await execute(ls, data)
        if isinstance(result, EditResult):
            action.edit = workspace_edit(ls, result.edit)
            log.info("%s: %s", result.title, result.message)
        else:
            action.command = _show_command(result)
        return action
    except ActionError as err:
        message = f"{TITLES[data.kind]}: {err}"
        if not isinstance(err, ActionCancelled):
            ls.show_message(message, types.MessageType.Error)
        raise _failed(message) from err


async def show_note(ls: SmalltalkLanguageServer, uri: str) -> dict[str, Any]:
    """Open a note in the editor (window/showDocument) and answer its text too."""
    path = to_fs_path(uri) if uri.startswith("file:") else uri
    text = read_note(Path(path)) if path else None
    if text is None:
        raise _failed(f"the note {uri} cannot be read")
    shown = False
    window = getattr(ls.client_capabilities, "window", None)
    if window is not None and window.show_document is not None:
        try:
            answer = await ls.window_show_document_async(
                types.ShowDocumentParams(uri=uri, take_focus=True)
            )
            shown = bool(answer and answer.success)
        except Exception as err:
            log.warning("window/showDocument failed: %s", err)
    return {"uri": uri, "markdown": text, "shown": shown}


async def run_command(ls: SmalltalkLanguageServer, raw: Any) -> dict[str, Any]:
    """For clients without codeAction/resolve: run the action, apply its edit or show its
    note."""
    try:
        data = ActionData.model_validate(raw)
    except ValidationError as err:
        raise JsonRpcInvalidParams(f"usage: {COMMAND_RUN} ACTION-DATA ({err})") from err
    try:
        result = await execute(ls, data)
        if isinstance(result, NoteResult):
            return await show_note(ls, _note_uri(result))
        edit = workspace_edit(ls, result.edit)
        applied = await ls.workspace_apply_edit_async(
            types.ApplyWorkspaceEditParams(edit=edit, label=result.title)
        )
        return {"applied": bool(applied and applied.applied), "message": result.message}
    except ActionError as err:
        message = f"{TITLES[data.kind]}: {err}"
        ls.show_message(message, types.MessageType.Error)
        raise _failed(message) from err


def setup(ls: SmalltalkLanguageServer) -> None:
    @ls.handler(
        types.TEXT_DOCUMENT_CODE_ACTION,
        types.CodeActionOptions(code_action_kinds=CODE_ACTION_KINDS, resolve_provider=True),
        empty=list,
    )
    def on_code_action(params: types.CodeActionParams) -> list[types.CodeAction]:
        return code_actions(ls, params)

    # Not through ls.handler: a failed action answers an error with its message.
    @ls.feature(types.CODE_ACTION_RESOLVE)
    async def on_resolve(action: types.CodeAction) -> types.CodeAction:
        try:
            return await resolve(ls, action)
        except (JsonRpcException, asyncio.CancelledError):
            raise
        except Exception as err:
            log.exception("codeAction/resolve failed")
            raise _failed(f"{action.title}: internal error: {err}") from err

    @ls.command(COMMAND_SHOW)
    async def on_show(*args: Any) -> dict[str, Any]:
        if not args or not isinstance(args[0], str):
            raise JsonRpcInvalidParams(f"usage: {COMMAND_SHOW} NOTE-URI")
        return await show_note(ls, args[0])

    @ls.command(COMMAND_RUN)
    async def on_run(*args: Any) -> dict[str, Any]:
        if not args:
            raise JsonRpcInvalidParams(f"usage: {COMMAND_RUN} ACTION-DATA")
        return await run_command(ls, args[0])
