"""Golden files for post-processing: a snippet with the cursor (█), the raw model output and
the expected suggestion. No model involved; each runs in milliseconds."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.completion.context import build_context
from server.completion.filters import apply_filters
from server.completion.types import CompletionRequest

GOLDEN = Path(__file__).parent / "golden"
CURSOR = "█"


def load_golden(path: Path) -> dict[str, str]:
    sections: dict[str, list[str]] = {"header": []}
    current = "header"
    for line in path.read_text(encoding="utf-8").split("\n"):
        if line.startswith("=== "):
            current = line[4:].strip()
            sections[current] = []
        else:
            sections[current].append(line)
    out = {name: "\n".join(lines) for name, lines in sections.items()}
    # Each section ends with the newline before the next marker (or the file's last one).
    for name in ("source", "output", "expected"):
        if name in out and out[name].endswith("\n"):
            out[name] = out[name][:-1]
    for line in sections["header"]:
        if ":" in line and not line.startswith("#"):
            key, value = line.split(":", 1)
            out[key.strip()] = value.strip()
    return out


CASES = sorted(GOLDEN.glob("*.golden"))


def test_there_are_golden_files() -> None:
    assert len(CASES) >= 10


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_golden(path: Path) -> None:
    case = load_golden(path)
    source = case["source"]
    assert source.count(CURSOR) == 1, "mark the cursor exactly once"
    offset = source.index(CURSOR)
    text = source.replace(CURSOR, "")
    request = CompletionRequest(
        uri=f"file:///{path.stem}.st", text=text, offset=offset, source_format=case.get("format")
    )
    ctx = build_context(request)
    result = apply_filters(case["output"], ctx)
    if "dropped" in case:
        assert result is None, f"expected the suggestion to be dropped, got {result!r}"
    else:
        assert result == case["expected"]
