"""The static side's defects found on real code, each on the sample project (issue 19).

1. references asked from inside an open document list that document's own occurrences;
2. a GNU bracket file with `$!` at a line end is read as bracket syntax, and a non-empty file
   that yields nothing says so (diagnostic, `symbols --json`);
3. a selection of a method's header and first lines is explained in that method's context;
   (4, the editor root markers, is tested by the editor plugins' own tests.)
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import pytest_lsp
from lsp_support import SAMPLE, SERVER, doc, find, key, open_document, start_sample
from lsprotocol import types
from pytest_lsp import LanguageClient

from server.actions.targets import offered, site_at
from smalltalk_grammar import detect_format, parse, parse_file

DETECTION = SAMPLE / "detection"


@pytest_lsp.fixture(scope="module", config=SERVER)
async def client(lsp_client: LanguageClient, tmp_path_factory):
    await start_sample(lsp_client, "tonel", tmp_path_factory)
    yield
    await lsp_client.shutdown_session()


@pytest.mark.asyncio(loop_scope="module")
async def test_references_from_inside_an_open_document_list_its_own(client: LanguageClient):
    root = client.root  # type: ignore[attr-defined]
    licence = root / "StreamingRights-Core" / "SRLicence.class.st"
    right = root / "StreamingRights-Core" / "SRRight.class.st"
    lic_text, right_text = licence.read_text(), right.read_text()
    context = types.ReferenceContext(include_declaration=False)
    # From another file: SRRight >> isValidOn: sends it.
    right_uri = open_document(client, right)
    at = find(right_text, "isActiveOn: aDate", find(right_text, "licence isActiveOn:").line)
    elsewhere = await client.text_document_references_async(
        types.ReferenceParams(text_document=doc(right_uri), position=at, context=context)
    )
    # From inside SRLicence, on its own send in statusReportOn:.
    lic_uri = open_document(client, licence)
    at = find(lic_text, "self isActiveOn: aDate", skip=5)
    inside = await client.text_document_references_async(
        types.ReferenceParams(text_document=doc(lic_uri), position=at, context=context)
    )
    assert elsewhere and inside
    own = [loc for loc in inside if loc.uri == lic_uri]
    assert [loc.range.start for loc in own] == [at], inside
    assert sorted(map(key, inside)) == sorted(map(key, elsewhere))
    assert {loc.uri for loc in inside} == {lic_uri, right_uri}


def test_gnu_file_with_a_bang_character_at_a_line_end_is_bracket_syntax() -> None:
    path = DETECTION / "SRBangReader.st"
    text = path.read_text()
    assert any(line.endswith("$!") for line in text.splitlines())
    assert detect_format(text) == "bracket"
    source = parse_file(path)
    assert [c.name for c in source.classes] == ["SRBangReader"]
    assert [m.selector for m in source.methods] == [
        "on:", "setSource:", "atBang", "atEnd", "skipToBang", "countBangs",
    ]
    assert not source.diagnostics


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Chunk files keep their chunk evidence: a doubled bang literal before a chunk end.
        ("!Foo methodsFor: 'x'!\nbang\n\t^ $!!! !\n", "chunk"),
        ("!Foo methodsFor: 'x'!\nbang\n\t^ $!!\n! !\n", "chunk"),
        ("Transcript show: 'hi'!\n", "chunk"),
        # One bracket class with a `$!` at a line's end, and methods in bracket syntax.
        ("Object subclass: Foo [\n    bang [\n\t^ $!\n    ]\n    at: i [\n\t^ i = $!\n    ]\n]\n",
         "bracket"),
    ],
)
def test_detection_weighs_the_evidence(text: str, expected: str) -> None:
    assert detect_format(text) == expected


def test_a_file_that_yields_nothing_says_so() -> None:
    source = parse_file(DETECTION / "doits.st")
    assert not source.classes and not source.methods
    messages = [d.message for d in source.diagnostics if d.severity == "warning"]
    assert messages == ["no class and no method found in this file (read as chunk source)"]
    out = subprocess.run(
        [sys.executable, "-m", "server", "symbols", "--json", str(DETECTION)],
        capture_output=True, text=True, check=True,
    ).stdout
    rows = {Path(row["path"]).name: row for row in map(json.loads, out.splitlines())}
    assert [d["message"] for d in rows["doits.st"]["diagnostics"]] == messages
    assert len(rows["SRBangReader.st"]["methods"]) == 6
    # A Tonel package file holds no class by design, and an empty file is told apart.
    assert not parse("Package { #name : 'X' }").diagnostics
    assert [d.message for d in parse("").diagnostics] == ["empty file: nothing to parse"]


def _site(fmt_path: Path, needle: str, lines: int):
    text = fmt_path.read_text()
    start = text.index(needle)
    end = start
    for _ in range(lines):
        end = text.index("\n", end) + 1
    return site_at(parse(text, str(fmt_path)), text, start, end)


@pytest.mark.parametrize(
    ("relative", "needle"),
    [
        ("tonel/StreamingRights-Core/SRLicence.class.st", "SRLicence >> statusReportOn: aDate ["),
        ("chunk-squeak/StreamingRights.st", "statusReportOn: aDate\n"),
        ("gnu/StreamingRights.st", "statusReportOn: aDate ["),
    ],
)
def test_selection_of_a_method_header_and_first_lines(relative: str, needle: str) -> None:
    from server.actions.documents import explained_code, requirement_of
    from server.project_model import ProjectModel

    site = _site(SAMPLE / relative, needle, 5)
    assert site.method is not None and site.method.selector == "statusReportOn:"
    found = offered(site)
    assert found.get("explain", "absent") is None
    assert found.get("design", "absent") is None and found.get("tests", "absent") is None
    what, code = explained_code(site, ProjectModel())
    assert "part of a method" in what
    assert code.startswith(site.selection) and site.method.source.strip() in code
    assert "SRLicence >> statusReportOn:" in requirement_of(site)


def test_a_selection_with_no_code_still_gets_a_message() -> None:
    path = SAMPLE / "tonel/StreamingRights-Core/SRStore.class.st"
    text = path.read_text()
    start = text.index("I hold a name")
    site = site_at(parse(text, str(path)), text, start, start + 40)
    assert offered(site)["explain"] == "the selection is not Smalltalk code"
