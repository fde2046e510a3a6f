"""End-to-end: document highlight and selection range, in every source format of the sample."""

from __future__ import annotations

import pytest
import pytest_lsp
from lsp_support import FORMATS, SERVER, doc, open_document, start_sample
from lsprotocol import types
from pytest_lsp import LanguageClient

pytestmark = pytest.mark.asyncio(loop_scope="module")

FILES = {
    "tonel": "StreamingRights-Core/SRLicence.class.st",
    "chunk-squeak": "StreamingRights.st",
    "chunk-vw": "StreamingRights.st",
    "gnu": "StreamingRights.st",
    "filetree": "StreamingRights-Core.package/SRLicence.class/instance/statusReportOn..st",
}


@pytest_lsp.fixture(scope="module", params=FORMATS, config=SERVER)
async def client(lsp_client: LanguageClient, request, tmp_path_factory):
    root = await start_sample(lsp_client, request.param, tmp_path_factory)
    lsp_client.path = root / FILES[request.param]  # type: ignore[attr-defined]
    yield
    await lsp_client.shutdown_session()


def _method_lines(text: str) -> tuple[list[str], int]:
    lines = text.splitlines()
    first = next(
        i for i, line in enumerate(lines)
        if line.strip().startswith(("statusReportOn: aDate", "SRLicence >> statusReportOn:"))
    )
    return lines, first


def _at(lines: list[str], first: int, needle: str, skip: int = 0) -> types.Position:
    for number in range(first, len(lines)):
        col = lines[number].find(needle)
        if col >= 0:
            return types.Position(line=number, character=col + skip)
    raise AssertionError(needle)


def _text(lines: list[str], rng: types.Range) -> str:
    if rng.start.line == rng.end.line:
        return lines[rng.start.line][rng.start.character : rng.end.character]
    parts = [lines[rng.start.line][rng.start.character :]]
    parts += lines[rng.start.line + 1 : rng.end.line]
    parts.append(lines[rng.end.line][: rng.end.character])
    return "\n".join(parts)


async def test_highlight_of_a_temporary_tells_writes_from_reads(client: LanguageClient):
    path = client.path  # type: ignore[attr-defined]
    uri = open_document(client, path)
    lines, first = _method_lines(path.read_text())
    at = _at(lines, first, "stream := WriteStream")
    found = await client.text_document_document_highlight_async(
        types.DocumentHighlightParams(text_document=doc(uri), position=at)
    )
    assert found
    assert all(_text(lines, h.range) == "stream" for h in found)
    writes = [h.range.start for h in found if h.kind == types.DocumentHighlightKind.Write]
    reads = [h.range.start for h in found if h.kind == types.DocumentHighlightKind.Read]
    declaration = _at(lines, first, "| stream |", skip=2)
    assert writes == [declaration, at]
    # `stream nextPutAll:` twice, the cascade's receiver, `^stream contents`.
    assert len(reads) == 4 and all(p.line > at.line for p in reads)


async def test_highlight_of_an_instance_variable_and_a_selector(client: LanguageClient):
    path = client.path  # type: ignore[attr-defined]
    uri = open_document(client, path)
    lines, first = _method_lines(path.read_text())
    at = _at(lines, first, "endDate subtractDays:")
    found = await client.text_document_document_highlight_async(
        types.DocumentHighlightParams(text_document=doc(uri), position=at)
    )
    assert found and all(_text(lines, h.range) == "endDate" for h in found)
    assert at in [h.range.start for h in found]
    assert all(h.kind == types.DocumentHighlightKind.Read for h in found if h.range.start == at)
    at = _at(lines, first, "isActiveOn: aDate)")
    sends = await client.text_document_document_highlight_async(
        types.DocumentHighlightParams(text_document=doc(uri), position=at)
    )
    # This document's sends only (SRRight >> isValidOn: too, where it is in the same file).
    assert at in [h.range.start for h in sends]
    assert all(_text(lines, h.range) == "isActiveOn:" for h in sends)
    assert len(sends) == (2 if client.fmt in ("chunk-squeak", "gnu") else 1)  # type: ignore[attr-defined]


async def test_selection_range_grows_from_token_to_method(client: LanguageClient):
    path = client.path  # type: ignore[attr-defined]
    uri = open_document(client, path)
    lines, first = _method_lines(path.read_text())
    at = _at(lines, first, "print: index", skip=7)
    result = await client.text_document_selection_range_async(
        types.SelectionRangeParams(text_document=doc(uri), positions=[at])
    )
    assert result and len(result) == 1
    chain: list[str] = []
    current: types.SelectionRange | None = result[0]
    while current is not None:
        chain.append(_text(lines, current.range))
        current = current.parent
    assert chain[0] == "index"
    squeezed = [t.replace(" ", "") for t in chain]
    assert any(t.startswith("[:index:days") for t in squeezed)  # the block
    assert any(t.startswith("#(123)keysAndValuesDo:") for t in squeezed)  # the statement
    method = next(i for i, t in enumerate(chain) if "statusReportOn: aDate" in t.splitlines()[0])
    assert "^stream contents" in chain[method].replace("^ ", "^")
    for inner, outer in zip(chain, chain[1:], strict=False):
        assert len(inner) < len(outer)
