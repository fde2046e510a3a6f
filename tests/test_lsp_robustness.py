"""End-to-end: bad input and load (unknown documents, positions past the end, a flood of
edits, files changed or deleted outside the editor), settings, logging, diagnostics, cache."""

from __future__ import annotations

import asyncio

import pytest
import pytest_lsp
from lsp_support import (
    SERVER,
    STATIC_ONLY,
    close_document,
    copy_sample,
    doc,
    find,
    insert,
    open_document,
    start_sample,
    start_session,
    uri_of,
    wait_for,
)
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pytest_lsp import LanguageClient

pytestmark = pytest.mark.asyncio(loop_scope="module")

STORE = "StreamingRights-Core/SRStore.class.st"
GHOST = """Class {
\t#name : #SRGhost,
\t#superclass : #Object,
\t#category : #'StreamingRights-Core'
}

{ #category : #accessing }
SRGhost >> haunt [
\t^ self boo
]
"""


@pytest_lsp.fixture(scope="module", config=SERVER)
async def client(lsp_client: LanguageClient, tmp_path_factory):
    await start_sample(lsp_client, "tonel", tmp_path_factory)
    yield
    await lsp_client.shutdown_session()


async def hover(client: LanguageClient, uri: str, pos: types.Position) -> str | None:
    result = await client.text_document_hover_async(
        types.HoverParams(text_document=doc(uri), position=pos)
    )
    if result is None:
        return None
    assert isinstance(result.contents, types.MarkupContent)
    return result.contents.value


async def class_symbols(client: LanguageClient, query: str) -> list[str]:
    found = await client.workspace_symbol_async(types.WorkspaceSymbolParams(query=query))
    return [s.name for s in found or [] if s.kind == types.SymbolKind.Class]


async def test_unknown_documents_get_invalid_params(client: LanguageClient):
    """A request about a document that is neither open nor a file is answered with
    InvalidParams naming it (server.requests), not with an empty result."""
    uri = "file:///nowhere/Missing.st"
    pos = types.Position(line=3, character=4)
    requests = [
        client.text_document_hover_async(types.HoverParams(text_document=doc(uri), position=pos)),
        client.text_document_definition_async(
            types.DefinitionParams(text_document=doc(uri), position=pos)
        ),
        client.text_document_references_async(
            types.ReferenceParams(
                text_document=doc(uri),
                position=pos,
                context=types.ReferenceContext(include_declaration=True),
            )
        ),
        client.text_document_document_symbol_async(
            types.DocumentSymbolParams(text_document=doc(uri))
        ),
        client.text_document_completion_async(
            types.CompletionParams(text_document=doc(uri), position=pos)
        ),
        client.text_document_hover_async(
            types.HoverParams(text_document=doc("untitled:Untitled-1"), position=pos)
        ),
    ]
    for request in requests:
        with pytest.raises(JsonRpcException) as err:
            await request
        assert err.value.code == -32602 and "unknown document" in err.value.message


async def test_positions_past_the_end_are_clamped(client: LanguageClient):
    path = client.root / STORE  # type: ignore[attr-defined]
    uri = open_document(client, path)
    try:
        far = types.Position(line=100000, character=100000)
        await hover(client, uri, far)
        await client.text_document_definition_async(
            types.DefinitionParams(text_document=doc(uri), position=far)
        )
        await client.text_document_completion_async(
            types.CompletionParams(text_document=doc(uri), position=far)
        )
        long_line = types.Position(line=24, character=5000)  # past the end of a line
        await client.text_document_signature_help_async(
            types.SignatureHelpParams(text_document=doc(uri), position=long_line)
        )
        # Still alive and right.
        text = path.read_text()
        assert (await hover(client, uri, find(text, "addRight: aRight", 35))) is not None
    finally:
        close_document(client, uri)


async def test_a_flood_of_changes_is_applied_in_order(client: LanguageClient):
    path = client.root / STORE  # type: ignore[attr-defined]
    uri = open_document(client, path)
    try:
        text = path.read_text()
        lines = text.split("\n")
        line, col = len(lines) - 1, len(lines[-1])
        method = (
            "\n{ #category : #accessing }\nSRStore >> flooded [\n"
            '\t"Typed one character at a time"\n\t^ self addRight: 42\n]\n'
        )
        version = 1
        for _ in range(3):  # type the method three times over: about 300 notifications
            for char in method:
                version += 1
                insert(client, uri, version, types.Position(line=line, character=col), char)
                if char == "\n":
                    line, col = line + 1, 0
                else:
                    col += 1
        new_text = text + method * 3
        last = new_text.split("\n")
        send_line = max(i for i, t in enumerate(last) if "self addRight: 42" in t)
        pos = types.Position(line=send_line, character=last[send_line].index("addRight:") + 3)
        value = await hover(client, uri, pos)
        # On disk SRRegionalStore and the two tests send it; each typed copy is one more.
        assert value is not None and value.startswith("**addRight:** — 2 implementors, 6 senders")
        symbols = await client.text_document_document_symbol_async(
            types.DocumentSymbolParams(text_document=doc(uri))
        )
        store = next(s for s in symbols or [] if s.name == "SRStore")
        accessing = next(c for c in store.children or [] if c.name == "accessing")
        assert [c.name for c in accessing.children or []].count("flooded") == 3
    finally:
        close_document(client, uri)
    # Closed: the file on disk is the truth again (notifications are handled in order).
    symbols = await client.workspace_symbol_async(types.WorkspaceSymbolParams(query="flooded"))
    assert [s.name for s in symbols or [] if s.name == "flooded"] == []


async def test_file_watchers_are_registered(client: LanguageClient):
    registrations = client.registrations  # type: ignore[attr-defined]
    watched = [r for r in registrations if r.id == "smalltalk-lsp-watch"]
    assert len(watched) == 1
    assert watched[0].method == types.WORKSPACE_DID_CHANGE_WATCHED_FILES
    globs = [w["globPattern"] for w in watched[0].register_options["watchers"]]
    assert "**/*.st" in globs


def _watched(client: LanguageClient, uri: str, kind: types.FileChangeType) -> None:
    client.workspace_did_change_watched_files(
        types.DidChangeWatchedFilesParams(changes=[types.FileEvent(uri=uri, type=kind)])
    )


async def test_files_created_changed_and_deleted_outside_the_editor(client: LanguageClient):
    path = client.root / "StreamingRights-Core" / "SRGhost.class.st"  # type: ignore[attr-defined]
    uri = uri_of(path)
    path.write_text(GHOST)
    _watched(client, uri, types.FileChangeType.Created)
    await wait_for_symbols(client, "SRGhost", ["SRGhost"])
    path.write_text(GHOST.replace("SRGhost", "SRPhantom"))
    _watched(client, uri, types.FileChangeType.Changed)
    await wait_for_symbols(client, "SRPhantom", ["SRPhantom"])
    assert await class_symbols(client, "SRGhost") == []
    path.unlink()
    _watched(client, uri, types.FileChangeType.Deleted)
    await wait_for_symbols(client, "SRPhantom", [])


async def test_a_file_deleted_while_open_keeps_its_buffer(client: LanguageClient):
    path = client.root / "StreamingRights-Core" / "SRGhost.class.st"  # type: ignore[attr-defined]
    path.write_text(GHOST)
    uri = uri_of(path)
    _watched(client, uri, types.FileChangeType.Created)
    await wait_for_symbols(client, "SRGhost", ["SRGhost"])
    opened = open_document(client, path)
    path.unlink()
    _watched(client, uri, types.FileChangeType.Deleted)
    try:
        await wait_for_symbols(client, "SRGhost", ["SRGhost"])
        value = await hover(client, opened, find(GHOST, "#SRGhost", skip=2))
        assert value is not None and value.startswith("```smalltalk\nObject subclass: #SRGhost")
    finally:
        close_document(client, opened)
    await wait_for_symbols(client, "SRGhost", [])


async def wait_for_symbols(client: LanguageClient, query: str, expected: list[str]) -> None:
    found: list[str] = []

    async def check() -> bool:
        nonlocal found
        found = await class_symbols(client, query)
        return found == expected

    for _ in range(100):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"workspace symbols for {query!r}: {found}, expected {expected}")


async def test_logs_reach_the_client(client: LanguageClient):
    messages = [m.message for m in client.log_messages]
    assert any("workspace roots:" in m for m in messages)
    assert any("indexed 10 files" in m for m in messages)


# --- sessions of their own ---------------------------------------------------------------------


async def test_diagnostics_follow_the_buffer(tmp_path):
    root = copy_sample("bad", tmp_path)
    client = await SERVER.start()
    try:
        await start_session(client, root)
        path = root / "unterminated-string.st"
        uri = open_document(client, path)
        await wait_for(lambda: uri in client.diagnostics, "diagnostics")
        errors = [
            d for d in client.diagnostics[uri] if d.severity == types.DiagnosticSeverity.Error
        ]
        assert any(d.range.start.line == 12 for d in errors)
        assert all(d.source == "smalltalk" for d in client.diagnostics[uri])
        close_document(client, uri)
        await wait_for(lambda: list(client.diagnostics[uri]) == [], "cleared diagnostics")
        await client.shutdown_session()
    finally:
        await client.stop()


async def test_bad_settings_are_reported_by_name(tmp_path):
    root = copy_sample("tonel", tmp_path)
    client = await SERVER.start()
    try:
        bad = {"enabled": False, "max_generate_ms": -5}
        options = {"smalltalk": {**STATIC_ONLY, "completion": bad}}
        options["smalltalk"]["bogus"] = 1
        await start_session(client, root, options)
        text = " ".join(m.message for m in client.messages)
        assert "completion.max_generate_ms" in text
        assert "bogus" in text
        client.workspace_did_change_configuration(
            types.DidChangeConfigurationParams(settings={"cpu_settings": {"threads": 0}})
        )
        await wait_for(
            lambda: any("cpu_settings.threads" in m.message for m in client.messages),
            "a message about cpu_settings.threads",
        )
        # The server goes on answering.
        found = await client.workspace_symbol_async(types.WorkspaceSymbolParams(query="SRStore"))
        assert found and found[0].name == "SRStore"
        await client.shutdown_session()
    finally:
        await client.stop()


async def test_restart_loads_the_cache(tmp_path):
    root = copy_sample("tonel", tmp_path)
    for expected in ("0 from cache, 10 parsed", "10 from cache, 0 parsed"):
        client = await SERVER.start()
        try:
            await start_session(client, root)
            await wait_for(
                lambda c=client: any("indexed 10 files" in m.message for m in c.log_messages),
                "the scan log",
            )
            logged = [m.message for m in client.log_messages if "indexed" in m.message]
            assert expected in logged[0]
            found = await client.workspace_symbol_async(
                types.WorkspaceSymbolParams(query="addRight")
            )
            assert len([s for s in found or [] if s.name == "addRight:"]) == 2
            await client.shutdown_session()
        finally:
            await client.stop()
    assert (root / ".smalltalk-lsp" / "cache.sqlite").is_file()


async def test_serve_over_tcp(tmp_path):
    import socket
    import sys

    from pytest_lsp.client import make_test_lsp_client

    root = copy_sample("tonel", tmp_path)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server", "serve", "--tcp", f"127.0.0.1:{port}"
    )
    client = make_test_lsp_client()
    try:
        for _ in range(200):
            try:
                await client.start_tcp("127.0.0.1", port)
                break
            except OSError:
                await asyncio.sleep(0.05)
        else:
            raise AssertionError("the server did not listen")
        await start_session(client, root)
        found = await client.workspace_symbol_async(types.WorkspaceSymbolParams(query="SRRgSt"))
        assert found and found[0].name == "SRRegionalStore"
        await client.shutdown_async(None)
        client.exit(None)
        await asyncio.wait_for(server.wait(), 30)
    finally:
        if server.returncode is None:
            server.kill()
            await server.wait()
        await client.stop()
