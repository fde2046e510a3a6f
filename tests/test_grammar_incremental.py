"""DocumentParser: edits re-parse incrementally and give exactly what a fresh parse gives."""

from __future__ import annotations

import random
import zlib
from pathlib import Path

import pytest

from smalltalk_grammar import DocumentParser, parse

SAMPLE = Path(__file__).parent / "fixtures" / "sample"
FILES = [
    "tonel/StreamingRights-Core/SRLicence.class.st",
    "chunk-squeak/StreamingRights.st",
    "gnu/StreamingRights.st",
    "filetree/StreamingRights-Core.package/SRLicence.class/instance/statusReportOn..st",
]
SNIPPETS = [" ", "x", "'", '"', "]", "[", "\n", "foo: 1. ", "!", "^ self bar", "é", "\r\n", "$"]


@pytest.mark.parametrize("name", FILES)
def test_random_edits_match_a_fresh_parse(name: str) -> None:
    path = str(SAMPLE / name)
    text = (SAMPLE / name).read_text(encoding="utf-8")
    doc = DocumentParser(path)
    assert doc.parse(text) == parse(text, path)
    rng = random.Random(zlib.crc32(name.encode()))
    for _ in range(40):
        start = rng.randrange(len(text) + 1)
        end = min(len(text), start + rng.choice([0, 0, 1, 3, 20]))
        new = rng.choice(SNIPPETS) if rng.random() < 0.7 else ""
        result = doc.edit(start, end, new)
        text = text[:start] + new + text[end:]
        assert doc.text == text
        assert result == parse(text, path)


def test_tonel_edit_reuses_the_tree_and_the_other_methods() -> None:
    path = SAMPLE / "tonel/StreamingRights-Core/SRLicence.class.st"
    text = path.read_text(encoding="utf-8")
    doc = DocumentParser(str(path))
    first = doc.parse(text)
    walked = doc.state.cache.misses
    assert walked == len(first.methods) == 10
    old_tree = doc.state.tree
    assert old_tree is not None
    fee = next(m for m in first.methods if m.selector == "fee:")
    where = text.index("fee := aNumber", fee.start_offset)
    result = doc.edit(where, where + 3, "cost")
    assert doc.state.tree is not None and doc.state.tree is not old_tree
    # tree-sitter re-read only the edited method: every changed range lies inside it.
    changed = old_tree.changed_ranges(doc.state.tree)
    assert all(
        fee.start_offset <= r.start_byte <= r.end_byte <= fee.end_offset + 1 for r in changed
    )
    # Only the edited method was walked again.
    assert doc.state.cache.misses == walked + 1
    edited = next(m for m in result.methods if m.selector == "fee:")
    assert edited.variable_references == ["cost"]
    assert [m.selector for m in result.methods] == [m.selector for m in first.methods]


@pytest.mark.parametrize(
    ("name", "needle"),
    [
        ("chunk-squeak/StreamingRights.st", "^ fee ifNil:"),
        ("gnu/StreamingRights.st", "^fee ifNil:"),
    ],
)
def test_chunk_and_bracket_edits_walk_only_the_changed_method(name: str, needle: str) -> None:
    text = (SAMPLE / name).read_text(encoding="utf-8")
    doc = DocumentParser(name)
    first = doc.parse(text)
    walked = doc.state.cache.misses
    where = text.index(needle)
    result = doc.edit(where, where, "self touch. ")
    assert doc.state.cache.misses == walked + 1
    fee = next(m for m in result.methods if m.class_name == "SRLicence" and m.selector == "fee")
    assert "touch" in fee.sends
    assert len(result.methods) == len(first.methods)
    # Methods after the edit moved by the inserted text, on the same lines.
    before = {(m.class_name, m.selector): m for m in first.methods}
    for method in result.methods:
        old = before[(method.class_name, method.selector)]
        shift = len("self touch. ") if old.start_offset > where else 0
        assert method.start_offset == old.start_offset + shift


def test_whole_text_updates_are_turned_into_edits() -> None:
    text = (SAMPLE / "tonel/StreamingRights-Core/SRStore.class.st").read_text(encoding="utf-8")
    doc = DocumentParser("SRStore.class.st")
    doc.parse(text)
    walked = doc.state.cache.misses
    changed = text.replace("^ self rights isEmpty", "^ self rights notEmpty")
    result = doc.parse(changed)
    assert result == parse(changed, "SRStore.class.st")
    assert doc.state.cache.misses == walked + 1
    # Switching format mid-stream (the user pastes a chunk file over it) also works.
    chunk = (SAMPLE / "chunk-squeak/StreamingRights.st").read_text(encoding="utf-8")
    assert doc.parse(chunk) == parse(chunk, "SRStore.class.st")
    assert doc.parse("") == parse("", "SRStore.class.st")
