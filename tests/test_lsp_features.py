"""End-to-end: the real server over stdio on the sample project, once per source format.

Expected values come from tests/fixtures/SAMPLE.md (lines of methods and definitions, comments,
senders) and from the sample files' text (columns of the tokens).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import pytest_lsp
from lsp_support import (
    FORMATS,
    SERVER,
    close_document,
    doc,
    find,
    insert,
    key,
    open_document,
    span,
    start_sample,
    uri_of,
)
from lsprotocol import types
from pytest_lsp import LanguageClient

# The client fixture lives in the module's event loop; the tests must run in it too.
pytestmark = pytest.mark.asyncio(loop_scope="module")

# First line of each method used below, per format; FileTree methods start on line 1.
FIRST_LINE = {
    ("SRStore", "class", "named:"): {"tonel": 19, "chunk-squeak": 59, "chunk-vw": 56, "gnu": 18},
    ("SRStore", "class", "registry"): {"tonel": 29, "chunk-squeak": 67, "chunk-vw": 66, "gnu": 28},
    ("SRStore", "instance", "addRight:"): {
        "tonel": 35,
        "chunk-squeak": 42,
        "chunk-vw": 72,
        "gnu": 48,
    },
    ("SRStore", "instance", "expireBefore:"): {
        "tonel": 42,
        "chunk-squeak": 50,
        "chunk-vw": 77,
        "gnu": 67,
    },
    ("SRStore", "instance", "rights"): {"tonel": 67, "chunk-squeak": 39, "chunk-vw": 88, "gnu": 43},
    ("SRRegionalStore", "instance", "addRight:"): {
        "tonel": 13,
        "chunk-squeak": 83,
        "chunk-vw": 104,
        "gnu": 99,
    },
    ("SRLicence", "class", "from:to:"): {
        "tonel": 15,
        "chunk-squeak": 206,
        "chunk-vw": 131,
        "gnu": 195,
    },
    ("SRLicence", "instance", "durationInDays"): {
        "tonel": 21,
        "chunk-squeak": 167,
        "chunk-vw": 137,
        "gnu": 220,
    },
    ("SRLicence", "instance", "feePerDay"): {
        "tonel": 45,
        "chunk-squeak": 170,
        "chunk-vw": 149,
        "gnu": 225,
    },
    ("SRLicence", "instance", "isActiveOn:"): {
        "tonel": 56,
        "chunk-squeak": 179,
        "chunk-vw": 163,
        "gnu": 234,
    },
    ("SRLicence", "instance", "statusReportOn:"): {
        "tonel": 75,
        "chunk-squeak": 183,
        "chunk-vw": 168,
        "gnu": 239,
    },
    ("SRRight", "instance", "isValidOn:"): {"tonel": 32, "chunk-squeak": 130, "gnu": 160},
}
# Formats that have SRRight and SRStoreTest (VW and FileTree hold only some classes).
FULL = {"tonel", "chunk-squeak", "gnu"}


def method_file(fmt: str, cls: str, side: str, selector: str) -> str:
    if fmt == "tonel":
        folder = "StreamingRights-Tests" if cls == "SRStoreTest" else "StreamingRights-Core"
        return f"{folder}/{cls}.class.st"
    if fmt == "filetree":
        name = selector.replace(":", ".")
        return f"StreamingRights-Core.package/{cls}.class/{side}/{name}.st"
    return "StreamingRights.st"


def class_file(fmt: str, cls: str) -> str:
    if fmt == "tonel":
        return f"StreamingRights-Core/{cls}.class.st"
    if fmt == "filetree":
        return f"StreamingRights-Core.package/{cls}.class/properties.json"
    return "StreamingRights.st"


class Method:
    """Where one method of the sample is, in the format under test."""

    def __init__(self, client: LanguageClient, cls: str, side: str, selector: str) -> None:
        fmt = client.fmt  # type: ignore[attr-defined]
        self.path = client.root / method_file(fmt, cls, side, selector)  # type: ignore[attr-defined]
        self.uri = uri_of(self.path)
        self.text = self.path.read_text()
        self.line = 1 if fmt == "filetree" else FIRST_LINE[(cls, side, selector)][fmt]

    def at(self, needle: str, skip: int = 0) -> types.Position:
        return find(self.text, needle, self.line, skip)

    def range(self, needle: str, skip: int = 0, length: int | None = None) -> types.Range:
        return span(self.text, needle, self.line, skip, length)

    def location(self, needle: str, skip: int = 0, length: int | None = None) -> types.Location:
        return types.Location(uri=self.uri, range=self.range(needle, skip, length))


@pytest_lsp.fixture(scope="module", params=FORMATS, config=SERVER)
async def client(lsp_client: LanguageClient, request, tmp_path_factory):
    await start_sample(lsp_client, request.param, tmp_path_factory)
    yield
    await lsp_client.shutdown_session()


def fmt_of(client: LanguageClient) -> str:
    return client.fmt  # type: ignore[attr-defined]


async def definition(client: LanguageClient, uri: str, pos: types.Position) -> list:
    result = await client.text_document_definition_async(
        types.DefinitionParams(text_document=doc(uri), position=pos)
    )
    return list(result or [])


async def references(
    client: LanguageClient, uri: str, pos: types.Position, declaration: bool = False
) -> list:
    result = await client.text_document_references_async(
        types.ReferenceParams(
            text_document=doc(uri),
            position=pos,
            context=types.ReferenceContext(include_declaration=declaration),
        )
    )
    return sorted(result or [], key=key)


async def hover_text(client: LanguageClient, uri: str, pos: types.Position) -> str | None:
    result = await client.text_document_hover_async(
        types.HoverParams(text_document=doc(uri), position=pos)
    )
    if result is None:
        return None
    assert isinstance(result.contents, types.MarkupContent)
    assert result.contents.kind == types.MarkupKind.Markdown
    return result.contents.value


# --- navigation --------------------------------------------------------------------------------


async def test_definition_of_super_send_ranks_the_superclass_first(client: LanguageClient):
    regional = Method(client, "SRRegionalStore", "instance", "addRight:")
    store = Method(client, "SRStore", "instance", "addRight:")
    cursor = regional.at("super addRight:", skip=len("super "))
    found = await definition(client, regional.uri, cursor)
    assert [key(loc) for loc in found] == [
        key(store.location("addRight: aRight")),
        key(regional.location("addRight: aRight")),
    ]


async def test_every_keyword_part_names_the_whole_selector(client: LanguageClient):
    method = Method(client, "SRStore", "class", "named:")
    # `self registry at: aString put: store`: the project implements no at:put:.
    on_at = await hover_text(client, method.uri, method.at("at: aString"))
    on_put = await hover_text(client, method.uri, method.at("put: store", skip=1))
    assert on_at == on_put == "**at:put:** — 0 implementors, 1 sender"


def _superclass_in_regional_definition(client: LanguageClient) -> tuple[Path, types.Position]:
    """The file defining SRRegionalStore and the position of `SRStore` (its superclass) in it."""
    path = client.root / class_file(fmt_of(client), "SRRegionalStore")  # type: ignore[attr-defined]
    text = path.read_text()
    line = 0 if fmt_of(client) == "filetree" else find(text, "SRRegionalStore").line
    return path, find(text, "SRStore", line, skip=2)


async def test_definition_of_a_class_name(client: LanguageClient):
    path, cursor = _superclass_in_regional_definition(client)
    found = await definition(client, uri_of(path), cursor)
    store_file = client.root / class_file(fmt_of(client), "SRStore")  # type: ignore[attr-defined]
    assert len(found) == 1
    assert found[0].uri == uri_of(store_file)
    rng = found[0].range
    line_text = store_file.read_text().splitlines()[rng.start.line]
    assert line_text[rng.start.character : rng.end.character] == "SRStore"
    definition_line = {"tonel": 6, "chunk-squeak": 18, "chunk-vw": 10, "gnu": 8}
    if fmt_of(client) in definition_line:
        assert rng.start.line == definition_line[fmt_of(client)]
    else:
        assert '"name"' in line_text


async def test_references_of_a_selector_are_its_sends(client: LanguageClient):
    licence = Method(client, "SRLicence", "instance", "isActiveOn:")
    report = Method(client, "SRLicence", "instance", "statusReportOn:")
    cursor = licence.at("isActiveOn: aDate", skip=2)
    expected = [report.location("isActiveOn: aDate", length=len("isActiveOn:"))]
    if fmt_of(client) in FULL:
        right = Method(client, "SRRight", "instance", "isValidOn:")
        expected.append(right.location("isActiveOn:"))
    found = await references(client, licence.uri, cursor)
    assert [key(loc) for loc in found] == sorted(key(loc) for loc in expected)
    with_declaration = await references(client, licence.uri, cursor, declaration=True)
    assert [key(loc) for loc in with_declaration] == sorted(
        key(loc) for loc in [*expected, licence.location("isActiveOn: aDate")]
    )


async def test_references_include_symbols_and_perform(client: LanguageClient):
    duration = Method(client, "SRLicence", "instance", "durationInDays")
    fee = Method(client, "SRLicence", "instance", "feePerDay")
    found = await references(client, duration.uri, duration.at("durationInDays"))
    assert [key(loc) for loc in found] == [key(fee.location("#durationInDays"))]
    # From the symbol itself, definition goes to the implementor.
    target = await definition(client, fee.uri, fee.at("#durationInDays", skip=3))
    assert [key(loc) for loc in target] == [key(duration.location("durationInDays"))]


async def test_instance_variable_hover_definition_and_references(client: LanguageClient):
    expire = Method(client, "SRStore", "instance", "expireBefore:")
    rights = Method(client, "SRStore", "instance", "rights")
    cursor = expire.at("rights :=")
    assert await hover_text(client, expire.uri, cursor) == (
        "**rights** — instance variable of SRStore"
    )
    found = await references(client, expire.uri, cursor)
    uses = rights.text.splitlines()[rights.line :]
    body_line = next(i for i, line in enumerate(uses) if "ifNil:" in line) + rights.line
    assert [key(loc) for loc in found] == sorted(
        [
            key(expire.location("rights :=", length=len("rights"))),
            key(rights.location("rights ifNil:", length=len("rights"))),
            key(
                types.Location(
                    uri=rights.uri,
                    range=span(rights.text, "rights := ", body_line, length=len("rights")),
                )
            ),
        ]
    )
    owner = await definition(client, expire.uri, cursor)
    assert len(owner) == 1
    assert owner[0].uri == uri_of(client.root / class_file(fmt_of(client), "SRStore"))  # type: ignore[attr-defined]


async def test_block_temporaries_and_arguments(client: LanguageClient):
    report = Method(client, "SRLicence", "instance", "statusReportOn:")
    use = report.at("print: reminder", skip=len("print: "))
    declared = report.range("| reminder |", skip=2, length=len("reminder"))
    found = await definition(client, report.uri, use)
    assert [key(loc) for loc in found] == [key(types.Location(uri=report.uri, range=declared))]
    refs = await references(client, report.uri, use)
    assert [key(loc) for loc in refs] == sorted(
        [
            key(types.Location(uri=report.uri, range=declared)),
            key(report.location("reminder :=", length=len("reminder"))),
            key(report.location("print: reminder", skip=len("print: "))),
        ]
    )
    days = report.at("subtractDays: days", skip=len("subtractDays: "))
    assert await hover_text(client, report.uri, days) == "**days** — temporary variable"
    found = await definition(client, report.uri, days)
    assert [key(loc) for loc in found] == [key(report.location(":days", skip=1))]


async def test_implementation_lists_implementors(client: LanguageClient):
    regional = Method(client, "SRRegionalStore", "instance", "addRight:")
    store = Method(client, "SRStore", "instance", "addRight:")
    result = await client.text_document_implementation_async(
        types.ImplementationParams(
            text_document=doc(regional.uri), position=regional.at("addRight: aRight")
        )
    )
    # On its own pattern, the method's class comes first.
    assert [key(loc) for loc in result or []] == [
        key(regional.location("addRight: aRight")),
        key(store.location("addRight: aRight")),
    ]


# --- hover -------------------------------------------------------------------------------------


async def test_hover_on_a_selector(client: LanguageClient):
    regional = Method(client, "SRRegionalStore", "instance", "addRight:")
    cursor = regional.at("super addRight:", skip=len("super add"))
    senders = 3 if fmt_of(client) in FULL else 1
    assert await hover_text(client, regional.uri, cursor) == (
        f"**addRight:** — 2 implementors, {senders} sender{'s' if senders != 1 else ''}\n\n"
        "- `SRStore >> addRight:` — Add aRight to the receiver and answer it\n"
        "- `SRRegionalStore >> addRight:` — Refuse rights for territories the receiver "
        "does not cover"
    )


async def test_hover_on_a_class(client: LanguageClient):
    fee = Method(client, "SRLicence", "instance", "feePerDay")
    text = await hover_text(client, fee.uri, fee.at("self perform:"))
    assert text == "**self** — the receiver, an instance of SRLicence"
    named = Method(client, "SRStore", "class", "named:")
    path, cursor = _superclass_in_regional_definition(client)
    class_instance = "- class-instance variables: registry\n" if fmt_of(client) == "gnu" else ""
    assert await hover_text(client, uri_of(path), cursor) == (
        "```smalltalk\nObject subclass: #SRStore\n```\nSuperclasses: Object\n\n"
        "- instance variables: name rights\n- class variables: Registry\n"
        f"{class_instance}"
        "- category: StreamingRights-Core\n\n---\n\n"
        "I am an abstract store of streaming rights.\n\n"
        "I hold a name and a collection of SRRight instances, and I answer the rights that "
        "apply to a territory. Every store created with #named: is kept in the class-side "
        "Registry."
    )
    assert await hover_text(client, named.uri, named.at("aString", skip=1)) == (
        "**aString** — method argument"
    )


# --- symbols -----------------------------------------------------------------------------------


def _tree(symbols: list) -> dict:
    return {s.name: _tree(s.children or []) if s.children else s.kind for s in symbols}


async def test_document_symbols_group_by_protocol_with_class_side_apart(client: LanguageClient):
    fmt = fmt_of(client)
    if fmt == "filetree":
        method = Method(client, "SRStore", "instance", "addRight:")
        uri = method.uri
    else:
        uri = uri_of(client.root / class_file(fmt, "SRStore"))  # type: ignore[attr-defined]
    symbols = await client.text_document_document_symbol_async(
        types.DocumentSymbolParams(text_document=doc(uri))
    )
    by_name = {s.name: s for s in symbols or []}
    store = by_name["SRStore"]
    assert store.kind == types.SymbolKind.Class
    method_kind = types.SymbolKind.Method
    if fmt == "filetree":
        assert _tree([store]) == {"SRStore": {"accessing": {"addRight:": method_kind}}}
        return
    accessing = ["addRight:", "expireBefore:", "name", "name:", "rights", "rightsFor:"]
    assert _tree([store]) == {
        "SRStore": {
            "accessing": {s: method_kind for s in accessing},
            "testing": {"isEmpty": method_kind},
            "SRStore class": {
                "instance creation": {"named:": method_kind},
                "accessing": {"registry": method_kind},
            },
        }
    }
    named = Method(client, "SRStore", "class", "named:")
    class_side = next(c for c in store.children or [] if c.name == "SRStore class")
    creation = next(c for c in class_side.children or [] if c.name == "instance creation")
    assert (creation.children or [])[0].selection_range == named.range("named: aString")
    name = store.selection_range
    text = named.text.splitlines()[name.start.line]
    assert text[name.start.character : name.end.character] == "SRStore"


async def test_workspace_symbols_are_fuzzy(client: LanguageClient):
    found = await client.workspace_symbol_async(types.WorkspaceSymbolParams(query="SRRgSt"))
    assert found
    assert found[0].name == "SRRegionalStore"
    assert found[0].kind == types.SymbolKind.Class
    found = await client.workspace_symbol_async(types.WorkspaceSymbolParams(query="addRight"))
    assert [(s.name, s.container_name) for s in (found or [])[:2]] == [
        ("addRight:", "SRRegionalStore"),
        ("addRight:", "SRStore"),
    ]


# --- completion and signature help --------------------------------------------------------------


async def _complete_after(
    client: LanguageClient, method: Method, after: str, typed: str
) -> types.CompletionList:
    """Open the method's file, type `typed` on a new line after the line holding `after`,
    and ask for completion at the end of what was typed."""
    uri = open_document(client, method.path)
    try:
        anchor = method.at(after)
        line_end = len(method.text.splitlines()[anchor.line])
        insert(client, uri, 2, types.Position(line=anchor.line, character=line_end), typed)
        lines = typed.split("\n")
        cursor = types.Position(line=anchor.line + len(lines) - 1, character=len(lines[-1]))
        result = await client.text_document_completion_async(
            types.CompletionParams(text_document=doc(uri), position=cursor)
        )
        assert isinstance(result, types.CompletionList)
        return result
    finally:
        close_document(client, uri)


async def test_completion_of_keyword_selectors_as_snippets(client: LanguageClient):
    store = Method(client, "SRStore", "instance", "rights")
    result = await _complete_after(client, store, "rights", "\n\tself addR")
    first = result.items[0]
    assert first.label == "addRight:"
    assert first.insert_text_format == types.InsertTextFormat.Snippet
    assert isinstance(first.text_edit, types.TextEdit)
    assert first.text_edit.new_text == "addRight: ${1}"
    assert first.data == {"source": "static", "kind": "selector"}
    assert first.text_edit.range.end.character - first.text_edit.range.start.character == 4
    licence = Method(client, "SRLicence", "instance", "durationInDays")
    result = await _complete_after(client, licence, "durationInDays", "\n\tself setS")
    assert result.items[0].label == "setStart:end:"
    assert isinstance(result.items[0].text_edit, types.TextEdit)
    assert result.items[0].text_edit.new_text == "setStart: ${1} end: ${2}"


async def test_completion_of_variables_in_scope(client: LanguageClient):
    report = Method(client, "SRLicence", "instance", "statusReportOn:")
    result = await _complete_after(client, report, "| reminder |", "\n\t\td")
    assert result.items[0].label == "days"
    assert result.items[0].kind == types.CompletionItemKind.Variable
    result = await _complete_after(client, report, "| reminder |", "\n\t\tst")
    assert [i.label for i in result.items[:2]] == ["stream", "startDate"]
    assert result.items[1].kind == types.CompletionItemKind.Field
    result = await _complete_after(client, report, "| reminder |", "\n\t\tSRLi")
    assert [i.label for i in result.items] == ["SRLicence"]
    assert result.items[0].kind == types.CompletionItemKind.Class
    result = await _complete_after(client, report, "| reminder |", "\n\t\tsu")
    assert [i.label for i in result.items] == ["super"]


async def test_signature_help_marks_the_active_keyword(client: LanguageClient):
    licence = Method(client, "SRLicence", "instance", "isActiveOn:")
    uri = open_document(client, licence.path)
    try:
        help_ = await client.text_document_signature_help_async(
            types.SignatureHelpParams(
                text_document=doc(uri), position=licence.at("and: endDate", skip=2)
            )
        )
        assert help_ is not None
        assert help_.signatures[0].label == "between: and:"
        assert help_.active_parameter == 1
        # A statement typed before the last one, the cursor on its last argument.
        anchor = licence.at("between:")
        typed = "\tSRLicence from: 1 to: 2.\n"
        insert(client, uri, 2, types.Position(line=anchor.line, character=0), typed)
        cursor = types.Position(line=anchor.line, character=len("\tSRLicence from: 1 to: "))
        help_ = await client.text_document_signature_help_async(
            types.SignatureHelpParams(text_document=doc(uri), position=cursor)
        )
        assert help_ is not None
        assert help_.signatures[0].label == "from: aDate to: anotherDate"
        assert help_.active_parameter == 1
        params = help_.signatures[0].parameters or []
        assert [p.label for p in params] == [(0, 11), (12, 27)]
    finally:
        close_document(client, uri)


# --- semantic tokens ---------------------------------------------------------------------------


async def _tokens(client: LanguageClient, uri: str) -> dict[tuple[int, int], tuple]:
    """(line, character) -> (length, type, modifiers) of the decoded semantic tokens."""
    result = await client.text_document_semantic_tokens_full_async(
        types.SemanticTokensParams(text_document=doc(uri))
    )
    assert result is not None
    legend = ["class", "method", "parameter", "variable", "property", "keyword"]
    tokens: dict[tuple[int, int], tuple] = {}
    line = char = 0
    data = list(result.data)
    for i in range(0, len(data), 5):
        d_line, d_char, length, kind, modifiers = data[i : i + 5]
        line, char = line + d_line, (char + d_char if d_line == 0 else d_char)
        tokens[(line, char)] = (length, legend[kind] if kind < len(legend) else "other", modifiers)
    return tokens


async def test_semantic_tokens_classify_a_method(client: LanguageClient):
    named = Method(client, "SRStore", "class", "named:")
    tokens = await _tokens(client, named.uri)

    def token(needle: str, skip: int = 0) -> tuple:
        pos = named.at(needle, skip)
        return tokens[(pos.line, pos.character)]

    declaration, static = 1, 2
    assert token("named: aString") == (6, "method", declaration)
    assert token("aString") == (7, "parameter", declaration)
    assert token("| store |", 2) == (5, "variable", declaration)
    assert token("store := self") == (5, "variable", 0)
    assert token("self new") == (4, "keyword", 0)
    assert token("new name:") == (3, "method", 0)
    assert token("name: aString") == (5, "method", 0)
    assert token("put: store", 5) == (5, "variable", 0)
    registry = Method(client, "SRStore", "class", "registry")
    tokens = await _tokens(client, registry.uri)
    pos = registry.at("Registry ifNil:")
    assert tokens[(pos.line, pos.character)] == (8, "property", static)
    pos = registry.at("Dictionary")
    assert tokens[(pos.line, pos.character)] == (10, "class", 0)


# --- folding and diagnostics -------------------------------------------------------------------


async def test_folding_ranges_cover_methods(client: LanguageClient):
    named = Method(client, "SRStore", "class", "named:")
    result = await client.text_document_folding_range_async(
        types.FoldingRangeParams(text_document=doc(named.uri))
    )
    spans = {(r.start_line, r.end_line) for r in result or []}
    last = {"tonel": 26, "chunk-squeak": 64, "chunk-vw": 62, "gnu": 26}
    if fmt_of(client) == "filetree":
        assert spans == {(1, len(named.text.splitlines()) - 1)}
    else:
        assert (named.line, last[fmt_of(client)]) in spans


async def test_open_document_gets_empty_diagnostics_when_clean(client: LanguageClient):
    named = Method(client, "SRStore", "class", "named:")
    uri = open_document(client, named.path)
    try:
        await _wait_diagnostics(client, uri)
        assert list(client.diagnostics[uri]) == []
    finally:
        close_document(client, uri)


async def _wait_diagnostics(client: LanguageClient, uri: str) -> None:
    from lsp_support import wait_for

    await wait_for(lambda: uri in client.diagnostics, what=f"diagnostics of {uri}")
