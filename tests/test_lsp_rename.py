"""End-to-end: rename in every source format. Each rename's edit is applied to the copy of the
sample project and the result parsed again: the new selector has exactly the old one's
implementors and senders, the old none."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytest_lsp
from lsp_support import FORMATS, SERVER, doc, open_document, start_sample
from lsprotocol import types
from pytest_lsp import LanguageClient

from server.project_model import numbered_methods
from smalltalk_grammar import offset_at, parse_path
from smalltalk_grammar.model import Position

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_lsp.fixture(scope="module", params=FORMATS, config=SERVER)
async def client(lsp_client: LanguageClient, request, tmp_path_factory):
    await start_sample(lsp_client, request.param, tmp_path_factory)
    yield
    await lsp_client.shutdown_session()


def usage(root: Path, selector: str) -> tuple[list[str], list[str]]:
    """(implementors, senders) as 'Class side selector' of every method of the project."""
    methods = [m for s in parse_path(root) for m in numbered_methods(s)]
    impls = sorted(f"{m.class_name} {m.side}" for m in methods if m.selector == selector)
    senders = sorted(
        f"{m.class_name} {m.side} {m.selector}"
        for m in methods
        if selector in {*m.sends, *m.symbols}
    )
    return impls, senders


def first_position(root: Path, needle: str) -> tuple[Path, types.Position]:
    for path in sorted(root.rglob("*.st")):
        for number, line in enumerate(path.read_text().splitlines()):
            col = line.find(needle)
            if col >= 0:
                return path, types.Position(line=number, character=col)
    raise AssertionError(needle)


def apply(edit: types.WorkspaceEdit) -> None:
    for change in edit.document_changes or []:
        assert isinstance(change, types.TextDocumentEdit)
        path = Path(change.text_document.uri.removeprefix("file://"))
        text = path.read_text()
        spans = []
        for e in change.edits:
            r = e.range
            start = offset_at(text, Position(line=r.start.line, character=r.start.character))
            end = offset_at(text, Position(line=r.end.line, character=r.end.character))
            spans.append((start, end, e.new_text))
        for start, end, new in sorted(spans, reverse=True):
            text = text[:start] + new + text[end:]
        path.write_text(text)


async def rename(client: LanguageClient, needle: str, new: str):
    root = client.root  # type: ignore[attr-defined]
    path, at = first_position(root, needle)
    uri = open_document(client, path)
    prepared = await client.text_document_prepare_rename_async(
        types.PrepareRenameParams(text_document=doc(uri), position=at)
    )
    edit = await client.text_document_rename_async(
        types.RenameParams(text_document=doc(uri), position=at, new_name=new)
    )
    return prepared, edit


@pytest.mark.parametrize(
    ("needle", "old", "new"),
    [
        ("isActiveOn: aDate", "isActiveOn:", "isLiveOn:"),
        # A keyword selector sent with its parts on one line, defined in another file.
        ("setStart: aDate end:", "setStart:end:", "setBegin:finish:"),
        # Sent through `perform: #durationInDays`.
        ("durationInDays", "durationInDays", "lengthInDays"),
    ],
)
async def test_rename_selector_keeps_implementors_and_senders(
    client: LanguageClient, needle: str, old: str, new: str
):
    root = client.root  # type: ignore[attr-defined]
    before = usage(root, old)
    assert before[0] and before[1]
    prepared, edit = await rename(client, needle, new)
    assert prepared is not None and edit is not None
    assert edit.change_annotations and all(
        a.needs_confirmation for a in edit.change_annotations.values()
    )
    apply(edit)
    renamed = [s.replace(f" {old}", f" {new}") for s in before[1]]
    after = usage(root, new)
    assert after == (before[0], sorted(renamed))
    assert usage(root, old) == ([], [])


async def test_rename_refuses_pseudo_variables_and_kernel_selectors(client: LanguageClient):
    prepared, edit = await rename(client, "self", "me")
    assert prepared is None and edit is None
    prepared, edit = await rename(client, "printOn: aStream", "show:")
    assert edit is None
