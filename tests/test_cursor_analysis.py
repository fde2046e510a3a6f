"""The one cursor analysis (server.completion.cursor) on every source format of the sample."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.completion.cursor import analyse_cursor
from smalltalk_grammar import format_of

SAMPLE = Path(__file__).parent / "fixtures" / "sample"
FILES = {
    "tonel": "tonel/StreamingRights-Core/SRStore.class.st",
    "chunk-squeak": "chunk-squeak/StreamingRights.st",
    "chunk-vw": "chunk-vw/StreamingRights.st",
    "gnu": "gnu/StreamingRights.st",
    "filetree": "filetree/StreamingRights-Core.package/SRStore.class/instance/addRight..st",
}
FORMATS = {"tonel": "tonel", "chunk-squeak": "chunk", "chunk-vw": "chunk", "gnu": "bracket",
           "filetree": "filetree"}


def _load(name: str) -> tuple[str, str]:
    path = SAMPLE / FILES[name]
    return path.read_text(encoding="utf-8"), str(path)


@pytest.mark.parametrize("name", sorted(FILES))
def test_cursor_in_a_method_body(name: str) -> None:
    text, path = _load(name)
    source_format = format_of(text, path)
    assert source_format == FORMATS[name]
    offset = text.index("rights add: aRight") + len("rights add: ")
    cursor = analyse_cursor(text, offset, source_format, path)
    assert cursor.source_format == source_format
    assert cursor.facts.class_name == "SRStore"
    assert cursor.facts.side == "instance"
    assert cursor.facts.selector == "addRight:"
    assert cursor.facts.method_start <= offset
    method = cursor.method
    assert method is not None
    assert method.before.endswith("rights add: ")
    assert method.after.startswith("aRight")
    assert method.start <= offset <= method.end
    assert cursor.scan.quote is None
    assert cursor.mode == "line"  # code after the cursor on its line
    if name != "filetree":  # a FileTree method file has one method and says its class by path
        assert method.selector == "addRight:"


@pytest.mark.parametrize("name", sorted(FILES))
def test_cursor_in_a_comment(name: str) -> None:
    text, path = _load(name)
    offset = text.index("Add aRight")
    cursor = analyse_cursor(text, offset, format_of(text, path), path)
    assert cursor.scan.quote == '"'
    assert cursor.facts.class_name == "SRStore"


@pytest.mark.parametrize("name", sorted(FILES))
def test_empty_body_asks_for_a_block(name: str) -> None:
    text, path = _load(name)
    start = text.index('"Add aRight to the receiver and answer it"')
    end = text.index("aRight", text.index("rights add:", start)) + len("aRight")
    # The body emptied: the cursor on a blank line of an empty method (the method's end, `]`
    # or a chunk's `!`, on the next line).
    emptied = text[:start] + "\n\t\n" + text[end:]
    offset = start + 2
    cursor = analyse_cursor(emptied, offset, format_of(emptied, path), path)
    assert cursor.method is not None
    assert cursor.mode == "block"
    assert cursor.facts.selector == "addRight:"


def test_class_side_and_namespace() -> None:
    text, path = _load("chunk-vw")
    cursor = analyse_cursor(text, len(text) // 2, "chunk", path)
    assert cursor.facts.class_name is not None
    assert "." not in cursor.facts.class_name  # VisualWorks namespaces are dropped
    gnu, gnu_path = _load("gnu")
    offset = gnu.index("registry [")
    offset = gnu.index("\n", offset) + 1
    assert analyse_cursor(gnu, offset, "bracket", gnu_path).facts.side == "class"
