"""End-to-end: a rename of a selector with thousands of senders reports `$/progress`, and
`$/cancelRequest` ends it in the middle with RequestCancelled and no edit. The project is
generated here (our own Tonel source: one implementor, 40 classes of 100 senders)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import pytest_lsp
from lsp_support import SERVER, doc, open_document, start_session, wait_for
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pytest_lsp import LanguageClient
from test_lsp_rename_scopes import apply

from server.project_model import numbered_methods
from smalltalk_grammar import parse_path

pytestmark = pytest.mark.asyncio(loop_scope="module")

CLASSES, METHODS = 40, 100
REQUEST_CANCELLED = -32800


def generate(root: Path) -> None:
    package = root / "Pulse-Core"
    package.mkdir(parents=True)
    (package / "package.st").write_text("Package { #name : #'Pulse-Core' }\n")
    (package / "PulseTarget.class.st").write_text(
        "Class {\n\t#name : #PulseTarget,\n\t#superclass : #Object,\n"
        "\t#category : #'Pulse-Core'\n}\n\n"
        "{ #category : #signalling }\nPulseTarget >> ping: aCount [\n\n\t^ aCount + 1\n]\n"
    )
    for c in range(CLASSES):
        methods = "".join(
            f"\n{{ #category : #calling }}\nPulseCaller{c} >> call{m} [\n\n"
            f"\t^ PulseTarget new ping: {m}\n]\n"
            for m in range(METHODS)
        )
        (package / f"PulseCaller{c}.class.st").write_text(
            f"Class {{\n\t#name : #PulseCaller{c},\n\t#superclass : #Object,\n"
            f"\t#category : #'Pulse-Core'\n}}\n{methods}"
        )


@pytest_lsp.fixture(scope="module", config=SERVER)
async def client(lsp_client: LanguageClient, tmp_path_factory):
    root = tmp_path_factory.mktemp("pulse") / "pulse"
    generate(root)
    lsp_client.root = root  # type: ignore[attr-defined]
    await start_session(lsp_client, root)
    yield
    await lsp_client.shutdown_session()


def senders(root: Path, selector: str) -> int:
    methods = [m for s in parse_path(root) for m in numbered_methods(s)]
    return sum(selector in m.sends for m in methods)


def rename_params(client: LanguageClient, new: str) -> types.RenameParams:
    path = client.root / "Pulse-Core" / "PulseCaller0.class.st"  # type: ignore[attr-defined]
    uri = open_document(client, path)
    line = next(i for i, t in enumerate(path.read_text().splitlines()) if "ping:" in t)
    at = types.Position(line=line, character=path.read_text().splitlines()[line].index("ping:"))
    return types.RenameParams(text_document=doc(uri), position=at, new_name=new)


def rename_progress(client: LanguageClient, before: set[str]) -> tuple[object, list]:
    """(token, values) of the rename's progress begun since `before`."""
    for token, values in client.progress_reports.items():
        if token in before or not values:
            continue
        first = values[0]
        if isinstance(first, types.WorkDoneProgressBegin) and first.title.startswith("rename"):
            return token, list(values)
    return None, []


def rename_reports(client: LanguageClient, before: set[str]) -> list:
    return rename_progress(client, before)[1]


async def test_cancel_request_ends_a_long_rename_without_an_edit(client: LanguageClient):
    root = client.root  # type: ignore[attr-defined]
    texts = {p: p.read_text() for p in root.rglob("*.st")}
    before = set(client.progress_reports)
    params = rename_params(client, "beat:")
    future = client.protocol.send_request(types.TEXT_DOCUMENT_RENAME, params, msg_id="rename-1")
    # Cancel once the rename reports that it is under way.
    await wait_for(
        lambda: any(isinstance(v, types.WorkDoneProgressReport)
                    for v in rename_reports(client, before)),
        "the rename's first progress report",
    )
    client.cancel_request(types.CancelParams(id="rename-1"))
    with pytest.raises(JsonRpcException) as raised:
        await asyncio.wait_for(asyncio.wrap_future(future), 30)
    assert raised.value.code == REQUEST_CANCELLED
    await wait_for(
        lambda: isinstance(rename_reports(client, before)[-1], types.WorkDoneProgressEnd),
        "the rename's progress to end",
    )
    reports = [
        v for v in rename_reports(client, before) if isinstance(v, types.WorkDoneProgressReport)
    ]
    assert reports[-1].percentage is not None and reports[-1].percentage < 100
    assert {p: p.read_text() for p in root.rglob("*.st")} == texts
    assert not client.shown_documents


async def test_progress_cancel_ends_a_long_rename_without_an_edit(client: LanguageClient):
    """The rename's progress is cancellable (VS Code shows a Cancel button on it):
    `window/workDoneProgress/cancel` ends the request as `$/cancelRequest` does."""
    root = client.root  # type: ignore[attr-defined]
    texts = {p: p.read_text() for p in root.rglob("*.st")}
    before = set(client.progress_reports)
    params = rename_params(client, "tick:")
    future = client.protocol.send_request(types.TEXT_DOCUMENT_RENAME, params, msg_id="rename-2")
    await wait_for(
        lambda: any(isinstance(v, types.WorkDoneProgressReport)
                    for v in rename_reports(client, before)),
        "the rename's first progress report",
    )
    token, values = rename_progress(client, before)
    assert isinstance(values[0], types.WorkDoneProgressBegin) and values[0].cancellable
    client.window_work_done_progress_cancel(types.WorkDoneProgressCancelParams(token=token))
    with pytest.raises(JsonRpcException) as raised:
        await asyncio.wait_for(asyncio.wrap_future(future), 30)
    assert raised.value.code == REQUEST_CANCELLED
    assert {p: p.read_text() for p in root.rglob("*.st")} == texts


async def test_long_rename_reports_progress_and_renames_every_sender(client: LanguageClient):
    root = client.root  # type: ignore[attr-defined]
    assert senders(root, "ping:") == CLASSES * METHODS
    before = set(client.progress_reports)
    edit = await client.text_document_rename_async(rename_params(client, "beat:"))
    assert edit is not None
    reports = rename_reports(client, before)
    assert isinstance(reports[0], types.WorkDoneProgressBegin)
    percentages = [v.percentage for v in reports if isinstance(v, types.WorkDoneProgressReport)]
    assert len(percentages) >= 10 and percentages == sorted(percentages)
    await wait_for(
        lambda: isinstance(rename_reports(client, before)[-1], types.WorkDoneProgressEnd),
        "the rename's progress to end",
    )
    apply(client, edit)
    assert senders(root, "beat:") == CLASSES * METHODS
    assert senders(root, "ping:") == 0
