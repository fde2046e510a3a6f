"""End to end: an untrusted workspace that names a GGUF in its smalltalk-lsp.toml and holds an
adapter gets its static features and the user's own model, and one message naming the two files
it ignored; once the editor says the workspace is trusted (VS Code sends the setting on
onDidGrantWorkspaceTrust) the workspace's model and adapter load, without a restart."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
import pytest_lsp
from lsp_support import (
    copy_sample,
    doc,
    open_document,
    record_status,
    server_config,
    start_session,
    wait_for,
)
from lsprotocol import types
from pytest_lsp import LanguageClient

from adapters import testing
from server.engine.embedded import resolve_model_path

pytestmark = pytest.mark.asyncio(loop_scope="module")
USER_CONFIG = Path(tempfile.mkdtemp(prefix="trust-config-"))
SERVER = server_config(
    {"XDG_CONFIG_HOME": str(USER_CONFIG), "XDG_DATA_HOME": tempfile.mkdtemp(prefix="trust-data-")},
    debug=False,
)
# The user's own configuration: the embedded SmolLM2 as the coder, the "house" adapter active.
USER_TOML = """
[models]
code_generation = "smollm2-135m"
reasoning = "off"

[adapters]
active = ["house"]
"""
OPTIONS = {
    "retrieval": {"enabled": False},
    "actions": {"hover_summaries": False},
    "cpu_settings": {"context_length": 512, "threads": 1},
}
NOT_TRUSTED = "this workspace is not trusted"


def messages(client: LanguageClient, text: str) -> list[str]:
    return [m.message for m in client.messages if text in m.message]


def logged(client: LanguageClient, text: str) -> bool:
    return any(text in m.message for m in client.log_messages)


@pytest_lsp.fixture(scope="module", config=SERVER)
async def client(lsp_client: LanguageClient, tmp_path_factory):
    record_status(lsp_client, lambda params: params.models.coder)
    (USER_CONFIG / "smalltalk-lsp").mkdir(parents=True, exist_ok=True)
    (USER_CONFIG / "smalltalk-lsp" / "smalltalk-lsp.toml").write_text(USER_TOML)
    root = copy_sample("tonel", tmp_path_factory.mktemp("untrusted"))
    smollm = resolve_model_path("smollm2-135m")
    (root / "models").mkdir()
    # A real model under another name: once trusted, the workspace's file is what loads.
    shutil.copyfile(smollm, root / "models" / "coder.gguf")
    (root / "smalltalk-lsp.toml").write_text('[models]\ncode_generation = "models/coder.gguf"\n')
    adapter = testing.write_lora(
        root / ".smalltalk-lsp" / "adapters" / "house.gguf", smollm, rank=2, layers=[0], seed=4
    )
    lsp_client.root = root  # type: ignore[attr-defined]
    lsp_client.adapter = adapter  # type: ignore[attr-defined]
    await start_session(lsp_client, root, OPTIONS)
    yield
    await lsp_client.shutdown_session()


async def test_untrusted_then_trusted(client: LanguageClient) -> None:
    root: Path = client.root  # type: ignore[attr-defined]
    adapter: Path = client.adapter  # type: ignore[attr-defined]
    await wait_for(lambda: messages(client, NOT_TRUSTED), "the trust message")
    [text] = messages(client, NOT_TRUSTED)
    assert "models/coder.gguf" in text and str(adapter) in text
    assert "trust the workspace" in text

    # Static features work.
    uri = open_document(client, root / "StreamingRights-Core" / "SRStore.class.st")
    symbols = await client.text_document_document_symbol_async(
        types.DocumentSymbolParams(text_document=doc(uri))
    )
    assert symbols and any(s.name == "SRStore" for s in symbols)

    # The user's own model loads; the workspace's model and adapter do not.
    await wait_for(lambda: "ready" in client.statuses, "the user's model", timeout=120)  # type: ignore[attr-defined]
    assert logged(client, "SmolLM2-135M-Instruct.Q4_1.gguf")
    listing = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="smalltalk.adapters.list", arguments=[])
    )
    assert listing == []
    coder = str(root / "models" / "coder.gguf")
    assert not logged(client, f"loading {coder}")

    # The editor grants trust (VS Code: onDidGrantWorkspaceTrust -> didChangeConfiguration).
    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings={**OPTIONS, "trust": {"workspace": True}})
    )
    await wait_for(lambda: logged(client, f"loading {coder}"), "the workspace's model",
                   timeout=120)
    await wait_for(lambda: logged(client, f"loaded adapter house from {adapter}"),
                   "the workspace's adapter", timeout=120)
    listing = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="smalltalk.adapters.list", arguments=[])
    )
    assert [item["name"] for item in listing] == ["house"]
    assert listing[0]["error"] is None
    assert len(messages(client, NOT_TRUSTED)) == 1  # said once
