"""`smalltalk-lsp index PATH [--json]`: build or update a workspace's retrieval index."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel

if TYPE_CHECKING:
    from server.retrieval.embedder import Embedder
    from server.retrieval.index import EmbedPlan, Progress

HELP = "build or update the retrieval index of a workspace (only changed units are embedded)"


class IndexReport(BaseModel):
    files: int
    units: int
    embedded: int
    reused: int
    removed: int
    seconds: float


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", type=Path, help="the workspace folder")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object: files, units, embedded, reused, removed, "
                             "seconds")
    parser.add_argument("--model", default=None,
                        help="embedding model (default: models.embeddings from the settings)")


def index_workspace(
    root: Path, embedder: Embedder, progress: Progress | None = None,
    plan: EmbedPlan | None = None,
) -> IndexReport:
    """Parse every source under `root` and bring its index up to date."""
    from server.project_model import ProjectModel
    from server.retrieval.index import RetrievalIndex
    from smalltalk_grammar import iter_project, parse_file

    started = time.perf_counter()
    paths = list(iter_project(root))
    project = ProjectModel(parse_file(p) for p in paths)
    index = RetrievalIndex(root, embedder)
    try:
        stats = index.sync_project(project, progress=progress, plan=plan)
        index.save()
    finally:
        index.close()
    return IndexReport(
        files=len(paths), units=stats.units, embedded=stats.embedded, reused=stats.reused,
        removed=stats.removed, seconds=round(time.perf_counter() - started, 3),
    )


def _progress_bar(done: int, total: int) -> None:
    """A one-line bar on stderr, redrawn in place."""
    width = 30
    filled = width * done // total if total else width
    sys.stderr.write(f"\rembedding [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
    if done >= total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def run(args: argparse.Namespace) -> int:
    from server.config import load_settings
    from server.retrieval.embedder import EmbedderError, load_embedder
    from server.retrieval.index import EmbedPlan

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    root: Path = args.path
    if not root.is_dir():
        print(f"smalltalk-lsp index: {root} is not a folder", file=sys.stderr)
        return 2
    loaded = load_settings(root, trusted=True)  # the root the user named
    for problem in loaded.problems:
        print(f"smalltalk-lsp index: settings: {problem}", file=sys.stderr)
    name = args.model or loaded.settings.models.embeddings
    retrieval = loaded.settings.retrieval
    try:
        embedder = load_embedder(name, runtime=retrieval.embedding_runtime,
                                 max_tokens=retrieval.max_tokens)
    except EmbedderError as err:
        print(f"smalltalk-lsp index: {err}", file=sys.stderr)
        return 1
    # The bar goes to stderr, so stdout stays one JSON object with --json.
    show = _progress_bar if sys.stderr.isatty() else None
    plan = EmbedPlan(workers=retrieval.index_workers, accessors=retrieval.accessors)
    report = index_workspace(root, embedder, show, plan)
    if args.json:
        print(json.dumps(report.model_dump()))
    else:
        for key, value in report.model_dump().items():
            print(f"{key:>9}: {value}")
    return 0
