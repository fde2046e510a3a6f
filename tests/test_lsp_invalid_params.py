"""End to end: spec-invalid requests (negative or non-integer positions, missing fields, unknown
documents) are answered with InvalidParams, and the server keeps serving (pygls 2.1.1 alone
leaves the first two unanswered)."""

from __future__ import annotations

import asyncio
import itertools
from concurrent.futures import Future
from typing import Any

import pytest
import pytest_lsp
from lsp_support import SERVER, doc, open_document, start_sample
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pytest_lsp import LanguageClient

pytestmark = pytest.mark.asyncio(loop_scope="module")
STORE = "StreamingRights-Core/SRStore.class.st"
INVALID_PARAMS = -32602
_IDS = itertools.count()


@pytest_lsp.fixture(scope="module", config=SERVER)
async def client(lsp_client: LanguageClient, tmp_path_factory):
    root = await start_sample(lsp_client, "tonel", tmp_path_factory)
    lsp_client.uri = open_document(lsp_client, root / STORE)  # type: ignore[attr-defined]
    yield
    await lsp_client.shutdown_session()


async def raw(client: LanguageClient, method: str, params: dict[str, Any]) -> JsonRpcException:
    """Send `params` as they are (the client's own types would refuse them) and return the
    error the server answered with."""
    msg_id = f"raw-{next(_IDS)}"
    future: Future[Any] = Future()
    client.protocol._request_futures[msg_id] = future  # the response resolves it
    # A plain dict is written as it is (the typed request classes would refuse these params).
    client.protocol._send_data(
        {"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params}
    )
    with pytest.raises(JsonRpcException) as err:
        await asyncio.wait_for(asyncio.wrap_future(future), 30)
    return err.value


@pytest.mark.parametrize(
    "position",
    [
        {"line": -1, "character": 0},
        {"line": 3, "character": -5},
        {"line": "3", "character": 0},
        {"line": 1.5, "character": 0},
        {"line": True, "character": 0},
        {"line": 2**40, "character": 0},
    ],
)
async def test_bad_positions_get_invalid_params(client: LanguageClient, position) -> None:
    uri = client.uri  # type: ignore[attr-defined]
    for method in ("textDocument/hover", "textDocument/definition", "textDocument/completion"):
        error = await raw(client, method, {"textDocument": {"uri": uri}, "position": position})
        assert error.code == INVALID_PARAMS, (method, error)
        assert "position" in error.message, error.message
    ranges = {"start": position, "end": {"line": 4, "character": 0}}
    error = await raw(client, "textDocument/codeAction", {
        "textDocument": {"uri": uri}, "range": ranges, "context": {"diagnostics": []},
    })
    assert error.code == INVALID_PARAMS and "range.start" in error.message


async def test_missing_fields_get_invalid_params(client: LanguageClient) -> None:
    uri = client.uri  # type: ignore[attr-defined]
    error = await raw(client, "textDocument/hover", {"textDocument": {"uri": uri}})
    assert error.code == INVALID_PARAMS and "position" in error.message, error.message
    error = await raw(client, "textDocument/documentSymbol", {})
    assert error.code == INVALID_PARAMS and "textDocument" in error.message, error.message


async def test_unknown_documents_get_invalid_params(client: LanguageClient) -> None:
    for uri in ("file:///nowhere/Missing.st", "untitled:Untitled-9", "gopher://x/y.st"):
        error = await raw(client, "textDocument/hover", {
            "textDocument": {"uri": uri}, "position": {"line": 0, "character": 0},
        })
        assert error.code == INVALID_PARAMS and uri in error.message, error.message


async def test_the_server_keeps_serving(client: LanguageClient) -> None:
    uri = client.uri  # type: ignore[attr-defined]
    await raw(client, "textDocument/hover", {
        "textDocument": {"uri": uri}, "position": {"line": -1, "character": -1},
    })
    symbols = await client.text_document_document_symbol_async(
        types.DocumentSymbolParams(text_document=doc(uri))
    )
    assert symbols and symbols[0].name == "SRStore"
