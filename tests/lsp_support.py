"""Helpers for the end-to-end tests that drive `python -m server serve` with pytest-lsp."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.uris import from_fs_path
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

SAMPLE = Path(__file__).parent / "fixtures" / "sample"
FORMATS = ["tonel", "chunk-squeak", "chunk-vw", "filetree", "gnu"]
SERVER = ClientServerConfig(server_command=[sys.executable, "-m", "server", "serve"])
# The static features are tested on their own: no model loads, no retrieval index is built.
STATIC_ONLY = {
    "models": {"code_generation": "off", "reasoning": "off"},
    "completion": {"enabled": False},
    "retrieval": {"enabled": False},
    "actions": {"hover_summaries": False},
}


def server_config(env: dict[str, str] | None = None, debug: bool = True) -> ClientServerConfig:
    """`python -m server serve`, logging at DEBUG unless told not to, with `env` added to
    this process's environment."""
    command = [sys.executable, "-m", "server", "serve"]
    return ClientServerConfig(
        server_command=command + ["--log-level", "DEBUG"] if debug else command,
        server_env={**os.environ, **env} if env is not None else None,
    )


def copy_sample(folder: str, target: Path) -> Path:
    """A private copy of one sample folder (the server writes its cache into the root)."""
    root = target / folder
    shutil.copytree(SAMPLE / folder, root)
    return root


def capabilities() -> types.ClientCapabilities:
    # VS Code's: work-done progress, dynamic registration of file watchers, snippets.
    return client_capabilities("visual-studio-code")


async def start_session(
    client: LanguageClient,
    root: Path,
    options: Any = STATIC_ONLY,
    as_client: types.ClientCapabilities | None = None,
) -> types.InitializeResult:
    """Initialize on `root` (as VS Code unless other capabilities are given), and wait until
    the workspace scan has reported its end."""
    client.registrations = []  # type: ignore[attr-defined]

    @client.feature(types.CLIENT_REGISTER_CAPABILITY)
    def register(params: types.RegistrationParams) -> None:
        client.registrations.extend(params.registrations)  # type: ignore[attr-defined]

    uri = from_fs_path(str(root))
    result = await client.initialize_session(
        types.InitializeParams(
            capabilities=as_client or capabilities(),
            root_uri=uri,
            workspace_folders=[types.WorkspaceFolder(uri=uri, name=root.name)],
            initialization_options=options,
        )
    )
    await wait_for(lambda: scan_ended(client), what="the workspace scan")
    return result


async def start_sample(
    client: LanguageClient, fmt: str, tmp_path_factory: Any, options: Any = STATIC_ONLY
) -> Path:
    """A session on a private copy of the sample folder `fmt`, which `client.fmt` and
    `client.root` name for the tests."""
    root = copy_sample(fmt, tmp_path_factory.mktemp(fmt))
    client.fmt, client.root = fmt, root  # type: ignore[attr-defined]
    await start_session(client, root, options)
    return root


def record_status(client: LanguageClient, pick: Callable[[Any], Any] = lambda p: p) -> None:
    """Keep each `smalltalk/status` notification, as `pick` makes it, in `client.statuses`."""
    client.statuses = []  # type: ignore[attr-defined]

    # Unannotated on purpose: pygls hands a parameter annotated with a supertype of the
    # client class (`object` included) the client itself instead of the params.
    @client.feature("smalltalk/status")
    def on_status(params):  # type: ignore[no-untyped-def]
        client.statuses.append(pick(params))  # type: ignore[attr-defined]


def scan_ended(client: LanguageClient) -> bool:
    return any(
        any(isinstance(v, types.WorkDoneProgressEnd) for v in reports)
        for reports in client.progress_reports.values()
    )


async def wait_for(condition: Any, what: str, timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def uri_of(path: Path) -> str:
    return from_fs_path(str(path)) or ""


def open_document(client: LanguageClient, path: Path, version: int = 1) -> str:
    uri = uri_of(path)
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(
                uri=uri,
                language_id="smalltalk",
                version=version,
                text=path.read_bytes().decode("utf-8"),
            )
        )
    )
    return uri


def close_document(client: LanguageClient, uri: str) -> None:
    client.text_document_did_close(
        types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri))
    )


def insert(client: LanguageClient, uri: str, version: int, at: types.Position, text: str) -> None:
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
            content_changes=[
                types.TextDocumentContentChangePartial(
                    range=types.Range(start=at, end=at), text=text
                )
            ],
        )
    )


def set_text(client: LanguageClient, uri: str, version: int, text: str) -> None:
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
            content_changes=[types.TextDocumentContentChangeWholeDocument(text=text)],
        )
    )


def end_of(text: str) -> types.Position:
    return types.Position(line=text.count("\n"), character=len(text.rsplit("\n", 1)[-1]))


async def suggest(client: LanguageClient, uri: str, at: types.Position) -> str:
    """The inline suggestion asked for explicitly at `at` ("" when there is none)."""
    result = await client.text_document_inline_completion_async(
        types.InlineCompletionParams(
            text_document=doc(uri),
            position=at,
            context=types.InlineCompletionContext(
                trigger_kind=types.InlineCompletionTriggerKind.Invoked
            ),
        )
    )
    assert isinstance(result, types.InlineCompletionList)
    if not result.items:
        return ""
    insert = result.items[0].insert_text
    return insert if isinstance(insert, str) else insert.value


def find(text: str, needle: str, from_line: int = 0, skip: int = 0) -> types.Position:
    """Position of the first `needle` at or after `from_line` (+ `skip` characters)."""
    lines = text.splitlines()
    for line in range(from_line, len(lines)):
        col = lines[line].find(needle)
        if col >= 0:
            return types.Position(line=line, character=col + skip)
    raise AssertionError(f"{needle!r} not found after line {from_line}")


def span(
    text: str, needle: str, from_line: int = 0, skip: int = 0, length: int | None = None
) -> types.Range:
    start = find(text, needle, from_line, skip)
    size = len(needle) - skip if length is None else length
    end = types.Position(line=start.line, character=start.character + size)
    return types.Range(start=start, end=end)


def doc(uri: str) -> types.TextDocumentIdentifier:
    return types.TextDocumentIdentifier(uri=uri)


def key(loc: types.Location) -> tuple[str, int, int, int, int]:
    r = loc.range
    return (loc.uri, r.start.line, r.start.character, r.end.line, r.end.character)
