"""End to end: the adapter shipped with the server for the default coder (`pharo`, in
server/lora/embedded/qwen2.5-coder-0.5b/) over stdio with the real Qwen2.5-Coder-0.5B: listed
in an untrusted workspace (it is the server's own, not the workspace's), off by default,
activated by command, changing a suggestion, deactivated, and the base suggestion back exactly."""

from __future__ import annotations

import os
import sys
import tempfile

import pytest
import pytest_lsp
from lsp_support import (
    copy_sample,
    end_of,
    open_document,
    set_text,
    start_session,
    suggest,
    uri_of,
    wait_for,
)
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

from server.lora.catalogue import EMBEDDED_ADAPTERS

pytestmark = pytest.mark.asyncio(loop_scope="module")
SERVER = ClientServerConfig(
    server_command=[sys.executable, "-m", "server", "serve"],
    server_env={**os.environ, "XDG_DATA_HOME": tempfile.mkdtemp(prefix="embedded-adapter-")},
)
# The default coder; the workspace is not trusted (the default).
OPTIONS = {
    "models": {"code_generation": "qwen2.5-coder-0.5b", "reasoning": "off"},
    "completion": {"max_generate_ms": 240000, "max_generate_ms_invoked": 240000},
}
STORE = "StreamingRights-Core/SRStore.class.st"
# A fixed cursor: the body of a new method, after its pattern and comment (the base coder
# writes `^ rights count` there; Pharo says `rights size`).
METHOD = ("\n{ #category : #accessing }\nSRStore >> rightsCount [\n"
          "\t\"How many rights I hold\"\n\n\t")


@pytest_lsp.fixture(scope="module", config=SERVER)
async def client(lsp_client: LanguageClient, tmp_path_factory):
    lsp_client.statuses = []  # type: ignore[attr-defined]

    @lsp_client.feature("smalltalk/status")
    def on_status(params):  # type: ignore[no-untyped-def]
        lsp_client.statuses.append(  # type: ignore[attr-defined]
            {"coder": params.models.coder, "adapters": list(params.adapters)}
        )

    root = copy_sample("tonel", tmp_path_factory.mktemp("embedded-adapter"))
    lsp_client.root = root  # type: ignore[attr-defined]
    await start_session(lsp_client, root, OPTIONS)
    await wait_for(
        lambda: any(s["coder"] == "ready" for s in lsp_client.statuses),  # type: ignore[attr-defined]
        "the coder model",
        timeout=300,
    )
    yield
    await lsp_client.shutdown_session()


async def command(client: LanguageClient, name: str, *args: object) -> object:
    return await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command=name, arguments=list(args))
    )


async def complete(client: LanguageClient, method: str, version: int) -> str:
    path = client.root / STORE  # type: ignore[attr-defined]
    uri = uri_of(path)
    text = path.read_text(encoding="utf-8") + method
    set_text(client, uri, version, text + "\n]\n")
    return await suggest(client, uri, end_of(text))


async def test_the_shipped_adapter_on_and_off(client: LanguageClient) -> None:
    assert (EMBEDDED_ADAPTERS / "qwen2.5-coder-0.5b" / "pharo.gguf").is_file()
    listed = {i["name"]: i for i in await command(client, "smalltalk.adapters.list")}  # type: ignore[union-attr]
    pharo = listed["pharo"]
    assert pharo["base_architecture"] == "qwen2" and pharo["error"] is None
    assert pharo["active"] is False and pharo["loaded"] is False
    assert "MIT" in pharo["description"]

    open_document(client, client.root / STORE)  # type: ignore[attr-defined]
    base = await complete(client, METHOD, 2)
    assert base.strip(), "the coder gave no suggestion"

    activated = await command(client, "smalltalk.adapters.activate", "pharo")
    assert isinstance(activated, dict)
    assert activated["active"] is True and activated["loaded"] is True
    await wait_for(
        lambda: client.statuses[-1]["adapters"] == ["pharo"],  # type: ignore[attr-defined]
        "the status to show the adapter",
    )
    tuned = await complete(client, METHOD, 3)
    print(f"base: {base!r}, with pharo: {tuned!r}")
    assert tuned.strip() and tuned != base

    await command(client, "smalltalk.adapters.deactivate", "pharo")
    assert await complete(client, METHOD, 4) == base
    listed = {i["name"]: i for i in await command(client, "smalltalk.adapters.list")}  # type: ignore[union-attr]
    assert listed["pharo"]["active"] is False and listed["pharo"]["loaded"] is False
