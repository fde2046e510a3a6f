"""End to end: the coder's `llama_cpp.server` is killed (SIGKILL) in the middle of a completion
request and started again. The request ends at once with no suggestion, the editor gets one
clear message, the static features keep working, later requests fail fast, and completions come
back by themselves once the server is up again."""

from __future__ import annotations

import asyncio
import time
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
from pytest_lsp import LanguageClient
from remote_support import plain_server, remote_options

pytestmark = pytest.mark.asyncio(loop_scope="module")

SERVER = server_config()
STORE = "StreamingRights-Core/SRStore.class.st"
EMPTY_METHOD = "\n{ #category : #testing }\nSRStore >> isEmpty [\n\n\t"


@pytest.fixture(scope="module")
def llm(tmp_path_factory: Any, gemma_model_path: Any) -> Any:
    server = plain_server(tmp_path_factory.mktemp("restart"), gemma_model_path, "gemma3-270m")
    yield server.start()
    server.stop()


@pytest_lsp.fixture(scope="module", config=SERVER)
async def client(lsp_client: LanguageClient, tmp_path_factory, llm):
    record_status(lsp_client, lambda params: params.models.coder)
    root = copy_sample("tonel", tmp_path_factory.mktemp("restart-ws"))
    lsp_client.root = root  # type: ignore[attr-defined]
    # Retries at most every 2 s, so the test does not wait long for the restarted server.
    options = remote_options(llm.url, coder_extra={"retry_max_s": 2.0})
    options.update({
        "retrieval": {"enabled": False},
        "completion": {"max_generate_ms": 300_000, "max_tokens_line": 12, "max_tokens_block": 16},
        "actions": {"hover_summaries": False},
    })
    await start_session(lsp_client, root, options)
    await wait_for(lambda: coder_state(lsp_client) == "ready", "the remote coder", timeout=120)
    yield
    await lsp_client.shutdown_session()


def coder_state(client: LanguageClient) -> str | None:
    statuses = client.statuses  # type: ignore[attr-defined]
    return statuses[-1] if statuses else None


def change(client: LanguageClient, version: int, head: str) -> tuple[str, types.Position]:
    path = client.root / STORE  # type: ignore[attr-defined]
    text = head + path.read_text(encoding="utf-8") + EMPTY_METHOD
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri_of(path), version=version),
            content_changes=[types.TextDocumentContentChangeWholeDocument(text=text + "\n]\n")],
        )
    )
    return uri_of(path), types.Position(line=text.count("\n"), character=1)


def inline(uri: str, at: types.Position) -> types.InlineCompletionParams:
    return types.InlineCompletionParams(
        text_document=doc(uri),
        position=at,
        context=types.InlineCompletionContext(
            trigger_kind=types.InlineCompletionTriggerKind.Invoked
        ),
    )


def text_of(result: Any) -> str:
    assert isinstance(result, types.InlineCompletionList)
    if not result.items:
        return ""
    insert = result.items[0].insert_text
    return insert if isinstance(insert, str) else insert.value


async def test_completions_before_the_crash(client: LanguageClient) -> None:
    open_document(client, client.root / STORE)  # type: ignore[attr-defined]
    uri, at = change(client, 2, "")
    assert text_of(await client.text_document_inline_completion_async(inline(uri, at))).strip()


async def test_killed_mid_request(client: LanguageClient, llm: Any) -> None:
    requests_before = llm.log.read_text().count("POST /v1/completions")
    # A new first line: the server evaluates the whole prompt again (seconds), time to kill it.
    uri, at = change(client, 3, '"after a crash"\n')
    pending = asyncio.ensure_future(client.text_document_inline_completion_async(inline(uri, at)))
    await wait_for(
        lambda: llm.log.read_text().count("POST /v1/completions") > requests_before,
        "the request to reach the server",
        timeout=60,
    )
    llm.kill()
    killed_at = time.monotonic()
    assert text_of(await asyncio.wait_for(pending, 30)) == ""
    assert time.monotonic() - killed_at < 5.0
    await wait_for(lambda: coder_state(client) == "failed", "the coder to be reported down")
    errors = [m.message for m in client.messages if m.type == types.MessageType.Error]
    assert len(errors) == 1, errors
    assert llm.url in errors[0] and "dropped the connection in the middle of a request" in errors[0]
    assert "static features keep working" in errors[0]


async def test_static_features_and_fast_failure_while_down(client: LanguageClient) -> None:
    path = client.root / STORE  # type: ignore[attr-defined]
    uri = uri_of(path)
    symbols = await client.text_document_document_symbol_async(
        types.DocumentSymbolParams(text_document=doc(uri))
    )
    assert symbols and "SRStore" in str(symbols)
    change(client, 4, "")  # the file's text again: positions as on disk
    text = path.read_text(encoding="utf-8")
    hover = await client.text_document_hover_async(
        types.HoverParams(text_document=doc(uri), position=types.Position(
            line=text[: text.index("rightsFor: aTerritory [")].count("\n"), character=3))
    )
    assert hover is not None and "Object subclass: #SRStore" in str(hover.contents)
    uri, at = change(client, 5, '"while down"\n')
    started = time.monotonic()
    assert text_of(await client.text_document_inline_completion_async(inline(uri, at))) == ""
    assert time.monotonic() - started < 1.0  # no network: the server is known to be down
    assert len([m for m in client.messages if m.type == types.MessageType.Error]) == 1


async def test_completions_come_back_after_a_restart(client: LanguageClient, llm: Any) -> None:
    llm.start()
    await wait_for(lambda: coder_state(client) == "ready", "the coder to come back", timeout=60)
    uri, at = change(client, 6, '"restarted"\n')
    assert text_of(await client.text_document_inline_completion_async(inline(uri, at))).strip()
