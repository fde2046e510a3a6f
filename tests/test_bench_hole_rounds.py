"""The holes benchmark's rule in rounds (bench/holes_corpus.py), on our sample project: more
holes from a project with few files, round 0 being the one-round rule unchanged."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from holes_corpus import select_holes  # noqa: E402

SAMPLE = ROOT / "tests" / "fixtures" / "sample" / "tonel"


def test_rounds_begin_with_the_one_round_rule_and_never_cut_a_place_twice() -> None:
    one = select_holes(SAMPLE)
    four = select_holes(SAMPLE, rounds=4)
    assert [h.id for h in four[: len(one)]] == [h.id for h in one]
    assert {h.round for h in one} == {0}
    assert len(four) > len(one)
    assert {h.round for h in four} == {0, 1, 2, 3}
    places = [(h.path, h.offset, h.line, h.expected) for h in four]
    assert len(places) == len(set(places))
    assert len({h.id for h in four}) == len(four)


def test_each_round_cuts_at_most_one_hole_per_file_from_the_original_text() -> None:
    holes = select_holes(SAMPLE, rounds=4)
    for round_ in range(4):
        paths = [h.path for h in holes if h.round == round_]
        assert len(paths) == len(set(paths))
    for hole in holes:
        original = (SAMPLE / hole.path).read_text(encoding="utf-8")
        # The holed file is the original with `expected` taken out at the cursor.
        assert hole.expected.strip()
        assert hole.text != original
        assert hole.text[: hole.offset] == original[: hole.offset]
