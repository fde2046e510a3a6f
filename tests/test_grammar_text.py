"""Encodings, line ends and the position helpers the server uses."""

from __future__ import annotations

from pathlib import Path

import pytest

from smalltalk_grammar import LineIndex, Position, offset_at, parse, parse_file, position_at
from smalltalk_grammar.text import ByteMap, decode, line_ending

ENCODINGS = Path(__file__).parent / "fixtures" / "sample" / "encodings"


def test_position_helpers_treat_cr_lf_and_crlf_as_line_ends() -> None:
    text = "ab\ncd\r\nef\rgh"
    assert [position_at(text, i) for i in (0, 2, 3, 5, 7, 9, 10, 12)] == [
        Position(line=0, character=0),
        Position(line=0, character=2),
        Position(line=1, character=0),
        Position(line=1, character=2),
        Position(line=2, character=0),
        Position(line=2, character=2),
        Position(line=3, character=0),
        Position(line=3, character=2),
    ]
    for offset in (0, 1, 3, 4, 7, 8, 10, 11, 12):
        assert offset_at(text, position_at(text, offset)) == offset
    # Past the end of a line clamps to the line's end (never into the line break); past the
    # last line to the end of the text.
    assert offset_at(text, Position(line=1, character=99)) == 5
    assert offset_at(text, Position(line=9, character=0)) == len(text)
    assert position_at(text, 999) == Position(line=3, character=2)
    assert LineIndex("").position(0) == Position(line=0, character=0)


def test_byte_map_round_trips_non_ascii_text() -> None:
    text = "a é b € c 😀 d"
    data = text.encode("utf-8")
    bmap = ByteMap(text)
    for i in range(len(text) + 1):
        byte = bmap.to_byte(i)
        assert len(data[:byte].decode("utf-8")) == i
        assert bmap.to_char(byte) == i


def test_decode() -> None:
    assert decode(b"\xef\xbb\xbfabc").text == "abc"
    assert decode(b"\xef\xbb\xbfabc").encoding == "utf-8-sig"
    assert decode("é".encode("utf-16")).text == "é"
    assert decode(b"caf\xe9").encoding == "latin-1" and decode(b"caf\xe9").warning
    assert decode(b"a\x00b").binary
    assert line_ending("a\r\nb\r\n") == "crlf" and line_ending("a\rb") == "cr"
    assert line_ending("a\nb\r\n") == "mixed" and line_ending("ab") == "none"


def test_crlf_tonel_file() -> None:
    source = parse_file(ENCODINGS / "crlf.class.st")
    assert (source.format, source.line_ending, source.encoding) == ("tonel", "crlf", "utf-8")
    (cls,) = source.classes
    assert (cls.name, cls.superclass, cls.category) == (
        "SRCrlfSample",
        "Object",
        "StreamingRights-Encodings",
    )
    assert cls.instance_variables == ["value"] and cls.range.start.line == 3
    assert cls.comment == "I am a sample class whose file has CRLF line ends."
    methods = [(m.selector, m.category, m.range.start.line, m.comment) for m in source.methods]
    assert methods == [
        ("value", "accessing", 13, None),
        ("value:", "accessing", 19, "Set the value of the receiver"),
    ]
    assert source.methods[1].selector_range.start == Position(line=19, character=16)
    assert source.methods[1].range.end == Position(line=23, character=1)
    assert source.diagnostics == []


def test_cr_only_chunk_file() -> None:
    source = parse_file(ENCODINGS / "cr-only.st")
    assert (source.format, source.line_ending) == ("chunk", "cr")
    (cls,) = source.classes
    assert cls.name == "SRCrOnlySample" and cls.instance_variables == ["value"]
    assert cls.comment == (
        "I am a sample class whose file has CR-only line ends, like old Squeak change sets."
    )
    methods = [(m.selector, m.category, m.range.start.line, m.comment) for m in source.methods]
    assert methods == [
        ("value", "accessing", 10, None),
        ("value:", "accessing", 13, "Set the value of the receiver"),
    ]
    assert source.methods[1].source == 'value: anObject\r\t"Set the value of the receiver"\r' + (
        "\tvalue := anObject"
    )


def test_bom_tonel_file() -> None:
    source = parse_file(ENCODINGS / "bom.class.st")
    assert (source.format, source.encoding) == ("tonel", "utf-8-sig")
    (cls,) = source.classes
    assert cls.name == "SRBomSample" and cls.range.start.line == 3
    assert cls.comment == "I am a sample class whose file starts with a UTF-8 byte order mark."
    (label,) = source.methods
    assert (label.selector, label.category, label.range.start.line) == ("label", "printing", 10)
    assert label.comment == "Answer a label with one non-ASCII character"
    assert label.source.endswith("^ 'Café'")
    # Positions are in the decoded text (BOM removed): line 0 starts with the quote.
    text = (ENCODINGS / "bom.class.st").read_bytes().decode("utf-8-sig")
    assert text[label.start_offset : label.end_offset].endswith("'Café'\n]")
    assert label.range.end == Position(line=14, character=1)


def test_latin1_chunk_file() -> None:
    source = parse_file(ENCODINGS / "latin1.st")
    assert (source.format, source.encoding) == ("chunk", "latin-1")
    assert [d.severity for d in source.diagnostics] == ["warning"]
    assert "byte 0xe9 at offset 293" in source.diagnostics[0].message
    (cls,) = source.classes
    assert cls.name == "SRLatin1Sample" and cls.instance_variables == ["price"]
    assert cls.comment == (
        "I am a sample class whose file is encoded in Latin-1 (ISO-8859-1), not UTF-8: café."
    )
    (method,) = source.methods
    assert (method.selector, method.category, method.range.start.line) == (
        "priceLabel",
        "printing",
        10,
    )
    assert method.comment == "Prix affiché en livres sterling (£)"
    assert method.source.endswith("^ 'Prix: 5 £ - café'")


@pytest.mark.parametrize("ending", ["\n", "\r\n", "\r"])
def test_same_facts_whatever_the_line_ends(ending: str) -> None:
    text = "Class { #name : #Foo }\n\nFoo >> at: i\n    put: v [\n\t^ 'é' , i printString\n]\n"
    source = parse(text.replace("\n", ending))
    (method,) = source.methods
    assert method.selector == "at:put:" and method.arguments == ["i", "v"]
    assert (method.range.start.line, method.range.end.line) == (2, 5)
    # A pattern split over lines: the selector range stays on its first line.
    assert method.selector_range.start == Position(line=2, character=7)
    assert method.selector_range.end == Position(line=2, character=12)
    assert method.sends == [",", "printString"]


@pytest.mark.parametrize("ending", ["\n", "\r\n", "\r"])
def test_recovery_and_detection_whatever_the_line_ends(ending: str) -> None:
    broken_tonel = (
        "Class { #name : #Foo }\n\n{ #category : #a }\nFoo >> bad [\n\t^ (1 +\n]\n\n"
        "{ #category : #b }\nFoo >> good [\n\t^ 2\n]\n"
    )
    source = parse(broken_tonel.replace("\n", ending))
    assert [(m.selector, m.category, m.range.start.line) for m in source.methods] == [
        ("bad", "a", 3),
        ("good", "b", 8),
    ]
    assert source.methods[0].range.end.line == 5 and source.diagnostics
    gnu = "Object subclass: Foo [\n    bar [\n\t^ 1\n    ]\n]\n"
    source = parse(gnu.replace("\n", ending))
    assert source.format == "bracket"
    assert [(m.selector, m.range.start.line, m.range.end.line) for m in source.methods] == [
        ("bar", 1, 3)
    ]
