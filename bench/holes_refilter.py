"""The filters of this checkout on the raw answers a holes run recorded, without a model.

    .venv/bin/python bench/holes_refilter.py RUN.json [--side NAME] [--show]

bench_holes.py stores each hole's raw generation (`raw`) beside the suggestion the server made
of it. This rebuilds each hole's cursor context from the fixed rule (no project context: the
filters do not read it), runs `apply_filters` on the raw text and scores the result as
bench_holes.py does: a change to the post-processing is measured in seconds on the very same
generations. `--show` prints every hole whose suggestion changed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench_holes import CORPUS  # noqa: E402
from holes_corpus import score, select_holes  # noqa: E402

from server.completion.context import build_context  # noqa: E402
from server.completion.filters import apply_filters  # noqa: E402
from server.completion.types import CompletionRequest  # noqa: E402
from smalltalk_grammar import format_of  # noqa: E402

COLUMNS = ("answered", "parses", "first_line_exact")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path, help="a --json-out file of bench_holes.py")
    parser.add_argument("--side", default=None, help="the server side (default: the first)")
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--show", action="store_true")
    args = parser.parse_args()
    run = json.loads(args.run.read_text(encoding="utf-8"))
    side = args.side or run["names"][0]
    holes = {h.id: h for h in select_holes(args.corpus)}
    before: list[dict] = []
    after: list[dict] = []
    for row in run["rows"]:
        recorded, hole = row["sides"].get(side), holes.get(row["id"])
        if recorded is None or hole is None or recorded.get("raw") is None:
            continue
        request = CompletionRequest(f"file:///holes/{hole.path}", hole.text, hole.offset,
                                    path=f"/holes/{hole.path}",
                                    source_format=format_of(hole.text, hole.path))
        text = apply_filters(recorded["raw"], build_context(request)) or ""
        now = score(hole, text)
        before.append(recorded)
        after.append(now)
        if args.show and text != recorded["suggestion"]:
            print(f"{row['id']}: {recorded['suggestion']!r} -> {text!r} "
                  f"(parses {recorded['parses']} -> {now['parses']})")
    n = len(after)
    print(f"{n} holes of {args.run} ({side})")
    print("| filters | answered | parses | first line exact | edit similarity |")
    print("|---|---|---|---|---|")
    for label, got in (("as recorded", before), ("this checkout", after)):
        counts = " | ".join(str(sum(bool(g[c]) for g in got)) for c in COLUMNS)
        similarity = statistics.mean(g["edit_similarity"] for g in got) if got else 0.0
        print(f"| {label} | {counts} | {similarity:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
