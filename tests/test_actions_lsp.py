"""End to end: `python -m server serve` with the fastest embedded models (Gemma 3 270M coder,
SmolLM2-135M reasoner; the defaults have tests/test_defaults_e2e.py) on a copy of the sample
project in three formats. Each action is offered
where it belongs, resolves to an edit or a note, every edit parses in its file's format, and
the bad inputs give a clear message and no edit. Token limits are tiny: the models write poor
Smalltalk and poorer prose, which is not what is tested."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import pytest_lsp
from lsp_support import (
    copy_sample,
    doc,
    open_document,
    record_status,
    server_config,
    start_session,
    uri_of,
    wait_for,
)
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pygls.uris import to_fs_path
from pytest_lsp import LanguageClient

from server.actions.formats import TextChange, apply_changes
from smalltalk_grammar import parse
from smalltalk_grammar.model import Position
from smalltalk_grammar.text import offset_at

pytestmark = pytest.mark.asyncio(loop_scope="module")

SERVER = server_config()
OPTIONS = {
    "models": {"code_generation": "gemma3-270m", "reasoning": "smollm2-135m"},
    "cpu_settings": {"context_length": 2048},
    "retrieval": {"enabled": False},
    "actions": {
        "max_tokens": 24,
        "code_max_tokens": 40,
        "summary_max_tokens": 16,
        "attempts": 2,
        "temperature": 0.0,
    },
}
FILES = {
    "tonel": "tonel/StreamingRights-Core/SRStore.class.st",
    "chunk": "chunk-squeak/StreamingRights.st",
    "gnu": "gnu/StreamingRights.st",
}
KINDS = {f"refactor.smalltalk.{k}" for k in ("explain", "design", "implement", "tests", "comment")}
LOAD_TIMEOUT = 300
ACTION_TIMEOUT = 400


@pytest_lsp.fixture(scope="module", config=SERVER)
async def client(lsp_client: LanguageClient, tmp_path_factory):
    root = tmp_path_factory.mktemp("actions")
    for folder in ("tonel", "chunk-squeak", "gnu"):
        copy_sample(folder, root)
    lsp_client.root = root  # type: ignore[attr-defined]
    record_status(lsp_client, lambda params: params.models)
    lsp_client.init_result = await start_session(lsp_client, root, OPTIONS)  # type: ignore[attr-defined]
    await wait_for(lambda: ready(lsp_client), "both models", timeout=LOAD_TIMEOUT)
    yield
    await lsp_client.shutdown_session()


def ready(client: LanguageClient) -> bool:
    statuses = client.statuses  # type: ignore[attr-defined]
    return bool(statuses) and statuses[-1].coder == "ready" and statuses[-1].reasoner == "ready"


def path_of(client: LanguageClient, name: str) -> Path:
    return client.root / FILES[name]  # type: ignore[attr-defined,no-any-return]


def position(text: str, needle: str, skip: int = 0) -> types.Position:
    offset = text.index(needle) + skip
    line = text.count("\n", 0, offset)
    return types.Position(line=line, character=offset - (text.rfind("\n", 0, offset) + 1))


async def actions_at(client: LanguageClient, uri: str, start: types.Position,
                     end: types.Position | None = None,
                     only: list[str] | None = None) -> dict[str, types.CodeAction]:
    result = await client.text_document_code_action_async(
        types.CodeActionParams(
            text_document=doc(uri),
            range=types.Range(start=start, end=end or start),
            context=types.CodeActionContext(diagnostics=[], only=only),
        )
    )
    found = {str(a.kind): a for a in result or [] if isinstance(a, types.CodeAction)}
    for action in found.values():
        assert action.edit is None, "computed lazily: no edit before resolve"
    return found


async def resolve(client: LanguageClient, action: types.CodeAction) -> types.CodeAction:
    return await asyncio.wait_for(client.code_action_resolve_async(action), ACTION_TIMEOUT)


def change_of(text: str, uri: str, edit: types.TextEdit) -> TextChange:
    start, end = edit.range.start, edit.range.end
    return TextChange(
        uri,
        offset_at(text, Position(line=start.line, character=start.character)),
        offset_at(text, Position(line=end.line, character=end.character)),
        edit.new_text,
    )


def apply_edit(client: LanguageClient, edit: types.WorkspaceEdit) -> dict[str, str]:
    """The texts of every file after the edit (from disk; the edit is not written)."""
    texts: dict[str, str] = {}

    def text_of(uri: str) -> str:
        if uri not in texts:
            path = Path(to_fs_path(uri) or uri)
            texts[uri] = path.read_text(encoding="utf-8") if path.exists() else ""
        return texts[uri]

    def apply(uri: str, edits: list[types.TextEdit]) -> None:
        text = text_of(uri)
        texts[uri] = apply_changes(text, [change_of(text, uri, e) for e in edits])

    for uri, edits in (edit.changes or {}).items():
        apply(uri, list(edits))
    for change in edit.document_changes or []:
        if isinstance(change, types.CreateFile):
            assert not Path(to_fs_path(change.uri) or "").exists()
            texts[change.uri] = ""
        elif isinstance(change, types.TextDocumentEdit):
            apply(change.text_document.uri, list(change.edits))  # type: ignore[arg-type]
    return texts


def assert_parses(texts: dict[str, str], fmt: str) -> None:
    for uri, text in texts.items():
        path = to_fs_path(uri) or uri
        parsed = parse(text, path)
        assert parsed.format == fmt, (uri, parsed.format)
        errors = [d.message for d in parsed.diagnostics if d.severity == "error"]
        assert not errors, (uri, errors, text[-800:])
        assert "<think" not in text and "</think>" not in text


# --- offered at the right places ---------------------------------------------------------------


async def test_server_advertises_the_kinds_and_resolve(client: LanguageClient):
    provider = client.init_result.capabilities.code_action_provider  # type: ignore[attr-defined]
    assert isinstance(provider, types.CodeActionOptions) and provider.resolve_provider
    assert {str(k) for k in provider.code_action_kinds or []} == KINDS
    commands = client.init_result.capabilities.execute_command_provider.commands  # type: ignore[attr-defined]
    assert {"smalltalk.actions.show", "smalltalk.actions.run"} <= set(commands)


@pytest.mark.parametrize("fmt", ["tonel", "chunk", "gnu"])
async def test_actions_offered_by_place(client: LanguageClient, fmt: str):
    path = path_of(client, fmt)
    text = path.read_text()
    uri = uri_of(path)
    on_method = await actions_at(client, uri, position(text, "isEmpty", 2))
    assert set(on_method) == {
        "refactor.smalltalk.explain", "refactor.smalltalk.tests", "refactor.smalltalk.comment",
    }
    assert [a.title for a in on_method.values()] == ["Explain", "Write SUnit tests",
                                                      "Add method comment"]
    commented = await actions_at(client, uri, position(text, "rightsFor: aTerritory", 3))
    assert "refactor.smalltalk.comment" not in commented
    in_comment = await actions_at(client, uri, position(text, "Forget every right", 5))
    assert {"refactor.smalltalk.design", "refactor.smalltalk.implement"} <= set(in_comment)
    only = await actions_at(client, uri, position(text, "isEmpty", 2),
                            only=["refactor.smalltalk.tests"])
    assert set(only) == {"refactor.smalltalk.tests"}


async def test_actions_on_a_class_definition_and_nowhere(client: LanguageClient):
    path = path_of(client, "tonel")
    text = path.read_text()
    uri = uri_of(path)
    on_class = await actions_at(client, uri, position(text, "#superclass : #Object"))
    assert set(on_class) == {"refactor.smalltalk.explain", "refactor.smalltalk.tests"}
    blank_line = text[: text.index("\n\n{ #category") + 1].count("\n")
    between = await actions_at(client, uri, types.Position(line=blank_line, character=0))
    assert between == {}


# --- Explain and Design: notes ------------------------------------------------------------------


async def test_explain_resolves_to_a_note_opened_by_its_command(client: LanguageClient):
    path = path_of(client, "chunk")
    text = path.read_text()
    uri = uri_of(path)
    action = (await actions_at(client, uri, position(text, "rightsFor: aTerritory\n", 2)))[
        "refactor.smalltalk.explain"
    ]
    resolved = await resolve(client, action)
    assert resolved.edit is None and resolved.command is not None
    assert resolved.command.command == "smalltalk.actions.show"
    note_uri = resolved.command.arguments[0]  # type: ignore[index]
    note = Path(to_fs_path(note_uri) or "")
    assert note.parent == client.root / ".smalltalk-lsp" / "notes"  # type: ignore[attr-defined]
    markdown = note.read_text()
    assert markdown.startswith("# Explanation: SRStore >> rightsFor:")
    assert "<think>" not in markdown
    answer = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command=resolved.command.command,
                                   arguments=resolved.command.arguments)
    )
    assert answer["markdown"] == markdown and answer["shown"] is True
    shown = client.shown_documents
    assert shown and shown[-1].uri == note_uri
    # $/progress counted the tokens of this action.
    reports = [
        v.message for values in client.progress_reports.values() for v in values
        if isinstance(v, types.WorkDoneProgressReport) and v.message and "tokens" in v.message
    ]
    assert reports


async def test_design_from_a_comment(client: LanguageClient):
    path = path_of(client, "gnu")
    text = path.read_text()
    action = (await actions_at(client, uri_of(path), position(text, "Forget every right", 3)))[
        "refactor.smalltalk.design"
    ]
    resolved = await resolve(client, action)
    note = Path(to_fs_path(resolved.command.arguments[0]) or "")  # type: ignore[union-attr,index]
    markdown = note.read_text()
    assert markdown.startswith("# Design: Forget every right")
    assert "> Forget every right whose licence ended before aDate" in markdown


# --- code: edits that parse ---------------------------------------------------------------------


@pytest.mark.parametrize(("fmt", "kind"), [("tonel", "tonel"), ("chunk", "chunk"),
                                            ("gnu", "bracket")])
async def test_comment_edit_parses(client: LanguageClient, fmt: str, kind: str):
    path = path_of(client, fmt)
    text = path.read_text()
    uri = uri_of(path)
    action = (await actions_at(client, uri, position(text, "isEmpty", 2)))[
        "refactor.smalltalk.comment"
    ]
    resolved = await resolve(client, action)
    assert resolved.edit is not None and resolved.command is None
    texts = apply_edit(client, resolved.edit)
    assert list(texts) == [uri]
    assert_parses(texts, kind)
    after = parse(texts[uri], str(path))
    method = next(m for m in after.methods if m.selector == "isEmpty" and m.class_name == "SRStore")
    assert method.comment
    assert len(after.methods) == len(parse(text, str(path)).methods)


@pytest.mark.parametrize(("fmt", "kind"), [("tonel", "tonel"), ("chunk", "chunk"),
                                            ("gnu", "bracket")])
async def test_sunit_tests_edit_parses(client: LanguageClient, fmt: str, kind: str):
    path = path_of(client, fmt)
    text = path.read_text()
    uri = uri_of(path)
    action = (await actions_at(client, uri, position(text, "isEmpty", 2)))[
        "refactor.smalltalk.tests"
    ]
    resolved = await resolve(client, action)
    assert resolved.edit is not None
    texts = apply_edit(client, resolved.edit)
    assert_parses(texts, kind)
    classes = [c for t in texts.values() for c in parse(t).classes if c.superclass == "TestCase"]
    new = [c for c in classes if c.name == "SRStoreGeneratedTest"]
    assert new, [c.name for c in classes]
    if fmt == "tonel":
        changes = resolved.edit.document_changes or []
        created = [c for c in changes if isinstance(c, types.CreateFile)]
        target = "StreamingRights-Tests/SRStoreGeneratedTest.class.st"
        assert created and created[0].uri.endswith(target)
    tests = [m for t in texts.values() for m in parse(t).methods
             if m.class_name == "SRStoreGeneratedTest"]
    assert tests and tests[0].selector == "testIsEmpty"


async def test_implement_design_from_a_comment(client: LanguageClient):
    path = client.root / "tonel/StreamingRights-Core/SRLicence.class.st"  # type: ignore[attr-defined]
    uri = open_document(client, path)
    text = path.read_text()
    wish = '\n"Add a method totalFee that answers the fee plus a tax of ten percent."\n'
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
            content_changes=[types.TextDocumentContentChangeWholeDocument(text=text + wish)],
        )
    )
    text += wish
    action = (await actions_at(client, uri, position(text, "totalFee that", 2)))[
        "refactor.smalltalk.implement"
    ]
    resolved = await resolve(client, action)
    assert resolved.edit is not None and list(resolved.edit.changes or {}) == [uri]
    edits = resolved.edit.changes[uri]  # type: ignore[index]
    after = apply_changes(text, [change_of(text, uri, e) for e in edits])
    assert_parses({uri: after}, "tonel")
    added = [m for m in parse(after).methods if m.selector == "totalFee"]
    assert added and added[0].class_name == "SRLicence"


# --- bad input ---------------------------------------------------------------------------------


async def test_prose_selection_cannot_be_explained(client: LanguageClient):
    path = path_of(client, "tonel")
    text = path.read_text()
    start = position(text, "I hold a name")
    end = types.Position(line=start.line, character=start.character + 40)
    found = await actions_at(client, uri_of(path), start, end)
    explain = found["refactor.smalltalk.explain"]
    assert explain.disabled is not None and "not Smalltalk" in explain.disabled.reason
    with pytest.raises(JsonRpcException, match="not Smalltalk code"):
        await resolve(client, explain)


def progress_titles(client: LanguageClient) -> dict[Any, str]:
    return {
        token: values[0].title
        for token, values in client.progress_reports.items()
        if values and isinstance(values[0], types.WorkDoneProgressBegin)
    }


async def long_explanation(client: LanguageClient) -> types.CodeAction:
    """An Explain action with a token limit far beyond what the test waits for."""
    await change_settings(client, {"actions": {**OPTIONS["actions"], "max_tokens": 4000}})
    path = path_of(client, "gnu")
    text = path.read_text()
    return (await actions_at(client, uri_of(path), position(text, "feePerDay [", 2)))[
        "refactor.smalltalk.explain"
    ]


async def assert_worker_free(client: LanguageClient) -> None:
    """The next action runs at once: the cancelled one no longer holds the worker."""
    await change_settings(client, {})
    path = path_of(client, "gnu")
    text = path.read_text()
    comment = (await actions_at(client, uri_of(path), position(text, "    territories [", 6)))[
        "refactor.smalltalk.comment"
    ]
    resolved = await resolve(client, comment)
    assert resolved.edit is not None


async def test_cancel_from_the_progress_report(client: LanguageClient):
    action = await long_explanation(client)
    before = set(progress_titles(client))
    task = asyncio.ensure_future(resolve(client, action))
    await wait_for(
        lambda: any(t.startswith("Explain") for k, t in progress_titles(client).items()
                    if k not in before),
        "the explanation's progress", timeout=60,
    )
    token = next(k for k, t in progress_titles(client).items()
                 if k not in before and t.startswith("Explain"))
    await asyncio.sleep(1.0)  # generating by now
    client.window_work_done_progress_cancel(types.WorkDoneProgressCancelParams(token=token))
    with pytest.raises(JsonRpcException, match="cancelled"):
        await asyncio.wait_for(task, 30)
    ends = [v for v in client.progress_reports[token] if isinstance(v, types.WorkDoneProgressEnd)]
    assert ends and ends[0].message == "cancelled"
    await assert_worker_free(client)


async def test_cancel_request_stops_the_model(client: LanguageClient):
    action = await long_explanation(client)
    msg_id = "cancel-me"
    future = client.protocol.send_request(types.CODE_ACTION_RESOLVE, action, msg_id=msg_id)
    await asyncio.sleep(3.0)
    client.cancel_request(types.CancelParams(id=msg_id))
    with pytest.raises(JsonRpcException):
        await asyncio.wait_for(asyncio.wrap_future(future), 30)
    await assert_worker_free(client)


# --- hover ------------------------------------------------------------------------------------


async def test_hover_summary_written_in_the_background(client: LanguageClient):
    path = path_of(client, "tonel")
    text = path.read_text()
    params = types.HoverParams(text_document=doc(uri_of(path)),
                               position=position(text, "expireBefore: aDate [", 3))
    first = await client.text_document_hover_async(params)
    assert first is not None
    value = first.contents.value  # type: ignore[union-attr]
    assert "expireBefore:" in value  # the static part is there at once
    assert "being written" in value or "**Summary**" in value
    summary: list[str] = []

    async def poll() -> None:
        while True:
            hover = await client.text_document_hover_async(params)
            body = hover.contents.value if hover else ""  # type: ignore[union-attr]
            if "**Summary**" in body:
                summary.append(body)
                return
            await asyncio.sleep(1.0)

    await asyncio.wait_for(poll(), ACTION_TIMEOUT)
    assert "being written" not in summary[0]
    cached = list((client.root / ".smalltalk-lsp" / "hover").rglob("*.json"))  # type: ignore[attr-defined]
    assert cached


# --- no reasoner, a reasoner that fails (last: they change the settings) ------------------------


async def change_settings(client: LanguageClient, settings: dict[str, Any]) -> None:
    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings={**OPTIONS, **settings})
    )


async def explain_error(client: LanguageClient) -> str:
    path = path_of(client, "chunk")
    text = path.read_text()
    action = (await actions_at(client, uri_of(path), position(text, "isEmpty", 2)))[
        "refactor.smalltalk.explain"
    ]
    with pytest.raises(JsonRpcException) as err:
        await resolve(client, action)
    return str(err.value)


async def test_no_reasoner_configured(client: LanguageClient):
    await change_settings(client, {"models": {**OPTIONS["models"], "reasoning": "off"}})
    await wait_for(lambda: client.statuses[-1].reasoner == "off", "reasoner off")  # type: ignore[attr-defined]
    message = await explain_error(client)
    assert "no reasoning model is configured" in message and "models.reasoning" in message


async def test_reasoner_that_fails_to_load(client: LanguageClient, tmp_path: Path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 64)
    await change_settings(client, {"models": {**OPTIONS["models"], "reasoning": str(broken)}})
    await wait_for(lambda: client.statuses[-1].reasoner == "failed", "reasoner failed")  # type: ignore[attr-defined]
    message = await explain_error(client)
    assert "the reasoning model failed to load" in message and "broken.gguf" in message
