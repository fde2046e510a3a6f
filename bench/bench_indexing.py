"""Indexing a real project, today's embedding against the new default, side by side.

    .venv/bin/python bench/bench_indexing.py [--corpus ../shared/corpus/pharo-subset]
        [--files N] [--settings today,default]

Parses the corpus (every `.st` file under its `src/`, or the first N by path) into a
ProjectModel and indexes all of it through the real code (`RetrievalIndex.sync_project`,
batches of the server's size, the index in a temporary folder), once per setting:

- today: sentence-transformers fp32 on one torch thread, 256 word pieces, one batch at once
  (the server before this change);
- default: the server's defaults in server/config.py (int8 ONNX, `retrieval.max_tokens`,
  `retrieval.index_workers` batches at once, accessors last);
- or any RUNTIME/TOKENS/WORKERS[/skip], e.g. `onnx-int8/96/2` or `torch/128/1`.

For each: units, CPU-seconds of the process, wall time, units/s, when selector search was
usable (before the first vector), and the time extrapolated to a 90,000-method project
(same units per method and rate). Then how far the new vectors agree with today's, by a fixed
rule: every 50th method (by key) is a query, its stored vector searched among all units;
top-5 overlap and Spearman rank correlation over today's top 50. The load (`uptime`) is
printed before and after each setting.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from server.config import RetrievalConfig  # noqa: E402
from server.features.indexing import BATCH  # noqa: E402
from server.project_model import ProjectModel  # noqa: E402
from server.retrieval.embedder import Embedder, load_embedder  # noqa: E402
from server.retrieval.index import EmbedPlan, RetrievalIndex  # noqa: E402
from smalltalk_grammar import parse_file  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
# ../shared/corpus beside the checkout, or beside the worktrees' folder (as bench_holes.py).
CORPUS = next((base / "shared" / "corpus" / "pharo-subset"
               for base in (ROOT.parent, ROOT.parent.parent)
               if (base / "shared" / "corpus" / "pharo-subset" / "src").is_dir()),
              ROOT.parent / "shared" / "corpus" / "pharo-subset")
TARGET_METHODS = 90_000
# The server's batch before this change (today's setting is measured as it was).
TODAY_BATCH = 16


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def setting(name: str) -> tuple[Embedder, EmbedPlan, str]:
    """"today", "default", or RUNTIME/TOKENS/WORKERS[/skip] (e.g. "onnx-int8/96/2")."""
    defaults = RetrievalConfig()
    if name == "today":
        name = "torch/256/1"
    elif name == "default":
        name = (f"{defaults.embedding_runtime}/{defaults.max_tokens}/{defaults.index_workers}"
                f"/{defaults.accessors}")
    runtime, tokens, workers, *rest = name.split("/")
    accessors = rest[0] if rest else "last"
    assert runtime in ("torch", "onnx-int8") and accessors in ("last", "skip"), name
    embedder = load_embedder("all-minilm-l6-v2", threads=1, runtime=runtime,  # type: ignore
                             max_tokens=None if (runtime, tokens) == ("torch", "256")
                             else int(tokens))
    plan = EmbedPlan(workers=int(workers), accessors=accessors)  # type: ignore[arg-type]
    return embedder, plan, (f"{runtime}, {tokens} word pieces, {workers} batch(es) at once, "
                            f"accessors {accessors}")


def run(name: str, project: ProjectModel, root: Path, methods: int) -> dict[str, np.ndarray]:
    print(f"\n[{name}] {uptime()}", flush=True)
    started = time.perf_counter()
    embedder, plan, label = setting(name)
    print(f"[{name}] {label}; embedder {embedder.name} loaded in "
          f"{time.perf_counter() - started:.1f}s", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        index = RetrievalIndex(root, embedder, directory=tmp)
        ready: list[float] = []
        wall0, cpu0 = time.perf_counter(), time.process_time()

        def progress(done: int, total: int) -> None:
            if not ready:
                ready.append(time.perf_counter() - wall0)

        batch = TODAY_BATCH if name == "today" else BATCH
        stats = index.sync_project(project, progress=progress, batch_size=batch, plan=plan)
        index.save()
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        lexical = index.search_lexical(["printOn:"], 3)
        vectors = {r.key: v for r in index.records()
                   if (v := index.stored_vector(r.key)) is not None}
        index.close()
    units = stats.units
    per_method = units / methods
    at_target = TARGET_METHODS * per_method * wall / max(units, 1)
    print(f"[{name}] {units} units ({methods} methods), {stats.embedded} embedded: wall "
          f"{wall:.1f}s, CPU {cpu:.1f}s -> {stats.embedded / wall:.1f} units/s wall, "
          f"{stats.embedded / cpu:.1f} units per CPU-second", flush=True)
    print(f"[{name}] selector search usable after {ready[0] if ready else 0:.2f}s "
          f"({len(lexical)} hits for printOn:); 90,000 methods "
          f"({TARGET_METHODS * per_method:.0f} units) at this rate: {at_target:.0f}s = "
          f"{at_target / 60:.1f} min", flush=True)
    print(f"[{name}] {uptime()}", flush=True)
    return {k: v.reshape(-1) for k, v in vectors.items()}


def agreement(reference: dict[str, np.ndarray], other: dict[str, np.ndarray]) -> str:
    from scipy.stats import spearmanr

    keys = sorted(set(reference) & set(other))
    ref = np.stack([reference[k] for k in keys])
    new = np.stack([other[k] for k in keys])
    queries = [i for i, k in enumerate(keys) if k.startswith("method|")][::50]
    overlaps, rhos = [], []
    for q in queries:
        ref_scores, new_scores = ref @ ref[q], new @ new[q]
        ref_scores[q] = new_scores[q] = -9.0
        ref_top, new_top = np.argsort(-ref_scores), np.argsort(-new_scores)
        overlaps.append(len(set(ref_top[:5]) & set(new_top[:5])) / 5)
        rhos.append(spearmanr(ref_scores[ref_top[:50]], new_scores[ref_top[:50]])[0])
    cosine = float(np.mean(np.sum(ref * new, axis=1)))
    return (f"{len(queries)} queries (every 50th method) among {len(keys)} units: top-5 "
            f"overlap {np.mean(overlaps):.2f}, Spearman over today's top 50 "
            f"{np.mean(rhos):.3f}, mean cosine {cosine:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--files", type=int, default=0, help="only the first N files by path")
    parser.add_argument("--settings", default="today,default",
                        help="comma-separated; the first is the reference for agreement")
    args = parser.parse_args()
    root = args.corpus / "src"
    paths = sorted(root.rglob("*.st"))
    if args.files:
        paths = paths[: args.files]
    started = time.perf_counter()
    project = ProjectModel(parse_file(p) for p in paths)
    methods = sum(len(f.methods) for f in project.files())
    if not methods:
        raise SystemExit(f"no methods under {root}")
    print(f"{len(paths)} files, {methods} methods parsed in {time.perf_counter() - started:.1f}s "
          f"(2 cores; batches of {BATCH}, today's of {TODAY_BATCH})", flush=True)
    names = args.settings.split(",")
    results = {name: run(name, project, root, methods) for name in names}
    for name in names[1:]:
        print(f"\nagreement of {name} with {names[0]}:",
              agreement(results[names[0]], results[name]))


if __name__ == "__main__":
    main()
