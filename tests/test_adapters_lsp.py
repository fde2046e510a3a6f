"""End to end: `smalltalk-lsp serve` over stdio with the real embedded coder and real LoRA
adapters written into the workspace's `.smalltalk-lsp/adapters/`: list, activate, deactivate,
an inline completion that changes while an adapter is active, refusals, and files added and
removed while the server runs."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import pytest_lsp
from lsp_support import (
    copy_sample,
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
from pytest_lsp import LanguageClient

from adapters import testing
from server.engine.embedded import resolve_model_path

# The tests run on the fixture's loop, where the client reads the server's messages.
pytestmark = pytest.mark.asyncio(loop_scope="module")
# A private user data dir: the user's own adapters stay out of the test.
SERVER = server_config({"XDG_DATA_HOME": tempfile.mkdtemp(prefix="adapters-e2e-")})
# The fastest embedded coder: its adapters are written for Gemma 3's shapes.
OPTIONS = {
    # The adapters live in the workspace: trusted, or they are ignored (server.trust).
    "trust": {"workspace": True},
    "models": {"code_generation": "gemma3-270m", "reasoning": "off"},
    "cpu_settings": {"context_length": 2048},
    "completion": {"max_generate_ms": 240000},
}
STORE = "StreamingRights-Core/SRStore.class.st"
EMPTY_METHOD = "\n{ #category : #testing }\nSRStore >> isEmpty [\n\n\t"


def folder_of(client: LanguageClient) -> Path:
    return client.root / ".smalltalk-lsp" / "adapters"  # type: ignore[attr-defined]


@pytest_lsp.fixture(scope="module", config=SERVER)
async def client(lsp_client: LanguageClient, tmp_path_factory):
    record_status(
        lsp_client, lambda params: {"coder": params.models.coder, "adapters": list(params.adapters)}
    )
    root = copy_sample("tonel", tmp_path_factory.mktemp("adapters"))
    lsp_client.root = root  # type: ignore[attr-defined]
    base = resolve_model_path("gemma3-270m")
    folder = folder_of(lsp_client)
    testing.write_lora(folder / "house.gguf", base, seed=1, strength=0.1)
    testing.write_truncated(folder / "broken.gguf", base)
    await start_session(lsp_client, root, OPTIONS)
    await wait_for(
        lambda: any(s["coder"] == "ready" for s in lsp_client.statuses),  # type: ignore[attr-defined]
        "the coder model",
        timeout=180,
    )
    yield
    await lsp_client.shutdown_session()


async def command(client: LanguageClient, name: str, *args: object) -> object:
    return await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command=name, arguments=list(args))
    )


async def listing(client: LanguageClient) -> dict[str, dict]:
    result = await command(client, "smalltalk.adapters.list")
    assert isinstance(result, list)
    return {item["name"]: item for item in result}


async def complete(client: LanguageClient, version: int) -> str:
    path = client.root / STORE  # type: ignore[attr-defined]
    uri = uri_of(path)
    text = path.read_text(encoding="utf-8") + EMPTY_METHOD
    set_text(client, uri, version, text + "\n]\n")
    return await suggest(client, uri, end_of(text))


async def model_item(client: LanguageClient) -> types.CompletionItem:
    """The model's completion item at the end of the method that `complete` wrote."""
    path = client.root / STORE  # type: ignore[attr-defined]
    text = path.read_text(encoding="utf-8") + EMPTY_METHOD
    at = types.Position(line=text.count("\n"), character=len(text.rsplit("\n", 1)[-1]))
    result = await client.text_document_completion_async(
        types.CompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri_of(path)),
            position=at,
            context=types.CompletionContext(trigger_kind=types.CompletionTriggerKind.Invoked),
        )
    )
    assert isinstance(result, types.CompletionList)
    items = [i for i in result.items if (i.data or {}).get("source") == "model"]
    assert len(items) == 1, result.items[:3]
    return items[0]


def watched(client: LanguageClient, path: Path, kind: types.FileChangeType) -> None:
    client.workspace_did_change_watched_files(
        types.DidChangeWatchedFilesParams(changes=[types.FileEvent(uri=uri_of(path), type=kind)])
    )


async def test_commands_are_advertised_and_watchers_registered(client: LanguageClient) -> None:
    registrations = client.registrations  # type: ignore[attr-defined]
    globs = [
        w["globPattern"]
        for r in registrations
        if r.method == types.WORKSPACE_DID_CHANGE_WATCHED_FILES
        for w in r.register_options["watchers"]
    ]
    assert "**/.smalltalk-lsp/adapters/*.gguf" in globs


async def test_list_shows_the_workspace_adapters(client: LanguageClient) -> None:
    items = await listing(client)
    assert sorted(items) == ["broken", "house"]
    house = items["house"]
    assert house["path"] == str(folder_of(client) / "house.gguf")
    assert house["base_architecture"] == "gemma3"
    assert house["loaded"] is False and house["active"] is False
    assert house["scale"] == 1.0 and house["error"] is None
    assert "truncated" in items["broken"]["error"]


async def test_an_active_adapter_changes_the_completion(client: LanguageClient) -> None:
    open_document(client, client.root / STORE)  # type: ignore[attr-defined]
    base = await complete(client, 2)
    assert base.strip(), "the coder gave no suggestion"
    activated = await command(client, "smalltalk.adapters.activate", "house")
    assert isinstance(activated, dict)
    assert activated["active"] is True and activated["loaded"] is True
    await wait_for(
        lambda: client.statuses[-1]["adapters"] == ["house"],  # type: ignore[attr-defined]
        "the status to show the adapter",
    )
    with_house = await complete(client, 3)
    assert with_house != base
    # The suggestion as a completion item (this client has no inline completion) names
    # the adapter that produced it.
    item = await model_item(client)
    assert item.detail == "coder model + house"
    assert isinstance(item.text_edit, types.TextEdit) and item.text_edit.new_text == with_house
    items = await listing(client)
    assert items["house"]["active"] and items["house"]["loaded"]
    await command(client, "smalltalk.adapters.deactivate", "house")
    assert await complete(client, 4) == base
    assert (await model_item(client)).detail == "coder model"
    assert (await listing(client))["house"]["loaded"] is False
    # A scale: half the adapter is another set, with its own suggestion.
    activated = await command(client, "smalltalk.adapters.activate", "house", 0.5)
    assert activated["scale"] == 0.5  # type: ignore[index]
    await command(client, "smalltalk.adapters.deactivate", "house")


async def test_bad_requests_get_a_message(client: LanguageClient) -> None:
    for args, needle in [
        (("nope",), "no adapter named 'nope'"),
        (("broken",), "truncated"),
        (("house", "loud"), "scale must be a number"),
        ((), "usage"),
    ]:
        try:
            await command(client, "smalltalk.adapters.activate", *args)
        except Exception as err:  # the JSON-RPC error, as pygls raises it
            assert needle in str(err), (args, str(err))
        else:
            raise AssertionError(f"activate {args} was accepted")
    # The server is still serving.
    assert "house" in await listing(client)


async def test_files_added_and_removed_while_running(client: LanguageClient) -> None:
    folder = folder_of(client)
    base = resolve_model_path("gemma3-270m")
    late = testing.write_lora(folder / "late.gguf", base, seed=5, rank=2)
    watched(client, late, types.FileChangeType.Created)
    await command(client, "smalltalk.adapters.activate", "late")
    assert (await listing(client))["late"]["loaded"] is True
    late.unlink()
    watched(client, late, types.FileChangeType.Deleted)
    await wait_for(
        lambda: client.statuses[-1]["adapters"] == [],  # type: ignore[attr-defined]
        "the removed adapter to be unloaded",
    )
    assert "late" not in await listing(client)
