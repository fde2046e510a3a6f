"""End-to-end: type hierarchy and code lens, in every source format of the sample."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytest_lsp
from lsp_support import FORMATS, SERVER, doc, find, open_document, start_sample
from lsprotocol import types
from pytest_lsp import LanguageClient

from server.project_model import numbered_methods
from smalltalk_grammar import parse_path

pytestmark = pytest.mark.asyncio(loop_scope="module")

# (class, side, selector) -> file of that method, per format.
SINGLE = {"chunk-squeak", "chunk-vw", "gnu"}


def method_file(root: Path, fmt: str, cls: str, side: str, selector: str) -> Path:
    if fmt in SINGLE:
        return root / "StreamingRights.st"
    if fmt == "tonel":
        return root / "StreamingRights-Core" / f"{cls}.class.st"
    name = selector.replace(":", ".")
    return root / "StreamingRights-Core.package" / f"{cls}.class" / side / f"{name}.st"


@pytest_lsp.fixture(scope="module", params=FORMATS, config=SERVER)
async def client(lsp_client: LanguageClient, request, tmp_path_factory):
    await start_sample(lsp_client, request.param, tmp_path_factory)
    yield
    await lsp_client.shutdown_session()


async def prepare(client: LanguageClient, path: Path, needle: str) -> list:
    uri = open_document(client, path)
    at = find(path.read_text(), needle)
    result = await client.text_document_prepare_type_hierarchy_async(
        types.TypeHierarchyPrepareParams(text_document=doc(uri), position=at)
    )
    return list(result or [])


async def test_type_hierarchy_supers_and_subs(client: LanguageClient):
    fmt, root = client.fmt, client.root  # type: ignore[attr-defined]
    path = method_file(root, fmt, "SRRegionalStore", "instance", "addRight:")
    [regional] = await prepare(client, path, "super addRight:")
    assert regional.name == "SRRegionalStore"
    supers = await client.type_hierarchy_supertypes_async(
        types.TypeHierarchySupertypesParams(item=regional)
    )
    assert [i.name for i in supers or []] == ["SRStore"]
    subs = await client.type_hierarchy_subtypes_async(
        types.TypeHierarchySubtypesParams(item=supers[0])
    )
    assert [i.name for i in subs or []] == ["SRRegionalStore"]
    # Object is not defined in the project: no item for it.
    top = await client.type_hierarchy_supertypes_async(
        types.TypeHierarchySupertypesParams(item=supers[0])
    )
    assert not top


async def test_type_hierarchy_metaclass_side(client: LanguageClient):
    fmt, root = client.fmt, client.root  # type: ignore[attr-defined]
    path = method_file(root, fmt, "SRStore", "class", "named:")
    [meta] = await prepare(client, path, "registry at: aString")
    assert meta.name == "SRStore class"
    subs = await client.type_hierarchy_subtypes_async(types.TypeHierarchySubtypesParams(item=meta))
    assert [i.name for i in subs or []] == ["SRRegionalStore class"]


async def test_type_hierarchy_shows_traits(client: LanguageClient):
    fmt, root = client.fmt, client.root  # type: ignore[attr-defined]
    if fmt not in ("tonel", "chunk-squeak"):
        pytest.skip(f"{fmt}: the sample has no trait in this format (SAMPLE.md)")
    path = method_file(root, fmt, "SRRight", "instance", "isValidOn:")
    [right] = await prepare(client, path, "licence isActiveOn: aDate")
    supers = await client.type_hierarchy_supertypes_async(
        types.TypeHierarchySupertypesParams(item=right)
    )
    assert [i.name for i in supers or []] == ["TSRComparable"]
    users = await client.type_hierarchy_subtypes_async(
        types.TypeHierarchySubtypesParams(item=supers[0])
    )
    assert [i.name for i in users or []] == ["SRRight"]


async def test_code_lens_counts_senders_and_implementors(client: LanguageClient):
    fmt, root = client.fmt, client.root  # type: ignore[attr-defined]
    path = method_file(root, fmt, "SRStore", "instance", "addRight:")
    uri = open_document(client, path)
    lenses = await client.text_document_code_lens_async(
        types.CodeLensParams(text_document=doc(uri))
    )
    assert lenses and all(lens.command is None for lens in lenses)  # resolved lazily
    text = path.read_text().splitlines()
    by_selector = {}
    for lens in lenses:
        line = text[lens.range.start.line]
        by_selector[line[lens.range.start.character : lens.range.end.character]] = lens
    lens = by_selector.get("addRight:") or by_selector["addRight: aRight"]
    resolved = await client.code_lens_resolve_async(lens)
    # Expected from the grammar's own reading of the project.
    methods = [m for s in parse_path(root) for m in numbered_methods(s)]
    senders = sum(1 for m in methods if "addRight:" in {*m.sends, *m.symbols})
    implementors = sum(1 for m in methods if m.selector == "addRight:")
    assert implementors == 2 and senders >= 1
    assert resolved.command is not None
    assert resolved.command.title == f"{senders} sender{'s' * (senders != 1)} · 2 implementors"
    assert resolved.command.command == "smalltalk.showReferences"
    assert resolved.command.arguments[0] == uri


def _header(text: str, selector: str) -> types.Position:
    for number, line in enumerate(text.splitlines()):
        stripped = line.strip()
        if stripped.startswith(f"{selector} aDate") or f">> {selector} aDate" in line:
            return types.Position(line=number, character=line.index(selector))
    raise AssertionError(selector)


def _range_text(path: Path, rng: types.Range) -> str:
    line = path.read_text().splitlines()[rng.start.line]
    return line[rng.start.character : rng.end.character]


async def test_call_hierarchy_incoming_and_outgoing(client: LanguageClient):
    fmt, root = client.fmt, client.root  # type: ignore[attr-defined]
    path = method_file(root, fmt, "SRLicence", "instance", "isActiveOn:")
    uri = open_document(client, path)
    items = await client.text_document_prepare_call_hierarchy_async(
        types.CallHierarchyPrepareParams(
            text_document=doc(uri), position=_header(path.read_text(), "isActiveOn:")
        )
    )
    assert [i.name for i in items or []] == ["SRLicence >> isActiveOn:"]
    incoming = await client.call_hierarchy_incoming_calls_async(
        types.CallHierarchyIncomingCallsParams(item=items[0])
    )
    methods = [m for s in parse_path(root) for m in numbered_methods(s)]
    expected = sorted(
        f"{m.class_name} >> {m.selector}" for m in methods if "isActiveOn:" in m.sends
    )
    assert sorted(c.from_.name for c in incoming or []) == expected
    assert "SRLicence >> statusReportOn:" in expected
    for call in incoming or []:
        from_path = Path(call.from_.uri.removeprefix("file://"))
        assert [_range_text(from_path, r) for r in call.from_ranges] == ["isActiveOn:"]
    # Outgoing calls of statusReportOn: include `self isActiveOn:`, resolved to SRLicence's.
    report = next(c.from_ for c in incoming or [] if c.from_.name.endswith("statusReportOn:"))
    outgoing = await client.call_hierarchy_outgoing_calls_async(
        types.CallHierarchyOutgoingCallsParams(item=report)
    )
    called = {c.to.name: c for c in outgoing or []}
    assert "SRLicence >> isActiveOn:" in called
    report_path = Path(report.uri.removeprefix("file://"))
    ranges = called["SRLicence >> isActiveOn:"].from_ranges
    assert [_range_text(report_path, r) for r in ranges] == ["isActiveOn:"]
