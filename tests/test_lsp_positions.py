"""Columns in the client's position encoding (server.positions): utf-32 for clients that offer
it (Neovim), utf-16 for the others (VS Code), where a character outside the Basic Multilingual
Plane counts as two code units."""

from __future__ import annotations

from pathlib import Path

from lsp_support import SERVER, open_document, start_session, uri_of
from lsprotocol import types
from pytest_lsp import client_capabilities

from server import positions

EMOJI = "\U0001f600"
MOJI = f"""Class {{
\t#name : #SRMoji,
\t#superclass : #Object,
\t#category : #'StreamingRights-Emoji'
}}

{{ #category : #greeting }}
SRMoji >> greet [
\t^ '{EMOJI}{EMOJI}' , self moniker
]

{{ #category : #accessing }}
SRMoji >> moniker [
\t^ 'moji'
]
"""
# Another class's file, never opened: its columns come from the project model.
FAN = f"""Class {{
\t#name : #SRMojiFan,
\t#superclass : #Object,
\t#category : #'StreamingRights-Emoji'
}}

{{ #category : #greeting }}
SRMojiFan >> cheer: aMoji [
\t^ '{EMOJI}' , aMoji moniker
]
"""
FAN_COLUMN = FAN.splitlines()[8].index("moniker")
SEND_LINE = 8  # the line of `self moniker`, after two emoji
SEND_COLUMN = MOJI.splitlines()[SEND_LINE].index("moniker")  # in code points
DEFINITION_LINE = 12


def test_utf16_columns_round_trip():
    line = f"a{EMOJI}b{EMOJI}c"
    assert [positions.to_utf16(line, c) for c in range(6)] == [0, 1, 3, 4, 6, 7]
    assert [positions.from_utf16(line, u) for u in (0, 1, 3, 4, 6, 7, 9)] == [0, 1, 2, 3, 4, 5, 7]
    assert positions.from_utf16(line, 2) == 1  # inside a surrogate pair: the character's start
    assert positions.wide_lines(f"x\r\ny{EMOJI}\rz\n{EMOJI}") == {1, 3}
    assert positions.wide_lines("plain é text") == frozenset()
    assert positions.line_text("a\r\nb\rc", 1) == "b"


def test_encodings_are_chosen_for_the_model():
    neovim = client_capabilities("neovim")
    positions.prefer_code_points(neovim)
    assert neovim.general is not None
    assert neovim.general.position_encodings == [positions.CODE_POINTS, positions.UTF16]
    only_utf8 = types.ClientCapabilities(
        general=types.GeneralClientCapabilities(position_encodings=["utf-8"])
    )
    positions.prefer_code_points(only_utf8)
    assert only_utf8.general.position_encodings == [positions.UTF16]  # type: ignore[union-attr]


async def _session(tmp_path: Path, as_client: types.ClientCapabilities):  # type: ignore[no-untyped-def]
    root = tmp_path / "moji"
    root.mkdir()
    path = root / "SRMoji.class.st"
    path.write_text(MOJI, encoding="utf-8")
    (root / "SRMojiFan.class.st").write_text(FAN, encoding="utf-8")
    client = await SERVER.start()
    result = await start_session(client, root, as_client=as_client)
    return client, result, open_document(client, path)


async def _senders(client, uri: str) -> list[types.Location]:  # type: ignore[no-untyped-def]
    found = await client.text_document_references_async(
        types.ReferenceParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=types.Position(line=DEFINITION_LINE, character=11),
            context=types.ReferenceContext(include_declaration=False),
        )
    )
    return list(found or [])


async def test_vscode_counts_utf16_code_units(tmp_path: Path):
    client, result, uri = await _session(tmp_path, client_capabilities("visual-studio-code"))
    try:
        assert result.capabilities.position_encoding == positions.UTF16
        # Each emoji before the send is two code units: the client's column is 2 more.
        at_send = types.Position(line=SEND_LINE, character=SEND_COLUMN + 2 + 1)
        found = await client.text_document_definition_async(
            types.DefinitionParams(types.TextDocumentIdentifier(uri=uri), at_send)
        )
        assert isinstance(found, list) and len(found) == 1
        assert found[0].range.start == types.Position(line=DEFINITION_LINE, character=10)
        senders = await _senders(client, uri)
        assert [(s.uri, s.range.start.line, s.range.start.character) for s in senders] == [
            (uri_of(tmp_path / "moji" / "SRMoji.class.st"), SEND_LINE, SEND_COLUMN + 2),
            (uri_of(tmp_path / "moji" / "SRMojiFan.class.st"), 8, FAN_COLUMN + 1),
        ]
        assert senders[0].range.end.character == SEND_COLUMN + 2 + len("moniker")
        await client.shutdown_session()
    finally:
        await client.stop()


async def test_neovim_gets_code_points(tmp_path: Path):
    client, result, uri = await _session(tmp_path, client_capabilities("neovim"))
    try:
        assert result.capabilities.position_encoding == positions.CODE_POINTS
        senders = await _senders(client, uri)
        assert [(s.range.start.line, s.range.start.character) for s in senders] == [
            (SEND_LINE, SEND_COLUMN),
            (8, FAN_COLUMN),
        ]
        await client.shutdown_session()
    finally:
        await client.stop()


def test_semantic_tokens_count_utf16_units_on_wide_lines():
    from server.features.semantic_tokens import encode

    text = f"a\n'{EMOJI}' foo bar"
    foo = text.index("foo")
    tokens = [(foo, foo + 3, 1, 0), (foo + 4, foo + 7, 2, 0)]
    assert encode(text, tokens) == [1, 4, 3, 1, 0, 0, 4, 3, 2, 0]
    wide = positions.wide_lines(text)
    assert encode(text, tokens, wide) == [1, 5, 3, 1, 0, 0, 4, 3, 2, 0]


def test_workspace_edits_are_converted_per_document_and_copied():
    lines = {"file:///a.st": f"{EMOJI}x", "file:///b.st": "plain"}
    converter = positions.Converter(
        lambda uri: {0} if EMOJI in lines[uri] else frozenset(),
        lambda uri, line: lines[uri],
        "out",
    )
    at_x = types.Range(start=types.Position(0, 1), end=types.Position(0, 2))
    edit = types.WorkspaceEdit(
        changes={
            "file:///a.st": [types.TextEdit(range=at_x, new_text="y")],
            "file:///b.st": [types.TextEdit(range=at_x, new_text="y")],
        }
    )
    converted = converter.convert(edit, None)
    assert converted.changes["file:///a.st"][0].range.start.character == 2
    assert converted.changes["file:///b.st"][0].range.start.character == 1
    assert edit.changes["file:///a.st"][0].range.start.character == 1  # the original is kept
    identifier = types.OptionalVersionedTextDocumentIdentifier(uri="file:///a.st", version=None)
    document_edit = types.TextDocumentEdit(
        text_document=identifier, edits=[types.TextEdit(range=at_x, new_text="y")]
    )
    converted = converter.convert(types.WorkspaceEdit(document_changes=[document_edit]), None)
    assert converted.document_changes[0].edits[0].range.end.character == 3
