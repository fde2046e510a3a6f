"""End-to-end: the real server over stdio indexes the workspace for retrieval in the
background after the scan, with `$/progress`, and re-embeds only what a changed file changed.
The language models are switched off here: indexing must not depend on them."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
from pathlib import Path

import pytest_lsp
from lsp_support import SERVER, copy_sample, start_session, uri_of, wait_for
from lsprotocol import types
from pytest_lsp import LanguageClient

from server.features.indexing import PROGRESS_TITLE

OPTIONS = {"models": {"code_generation": "off", "reasoning": "off"}}


@pytest_lsp.fixture(config=SERVER)
async def client(lsp_client: LanguageClient, tmp_path: Path):
    root = copy_sample("tonel", tmp_path)
    lsp_client.root = root  # type: ignore[attr-defined]
    await start_session(lsp_client, root, OPTIONS)
    yield
    await lsp_client.shutdown_session()


def _indexing_passes(client: LanguageClient) -> list[list[object]]:
    """Every finished `$/progress` run of the retrieval indexer, in order."""
    done = []
    for reports in client.progress_reports.values():
        first = reports[0] if reports else None
        if isinstance(first, types.WorkDoneProgressBegin) and first.title == PROGRESS_TITLE \
                and isinstance(reports[-1], types.WorkDoneProgressEnd):
            done.append(reports)
    return done


def _stats(client: LanguageClient) -> list[tuple[int, int, int, int]]:
    found = []
    for message in client.log_messages:
        match = re.search(r"retrieval index: (\d+) units, (\d+) embedded, (\d+) reused, "
                          r"(\d+) removed", message.message)
        if match:
            found.append(tuple(int(g) for g in match.groups()))
    return found


async def test_server_indexes_in_background_and_on_change(client: LanguageClient) -> None:
    root: Path = client.root  # type: ignore[attr-defined]
    await wait_for(lambda: len(_stats(client)) >= 1, "the first indexing pass", timeout=180)
    assert _stats(client)[0] == (51, 51, 0, 0)
    await wait_for(lambda: len(_indexing_passes(client)) >= 1, "the indexing progress end")
    reports = _indexing_passes(client)[0]
    assert any(isinstance(r, types.WorkDoneProgressReport) and r.message == "51/51 units"
               for r in reports)
    manifest_path = root / ".smalltalk-lsp" / "index" / "manifest.json"
    await wait_for(manifest_path.is_file, "the index files")
    manifest = json.loads(manifest_path.read_text())
    assert (manifest["model"], manifest["count"]) == ("all-minilm-l6-v2@onnx-int8/128", 51)

    # A file changed outside the editor: only its changed method is embedded again.
    path = root / "StreamingRights-Core" / "SRStore.class.st"
    path.write_text(path.read_text().replace("^ self rights isEmpty", "^ self rights size = 0"))
    client.workspace_did_change_watched_files(types.DidChangeWatchedFilesParams(changes=[
        types.FileEvent(uri=uri_of(path), type=types.FileChangeType.Changed)]))
    await wait_for(lambda: len(_stats(client)) >= 2, "the incremental pass", timeout=60)
    units, embedded, reused, removed = _stats(client)[1]
    assert (embedded, removed) == (1, 0) and reused == units - 1
    # The change is in the database at once (the FAISS file follows at most every few
    # minutes and on shutdown).
    db = sqlite3.connect(root / ".smalltalk-lsp" / "index" / "units.sqlite")
    try:
        generation = db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        assert int(generation[0]) > manifest["generation"]
        assert db.execute("SELECT COUNT(*) FROM units").fetchone()[0] == 51
    finally:
        db.close()


@pytest_lsp.fixture(config=SERVER)
async def broken_model_client(lsp_client: LanguageClient, tmp_path: Path):
    root = copy_sample("tonel", tmp_path)
    lsp_client.root = root  # type: ignore[attr-defined]
    options = {"models": {**OPTIONS["models"], "embeddings": str(tmp_path / "no-such-model")}}
    await start_session(lsp_client, root, options)
    yield
    await lsp_client.shutdown_session()


async def test_embedding_model_that_fails_to_load_is_reported_once(
    broken_model_client: LanguageClient,
) -> None:
    client = broken_model_client

    def warnings() -> list[str]:
        return [m.message for m in client.log_messages
                if "retrieval:" in m.message and "no-such-model" in m.message]

    await wait_for(lambda: warnings(), "the retrieval warning", timeout=60)
    # The server goes on: navigation still answers, and no index was written.
    root: Path = client.root  # type: ignore[attr-defined]
    path = root / "StreamingRights-Core" / "SRStore.class.st"
    result = await client.workspace_symbol_async(types.WorkspaceSymbolParams(query="SRStore"))
    assert result
    client.workspace_did_change_watched_files(types.DidChangeWatchedFilesParams(changes=[
        types.FileEvent(uri=uri_of(path), type=types.FileChangeType.Changed)]))
    await asyncio.sleep(3)
    assert len(warnings()) == 1
    assert not (root / ".smalltalk-lsp" / "index").exists()
