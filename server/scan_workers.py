"""Parsing files for the workspace scan: one file into what the parse cache stores, and many
files in worker processes.

A cold scan of a large project is mostly parsing, which holds the GIL; on two cores two worker
processes parse about twice as fast. What comes back is what the cache stores anyway (the
summary and the parse as JSON), so the scanning process only indexes summaries and loads a
file's full parse when a request first needs it, as after a warm start.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import threading
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import NamedTuple

from server.project_model import summarize
from smalltalk_grammar import SourceFile, parse_file
from smalltalk_grammar.build import FactsCache
from smalltalk_grammar.parsing import paused_gc

log = logging.getLogger(__name__)

# Fewer files than this are parsed in the scanning process (starting workers costs ~0.5 s).
PARALLEL_MIN_FILES = 300
# Files per task: small enough for even progress, large enough to keep IPC cheap.
CHUNK = 50


class ParsedFile(NamedTuple):
    """A parsed file as the parse cache stores it."""

    path: str
    mtime: int
    size: int
    digest: str | None
    summary: str  # JSON
    data: str  # the SourceFile as JSON


def companions(path: str) -> list[str]:
    # A FileTree class's parse includes its README.md (the comment).
    if path.endswith("properties.json"):
        return [os.path.join(os.path.dirname(path), "README.md")]
    return []


def content_hash(path: str) -> str | None:
    digest = hashlib.blake2b(digest_size=16)
    try:
        with open(path, "rb") as handle:
            digest.update(handle.read())
        for extra in companions(path):
            if os.path.isfile(extra):
                digest.update(b"\0")
                with open(extra, "rb") as handle:
                    digest.update(handle.read())
    except OSError:
        return None
    return digest.hexdigest()


def dump(source: SourceFile) -> str:
    return source.model_dump_json(by_alias=True, exclude_defaults=True)


def parse_one(
    path: str, stamp: tuple[int, int], facts: FactsCache, hashed: bool = True
) -> tuple[SourceFile, ParsedFile]:
    source = parse_file(Path(path), facts)
    summary = json.dumps(summarize(source), separators=(",", ":"))
    digest = content_hash(path) if hashed else None
    return source, ParsedFile(path, stamp[0], stamp[1], digest, summary, dump(source))


def _parse_chunk(items: list[tuple[str, tuple[int, int]]], hashed: bool) -> list[ParsedFile]:
    """Runs in a worker process."""
    facts = FactsCache()
    with paused_gc():
        return [parse_one(path, stamp, facts, hashed)[1] for path, stamp in items]


def worker_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def parse_in_workers(
    items: list[tuple[str, tuple[int, int]]],
    workers: int,
    cancel: threading.Event,
    hashed: bool = True,
) -> Iterator[list[ParsedFile]]:
    """Parse (path, stamp) items in `workers` processes; yields each chunk's results as it
    ends. Stops early when `cancel` is set."""
    # Spawned, not forked: the server has threads (models loading, the event loop) that a
    # fork would copy in whatever state they are in.
    context = multiprocessing.get_context("spawn")
    chunks = [items[i : i + CHUNK] for i in range(0, len(items), CHUNK)]
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        waiting = list(reversed(chunks))
        pending: set[Future[list[ParsedFile]]] = set()
        # Two tasks per worker in flight keep them busy without queueing everything.
        while waiting and len(pending) < workers * 2:
            pending.add(pool.submit(_parse_chunk, waiting.pop(), hashed))
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                if cancel.is_set():
                    for other in pending:
                        other.cancel()
                    return
                yield future.result()
                if waiting:
                    pending.add(pool.submit(_parse_chunk, waiting.pop(), hashed))
