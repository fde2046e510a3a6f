"""Bad input never raises: binary, empty, huge, unterminated, `!` in strings, non-UTF-8."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from smalltalk_grammar import (
    LineIndex,
    SourceFile,
    iter_project,
    offset_at,
    parse,
    parse_file,
    parse_path,
)
from smalltalk_grammar.text import decode

BAD = Path(__file__).parent / "fixtures" / "sample" / "bad"
SAMPLE = BAD.parent


def _errors(source: SourceFile) -> list[tuple[int, str]]:
    return [(d.range.start.line, d.message) for d in source.diagnostics if d.severity == "error"]


def _by_selector(source: SourceFile) -> dict[str, object]:
    return {m.selector: m for m in source.methods}


def test_empty_file() -> None:
    source = parse_file(BAD / "empty.st")
    assert source.classes == [] and source.methods == []
    assert [d.severity for d in source.diagnostics] == ["information"]
    assert parse("").methods == [] and parse(b"   \n\n").classes == []


def test_binary_data(tmp_path: Path) -> None:
    data = bytes(range(256)) * 64
    source = parse(data)
    assert source.classes == [] and source.methods == []
    assert len(source.diagnostics) == 1 and "binary" in source.diagnostics[0].message
    path = tmp_path / "image.st"
    path.write_bytes(b"Object subclass: #Foo!\x00\x01\x02" + data)
    assert len(parse_file(path).diagnostics) == 1
    # A project walk skips binary .st files altogether.
    (tmp_path / "good.st").write_text("foo\n\t^ 1\n")
    assert list(iter_project(tmp_path)) == [tmp_path / "good.st"]


def test_unreadable_path(tmp_path: Path) -> None:
    source = parse_file(tmp_path / "missing.st")
    assert source.methods == [] and "cannot read" in source.diagnostics[0].message
    assert parse_path(tmp_path / "missing-dir") == []


def test_unterminated_string_in_chunk_file() -> None:
    source = parse_file(BAD / "unterminated-string.st")
    assert [c.name for c in source.classes] == ["SRBadString"]
    assert source.classes[0].superclass == "Object" and source.classes[0].instance_variables == []
    good = _by_selector(source)["good"]
    assert (good.category, good.range.start.line, good.range.end.line) == ("accessing", 7, 8)
    assert good.source == "good\n\t^ 'fine'"
    broken = _by_selector(source)["broken"]
    assert broken.range.start.line == 10
    assert 12 in [line for line, _ in _errors(source)]


def test_unterminated_comment_in_chunk_file() -> None:
    source = parse_file(BAD / "unterminated-comment.st")
    assert [c.name for c in source.classes] == ["SRBadComment"]
    good = _by_selector(source)["good"]
    assert (good.category, good.range.start.line, good.range.end.line) == ("accessing", 7, 9)
    assert good.comment == "A closed comment"
    assert 12 in [line for line, _ in _errors(source)]


def test_unbalanced_brackets_in_tonel() -> None:
    source = parse_file(BAD / "unbalanced-brackets.class.st")
    assert source.format == "tonel"
    (cls,) = source.classes
    assert (cls.name, cls.superclass, cls.category) == (
        "SRBadBrackets",
        "Object",
        "StreamingRights-Bad",
    )
    assert cls.comment == "I am a sample class with a method that misses a closing bracket."
    good = _by_selector(source)["good"]
    assert (good.category, good.range.start.line, good.range.end.line) == ("accessing", 10, 13)
    assert good.source == "good\n\n\t^ 1"
    assert _errors(source)
    assert "broken" in _by_selector(source)


def test_bang_inside_a_string() -> None:
    source = parse_file(BAD / "bang-in-string.st")
    assert [c.name for c in source.classes] == ["SRBangSample"]
    methods = _by_selector(source)
    shout = methods["shout"]
    assert (shout.category, shout.range.start.line) == ("printing", 7)
    assert shout.comment == "Answer a greeting with an exclamation mark!"
    assert shout.source.endswith("^ 'Hello!'")
    twice = methods["shoutTwice"]
    assert (twice.category, twice.range.start.line) == ("printing", 11)
    assert twice.source == "shoutTwice\n\t^ 'Hello!! World!'"
    bang = methods["bangCharacter"]
    assert (bang.category, bang.range.start.line, bang.source) == (
        "printing",
        14,
        "bangCharacter\n\t^ $!",
    )
    # The undoubled `!` in `oops` is reported where it is.
    warnings = [d for d in source.diagnostics if d.severity == "warning"]
    assert warnings and warnings[0].range.start.line == 19


def test_non_utf8_bytes() -> None:
    source = parse(b"foo\n\t^ 'caf\xe9 \xa3'\n")
    assert source.encoding == "latin-1"
    assert source.methods[0].source == "foo\n\t^ 'café £'"
    assert source.diagnostics[0].severity == "warning"
    assert "Latin-1" in source.diagnostics[0].message


@pytest.mark.parametrize(
    "text",
    [
        "Class { #name : #Foo }\n\nFoo >> bar [\n\t^ 'never closed\n]\n",
        'Class { #name : #Foo }\n\nFoo >> bar [\n\t"never closed\n]\n\nFoo >> baz [ ^ 2 ]\n',
        "Class { #name : #Foo\n\nFoo >> bar [ ^ 1 ]\n",
        "Object subclass: Foo [\n    bar [ ^ 'never closed ]\n    baz [ ^ 2 ]\n]\n",
        "Object subclass: Foo [\n    bar [ ^ [ 1 ]\n    baz [ ^ 2 ]\n",
        "Object subclass: Foo [\n    bar [ ^ 1 ] ] ]\nFoo extend [ baz [ ^ 2 ] ]\n",
        "!Foo methodsFor: 'x'!\nbar\n\t^ 'a!\n\nbaz\n\t^ 2! !\n",
        "!Foo methodsFor: 'x'!\nbar\n\t^ (1 + ! !\n",
        "bar: x\n\t^ x + + (",
        "Object subclass: #Foo instanceVariableNames: 'a' classVariableNames: '' package: 'X",
    ],
)
def test_broken_snippets_give_diagnostics(text: str) -> None:
    source = parse(text)
    assert source.diagnostics, text
    index = LineIndex(text)
    for item in [*source.methods, *source.classes, *source.diagnostics]:
        start = index.offset(item.range.start)
        end = index.offset(item.range.end)
        assert 0 <= start <= end <= len(text)


def test_rest_of_a_broken_gnu_file_still_parses() -> None:
    text = "Object subclass: Foo [\n    bar [ ^ 'never closed ]\n]\nObject subclass: Baz [\n]\n"
    source = parse(text)
    assert [c.name for c in source.classes] == ["Foo", "Baz"]
    assert any("unterminated string" in d.message for d in source.diagnostics)


def test_twenty_megabyte_files() -> None:
    # One huge string literal in a Tonel method, and a file that is one unterminated comment.
    body = "x" * 20_000_000
    text = f"Class {{ #name : #Big }}\n\nBig >> big [\n\t^ '{body}'\n]\n\nBig >> small [ ^ 1 ]\n"
    source = parse(text.encode("utf-8"))
    assert source.format == "tonel"
    assert [m.selector for m in source.methods] == ["big", "small"]
    assert source.methods[1].range.start.line == 6
    source = parse(b'"' + b"y" * 20_000_000)
    assert source.methods == [] and source.diagnostics


def test_truncated_and_damaged_sample_files_never_raise() -> None:
    rng = random.Random(7)
    junk = [b"'", b'"', b"!", b"!!", b"[", b"]", b"$", b"{", b"}", b"#(", b"\r", b"\xff", b"<"]
    for path in iter_project(SAMPLE):
        data = path.read_bytes()
        for _ in range(12):
            a = rng.randrange(len(data) + 1)
            b = rng.randrange(a, len(data) + 1)
            choice = rng.random()
            if choice < 0.3:
                damaged = data[:a]
            elif choice < 0.6:
                damaged = data[:a] + data[b:]
            else:
                damaged = data[:a] + rng.choice(junk) + data[a:]
            source = parse(damaged, str(path))
            assert not any(d.message.startswith("internal") for d in source.diagnostics)
            text = decode(damaged).text
            for method in source.methods:
                start = offset_at(text, method.range.start)
                assert start == method.start_offset <= method.end_offset <= len(text)
