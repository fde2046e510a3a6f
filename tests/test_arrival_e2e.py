"""End to end, real server and real coder, default settings: suggestions always arrive.

A cold request in a new method of a large file gets a non-empty suggestion (no time budget
cuts the prompt), a superseded request is cancelled and the newer one answered, and coming back
to an earlier document restores its prompt state (the server's own counters in
`smalltalk/status` say how many tokens came back).

The coder is Qwen2.5-Coder-0.5B when the shared asset is on this machine (configured by path),
else the embedded default coder.
"""

from __future__ import annotations

import asyncio
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
    wait_for,
)
from lsprotocol import types
from pytest_lsp import LanguageClient

pytestmark = pytest.mark.asyncio(loop_scope="module")
SERVER = server_config()
# Default settings (the default coder) but for the reasoner, which plays no part here.
OPTIONS: dict[str, Any] = {"models": {"reasoning": "off"}}
INDEX_READY = ("retrieval index: ", "without similar-code search")
STORE = "StreamingRights-Core/SRStore.class.st"
LICENCE = "StreamingRights-Core/SRLicence.class.st"


def large_store(path: Path) -> str:
    """SRStore with forty more methods of our own, so the prompt fills its whole window."""
    methods = "".join(
        f"\n{{ #category : #generated }}\nSRStore >> rightNumber{i} [\n\n"
        f"\t^ self rights at: {i} ifAbsent: [ nil ]\n]\n"
        for i in range(1, 41)
    )
    return path.read_text(encoding="utf-8") + methods


def new_method(header: str, comment: str) -> str:
    """A method being written at the end of a file: its comment typed, the cursor below."""
    return f'\n{{ #category : #testing }}\n{header} [\n\t"{comment}"\n\n\t'


NEW_METHOD = new_method("SRStore >> hasNoRights", "Answer whether the store holds no rights")
NEW_LICENCE_METHOD = new_method("SRLicence >> isFree", "Answer whether the fee is zero")


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if hasattr(value, "_asdict"):  # pygls hands unknown notifications over as namedtuples
        return {k: _plain(v) for k, v in value._asdict().items()}
    return value


def statuses(client: LanguageClient) -> list[dict[str, Any]]:
    return client.statuses  # type: ignore[attr-defined, no-any-return]


@pytest_lsp.fixture(scope="module", config=SERVER)
async def client(lsp_client: LanguageClient, tmp_path_factory):
    record_status(lsp_client, lambda params: _plain(params).get("completion") or {})
    root = copy_sample("tonel", tmp_path_factory.mktemp("arrival"))
    lsp_client.root = root  # type: ignore[attr-defined]
    await start_session(lsp_client, root, OPTIONS)
    # From the index's readiness on, the same cursor gets the same prompt.
    await wait_for(
        lambda: any(any(n in m.message for n in INDEX_READY) for m in lsp_client.log_messages),
        "the retrieval index",
        timeout=600,
    )
    yield
    await lsp_client.shutdown_session()


def last_answer(client: LanguageClient, uri: str) -> dict[str, Any]:
    found = [s["last"] for s in statuses(client) if s.get("last", {}).get("uri") == uri]
    assert found, "no smalltalk/status report of the answer"
    return found[-1]


async def test_a_cold_request_in_a_new_method_of_a_large_file_is_answered(client):
    path = client.root / STORE
    uri = open_document(client, path, version=1)
    text = large_store(path) + NEW_METHOD
    set_text(client, uri, 2, text + "\n]\n")
    seen = len(statuses(client))
    suggestion = await suggest(client, uri, end_of(text))
    assert suggestion.strip(), "the cold request got no suggestion"
    last = last_answer(client, uri)
    assert last["source"] == "model" and last["reused_tokens"] < last["prompt_tokens"] // 2
    # Meanwhile the status said the coder was thinking, with the prompt's progress.
    thinking = [s for s in statuses(client)[seen:] if s.get("state") == "thinking"]
    assert thinking and all(s["uri"] == uri for s in thinking)
    assert any(s.get("total") == last["prompt_tokens"] for s in thinking)


async def test_a_superseded_request_is_cancelled_and_the_newer_answered(client):
    path = client.root / STORE
    uri = open_document(client, path, version=10)
    text = large_store(path) + new_method(
        "SRStore >> rightsCount", "Answer how many rights the store holds"
    )
    set_text(client, uri, 11, text + "\n]\n")
    seen = len(statuses(client))
    first = asyncio.ensure_future(suggest(client, uri, end_of(text)))
    await wait_for(
        lambda: any(s.get("state") == "thinking" and s.get("uri") == uri
                    for s in statuses(client)[seen:]),
        "the first request to be thinking",
        timeout=120,
    )
    # The user goes on editing before it is answered: the prompt changes near the cursor.
    newer = text.replace("rightsCount", "numberOfRights")
    set_text(client, uri, 12, newer + "\n]\n")
    second = await suggest(client, uri, end_of(newer))
    assert await first == ""
    assert second.strip()
    await wait_for(
        lambda: any("cancelled: model stopped" in m.message for m in client.log_messages),
        "the superseded request's model work to stop",
    )


async def test_coming_back_to_a_document_reuses_its_prompt_state(client):
    store_path, licence_path = client.root / STORE, client.root / LICENCE
    store = open_document(client, store_path, version=20)
    store_text = large_store(store_path) + new_method(
        "SRStore >> hasAnyRights", "Answer whether the store holds any right"
    )
    set_text(client, store, 21, store_text + "\n]\n")
    assert (await suggest(client, store, end_of(store_text))).strip()
    first = last_answer(client, store)

    licence = open_document(client, licence_path, version=1)
    licence_text = licence_path.read_text(encoding="utf-8") + NEW_LICENCE_METHOD
    set_text(client, licence, 2, licence_text + "\n]\n")
    await suggest(client, licence, end_of(licence_text))
    assert last_answer(client, licence)["restored_tokens"] == 0

    # Back to the store, where the user added a blank line below the cursor: only the text
    # after the cursor changed, so the prompt up to it comes back from the kept state.
    set_text(client, store, 22, store_text + "\n\n]\n")
    assert (await suggest(client, store, end_of(store_text))).strip()
    back = last_answer(client, store)
    assert back["source"] == "model"
    assert back["restored_tokens"] > first["prompt_tokens"] // 2
    assert back["reused_tokens"] >= back["restored_tokens"]


async def test_a_cursor_at_rest_in_a_method_has_its_suggestion_ready(client):
    path = client.root / STORE
    uri = open_document(client, path, version=30)
    text = large_store(path) + new_method(
        "SRStore >> hasRightsIn: aTerritory", "Answer whether the store holds a right there"
    )
    set_text(client, uri, 31, text + "\n]\n")
    seen = len(client.log_messages)
    # The editor asks for the highlights where the cursor stops (VS Code on every move).
    await client.text_document_document_highlight_async(
        types.DocumentHighlightParams(text_document=doc(uri), position=end_of(text))
    )
    await wait_for(
        lambda: any(f"suggestion for {uri} computed ahead" in m.message
                    for m in client.log_messages[seen:]),
        "the suggestion computed ahead for the cursor",
        timeout=600,
    )
    suggestion = await suggest(client, uri, end_of(text))
    assert suggestion.strip()
    last = last_answer(client, uri)
    # Ready from the cache; or, when the generation cap cut the work ahead (a loaded
    # machine), its evaluated prompt is reused.
    assert last["source"] == "cache" or last["reused_tokens"] >= last["prompt_tokens"] - 2
