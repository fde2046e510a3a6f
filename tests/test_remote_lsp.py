"""End to end through shared servers: `python -m server serve` over stdio, its two roles
pointed (initializationOptions) at real `llama_cpp.server`s on loopback: the session's team
server for the coder (the embedded Gemma, with a LoRA adapter served as a second model, behind
an API key) and one for the reasoner (the embedded SmolLM2). Inline completion, a code action
of each model, and adapters (activate, deactivate, one the server lacks), as in process; the
API key never reaches a log."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
import pytest_lsp
from lsp_support import (
    copy_sample,
    doc,
    end_of,
    open_document,
    record_status,
    server_config,
    set_text,
    start_session,
    suggest,
    uri_of,
    wait_for,
)
from lsprotocol import types
from pygls.uris import to_fs_path
from pytest_lsp import LanguageClient
from remote_support import TEAM_KEY, TEAM_KEY_ENV, LlamaServer, model_entry, remote_options

from adapters import testing
from server.completion.syntax import method_errors
from server.engine.embedded import resolve_model_path
from smalltalk_grammar import parse

pytestmark = pytest.mark.asyncio(loop_scope="module")

SERVER = server_config(
    {TEAM_KEY_ENV: TEAM_KEY, "XDG_DATA_HOME": tempfile.mkdtemp(prefix="remote-e2e-")}
)
STORE = "StreamingRights-Core/SRStore.class.st"
EMPTY_METHOD = "\n{ #category : #testing }\nSRStore >> isEmpty [\n\n\t"
TIMEOUT = 400


@pytest.fixture(scope="module")
def reasoner_server(tmp_path_factory: Any) -> Any:
    folder = tmp_path_factory.mktemp("reasoner-server")
    server = LlamaServer(folder, [model_entry(resolve_model_path("smollm2-135m"), "smollm2-135m")])
    yield server.start()
    server.stop()


@pytest_lsp.fixture(scope="module", config=SERVER)
async def client(lsp_client: LanguageClient, tmp_path_factory, team_server, reasoner_server):
    record_status(lsp_client, lambda params: {"coder": params.models.coder,
                                              "reasoner": params.models.reasoner,
                                              "adapters": list(params.adapters)})
    root = copy_sample("tonel", tmp_path_factory.mktemp("remote"))
    folder = root / ".smalltalk-lsp" / "adapters"
    folder.mkdir(parents=True)
    shutil.copy(team_server.adapter, folder / "house.gguf")  # the one the server serves
    testing.write_lora(folder / "late.gguf", resolve_model_path("gemma3-270m"), seed=5, rank=2)
    lsp_client.root = root  # type: ignore[attr-defined]
    options = remote_options(
        team_server.url, reasoner_server.url, coder_extra={"api_key_env": TEAM_KEY_ENV}
    )
    options.update({
        "trust": {"workspace": True},  # the adapters live in the workspace
        "retrieval": {"enabled": False},
        "completion": {"max_generate_ms": 300_000, "max_tokens_line": 16, "max_tokens_block": 24},
        "actions": {"max_tokens": 16, "code_max_tokens": 24, "attempts": 2,
                    "temperature": 0.0, "hover_summaries": False},
    })
    await start_session(lsp_client, root, options)
    await wait_for(
        lambda: bool(lsp_client.statuses)  # type: ignore[attr-defined]
        and lsp_client.statuses[-1]["coder"] == "ready"  # type: ignore[attr-defined]
        and lsp_client.statuses[-1]["reasoner"] == "ready",  # type: ignore[attr-defined]
        "both remote models",
        timeout=120,
    )
    yield
    await lsp_client.shutdown_session()


def position(text: str, needle: str, skip: int = 0) -> types.Position:
    offset = text.index(needle) + skip
    line = text.count("\n", 0, offset)
    return types.Position(line=line, character=offset - (text.rfind("\n", 0, offset) + 1))


async def complete(client: LanguageClient, version: int) -> tuple[str, str]:
    """The suggestion in a new empty method of SRStore, and the text before the cursor."""
    path = client.root / STORE  # type: ignore[attr-defined]
    uri = uri_of(path)
    text = path.read_text(encoding="utf-8") + EMPTY_METHOD
    set_text(client, uri, version, text + "\n]\n")
    return await suggest(client, uri, end_of(text)), text


async def command(client: LanguageClient, name: str, *args: object) -> Any:
    return await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command=name, arguments=list(args))
    )


async def code_action(client: LanguageClient, kind: str, needle: str, skip: int) -> Any:
    path = client.root / STORE  # type: ignore[attr-defined]
    text = path.read_text(encoding="utf-8")
    at = position(text, needle, skip)
    found = await client.text_document_code_action_async(
        types.CodeActionParams(
            text_document=doc(uri_of(path)),
            range=types.Range(start=at, end=at),
            context=types.CodeActionContext(diagnostics=[]),
        )
    )
    action = next(a for a in found or [] if getattr(a, "kind", None) == kind)
    return await client.code_action_resolve_async(action)


async def test_inline_completion_through_the_server_parses(client: LanguageClient) -> None:
    open_document(client, client.root / STORE)  # type: ignore[attr-defined]
    suggestion, text = await complete(client, 2)
    assert suggestion.strip(), "the remote coder gave no suggestion"
    parsed = parse(text + suggestion + "\n]\n", "SRStore.class.st")
    method = next(m for m in parsed.methods if m.selector == "isEmpty")
    assert method_errors(method.source) == []


async def test_comment_action_from_the_remote_coder(client: LanguageClient) -> None:
    resolved = await code_action(client, "refactor.smalltalk.comment", "isEmpty", 2)
    assert resolved.edit is not None and resolved.edit.changes
    (uri, edits), = resolved.edit.changes.items()
    assert uri.endswith("SRStore.class.st") and edits and edits[0].new_text.strip()


async def test_explain_action_from_the_remote_reasoner(client: LanguageClient) -> None:
    resolved = await code_action(client, "refactor.smalltalk.explain", "isEmpty", 2)
    assert resolved.command is not None and resolved.command.command == "smalltalk.actions.show"
    note = Path(to_fs_path(resolved.command.arguments[0]) or "")
    markdown = note.read_text()
    assert markdown.startswith("# Explanation: SRStore >> isEmpty")
    assert "smollm2-135m" in markdown  # the header names the configured reasoner


async def test_adapters_through_the_server(client: LanguageClient) -> None:
    listing = {item["name"]: item for item in await command(client, "smalltalk.adapters.list")}
    assert sorted(listing) == ["house", "late"]
    assert listing["house"]["error"] is None and listing["house"]["role"] == "coder"
    base, _ = await complete(client, 10)
    activated = await command(client, "smalltalk.adapters.activate", "house")
    assert activated["active"] is True and activated["loaded"] is True
    await wait_for(
        lambda: client.statuses[-1]["adapters"] == ["house"],  # type: ignore[attr-defined]
        "the status to show the adapter",
    )
    with_house, _ = await complete(client, 11)
    assert with_house != base
    await command(client, "smalltalk.adapters.deactivate", "house")
    assert (await complete(client, 12))[0] == base
    # An adapter the editor has but the server does not serve is refused, by name.
    with pytest.raises(Exception, match=r"has no adapter 'late' \(it offers: house\)"):
        await command(client, "smalltalk.adapters.activate", "late")
    late = [i for i in await command(client, "smalltalk.adapters.list") if i["name"] == "late"]
    assert late[0]["active"] is False and "has no adapter 'late'" in late[0]["error"]


async def test_the_api_key_never_reaches_a_log(client: LanguageClient) -> None:
    logged = "\n".join(m.message for m in client.log_messages)
    assert "remote" in logged or "gemma3-270m" in logged  # the log is not empty
    assert TEAM_KEY not in logged
    assert all(TEAM_KEY not in m.message for m in client.messages)
