"""End to end: code actions apply the LoRA adapters of their role and file. `smalltalk-lsp
serve` with the embedded models and real adapters written at test time into the workspace's
`.smalltalk-lsp/adapters/`: one for the reasoner (SmolLM2, llama architecture), one for the
coder (Gemma 3). An active adapter changes what Explain (reasoner) and Add method comment
(coder) write, and the note names it; deactivating it gives exactly the base output again (no
KV state computed under the adapter is reused); activating it through the settings
(`adapters.active`) gives the same output as through the command."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_lsp
from lsp_support import (
    copy_sample,
    doc,
    find,
    open_document,
    record_status,
    server_config,
    start_session,
    uri_of,
    wait_for,
)
from lsprotocol import types
from pygls.uris import to_fs_path
from pytest_lsp import LanguageClient

from adapters import testing
from server.engine.embedded import resolve_model_path

pytestmark = pytest.mark.asyncio(loop_scope="module")
# A private user data dir: the user's own adapters stay out of the test.
SERVER = server_config({"XDG_DATA_HOME": tempfile.mkdtemp(prefix="actions-adapters-")})
OPTIONS: dict[str, Any] = {
    # The adapters below are written for these two models' shapes.
    "models": {"code_generation": "gemma3-270m", "reasoning": "smollm2-135m"},
    # The adapters live in the workspace: trusted, or they are ignored (server.trust).
    "trust": {"workspace": True},
    "cpu_settings": {"context_length": 2048},
    "retrieval": {"enabled": False},
    "completion": {"enabled": False},
    "actions": {
        "max_tokens": 32,
        "code_max_tokens": 32,
        "attempts": 1,
        "temperature": 0.0,
        "hover_summaries": False,
    },
}
STORE = "StreamingRights-Core/SRStore.class.st"
ACTION_TIMEOUT = 300


@pytest_lsp.fixture(scope="module", config=SERVER)
async def client(lsp_client: LanguageClient, tmp_path_factory):
    record_status(lsp_client)
    root = copy_sample("tonel", tmp_path_factory.mktemp("actions-adapters"))
    lsp_client.root = root  # type: ignore[attr-defined]
    folder = root / ".smalltalk-lsp" / "adapters"
    # Bare files: each goes to the role whose model has its architecture.
    testing.write_lora(folder / "prose.gguf", resolve_model_path("smollm2-135m"), seed=3,
                       strength=0.3)
    testing.write_lora(folder / "house.gguf", resolve_model_path("gemma3-270m"), seed=1,
                       strength=0.1)
    await start_session(lsp_client, root, OPTIONS)
    await wait_for(lambda: ready(lsp_client), "both models", timeout=240)
    open_document(lsp_client, root / STORE)
    yield
    await lsp_client.shutdown_session()


def ready(client: LanguageClient) -> bool:
    statuses = client.statuses  # type: ignore[attr-defined]
    return bool(statuses) and statuses[-1].models.coder == "ready" and (
        statuses[-1].models.reasoner == "ready"
    )


async def command(client: LanguageClient, name: str, *args: object) -> Any:
    return await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command=name, arguments=list(args))
    )


async def resolved(client: LanguageClient, kind: str) -> types.CodeAction:
    """Action `kind` on `SRStore >> isEmpty`, resolved (the model runs)."""
    path = client.root / STORE  # type: ignore[attr-defined]
    at = find(path.read_text(encoding="utf-8"), "isEmpty [", skip=2)
    actions = await client.text_document_code_action_async(
        types.CodeActionParams(
            text_document=doc(uri_of(path)),
            range=types.Range(start=at, end=at),
            context=types.CodeActionContext(diagnostics=[], only=[f"refactor.smalltalk.{kind}"]),
        )
    )
    assert actions and isinstance(actions[0], types.CodeAction), actions
    return await asyncio.wait_for(client.code_action_resolve_async(actions[0]), ACTION_TIMEOUT)


async def explanation(client: LanguageClient) -> tuple[str, str]:
    """(the note's header line, the rest of the note) of Explain on isEmpty."""
    action = await resolved(client, "explain")
    assert action.command is not None and action.command.arguments
    note = Path(to_fs_path(str(action.command.arguments[0])) or "")
    lines = note.read_text(encoding="utf-8").splitlines()
    header = next(line for line in lines if line.startswith("_Written by"))
    # The header says how long it took; everything else is the model's.
    return header, "\n".join(line for line in lines if line != header)


def explainer(client: LanguageClient, headers: list[str]) -> Callable[[], Awaitable[str]]:
    """Explain on isEmpty, keeping each note's header in `headers`."""

    async def explained() -> str:
        header, text = await explanation(client)
        headers.append(header)
        return text

    return explained


async def comment(client: LanguageClient) -> str:
    """The comment Add method comment writes into isEmpty."""
    action = await resolved(client, "comment")
    assert action.edit is not None and action.edit.changes
    (edits,) = action.edit.changes.values()
    return "".join(edit.new_text for edit in edits)


async def outputs(action: Callable[[], Awaitable[str]]) -> set[str]:
    """What an adapter set gives for one prompt: the output evaluated whole, and evaluated
    over the KV prefix the first run left. The two can differ where two tokens nearly tie
    (llama.cpp's batched and one-token kernels round differently): a later run under the
    same set gives one of them, depending on whether a KV snapshot was restored."""
    return {await action(), await action()}


async def configure(client: LanguageClient, active: list[str]) -> None:
    """`adapters.active` through workspace/didChangeConfiguration, once the server uses it."""
    settings = {**OPTIONS, "adapters": {"active": active}}
    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings=settings)
    )
    for _ in range(100):
        listing = {a["name"]: a for a in await command(client, "smalltalk.adapters.list")}
        if listing["prose"]["active"] == ("prose" in active) and (
            listing["prose"]["loaded"] == ("prose" in active)
        ):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the server did not take adapters.active = {active}: {listing}")


async def test_a_reasoner_adapter_changes_explain_and_deactivating_restores_it(
    client: LanguageClient,
) -> None:
    listing = {a["name"]: a for a in await command(client, "smalltalk.adapters.list")}
    assert listing["prose"]["role"] == "reasoner" and listing["house"]["role"] == "coder"
    headers: list[str] = []
    explained = explainer(client, headers)
    base = await outputs(explained)
    assert headers[-1].startswith("_Written by the reasoning model (smollm2-135m) "), headers

    # Configured for the workspace: another explanation, and the note names the adapter.
    await configure(client, ["prose"])
    with_prose = await outputs(explained)
    assert with_prose.isdisjoint(base), (with_prose, base)
    assert headers[-1].startswith("_Written by the reasoning model (smollm2-135m + prose) ")
    await configure(client, [])
    assert await explained() in base
    assert "prose" not in headers[-1]

    # Activated by command: the same set, so the same explanation; deactivated: the base's.
    activated = await command(client, "smalltalk.adapters.activate", "prose")
    assert activated["active"] is True and activated["loaded"] is True, activated
    assert await explained() in with_prose
    await command(client, "smalltalk.adapters.deactivate", "prose")
    assert await explained() in base


async def test_a_coder_adapter_changes_the_code_actions_of_the_coder(
    client: LanguageClient,
) -> None:
    base = await outputs(lambda: comment(client))
    assert all(text.strip() for text in base), "the coder wrote no comment"
    await command(client, "smalltalk.adapters.activate", "house")
    with_house = await outputs(lambda: comment(client))
    assert with_house.isdisjoint(base), (with_house, base)
    await command(client, "smalltalk.adapters.deactivate", "house")
    assert await comment(client) in base
