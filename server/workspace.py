"""Scanning the workspace into the project model, keeping it current, and the on-disk cache.

The scan runs in a background thread and adds files to the model in batches, so requests are
answered from whatever is indexed so far. Parse results are cached in
`<root>/.smalltalk-lsp/cache.sqlite`, one row per file: the file's stamp (mtime, size), the hash
of its content, the parse as JSON, and the summary the project model indexes. A warm start
reads summaries only (a file's full parse is loaded when a request first needs it); a file
whose stamp is unchanged is not even read, and a touched file whose content hash is unchanged
is not parsed again.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from server.project_model import Loader, ProjectModel, Summary
from server.scan_workers import (
    PARALLEL_MIN_FILES,
    ParsedFile,
    companions,
    content_hash,
    parse_in_workers,
    parse_one,
    worker_count,
)
from smalltalk_grammar import SourceFile, iter_project, parse_file
from smalltalk_grammar.build import FactsCache
from smalltalk_grammar.parsing import paused_gc

log = logging.getLogger(__name__)

CACHE_DIR = ".smalltalk-lsp"
CACHE_FILE = "cache.sqlite"
# Bump when the stored layout changes; the grammar's own sources are hashed in as well.
CACHE_FORMAT = "4"
BATCH = 200
# Worker processes for a cold scan, at most (the server keeps serving requests meanwhile).
MAX_WORKERS = 4


@dataclass
class ScanStats:
    files: int = 0
    cached: int = 0
    parsed: int = 0
    removed: int = 0
    seconds: float = 0.0
    # CPU time of the scanning thread (the wall time also counts other processes' load).
    cpu_seconds: float = 0.0
    changed: list[str] = field(default_factory=list)


def grammar_fingerprint() -> str:
    """Changes whenever the grammar package's code changes, invalidating cached parses."""
    import smalltalk_grammar

    digest = hashlib.blake2b(CACHE_FORMAT.encode(), digest_size=12)
    package = Path(smalltalk_grammar.__file__).parent
    for source in sorted(package.glob("*.py")):
        digest.update(source.name.encode())
        digest.update(source.read_bytes())
    return digest.hexdigest()


def file_stamp(path: str) -> tuple[int, int] | None:
    """(mtime_ns, size) of a file and its companions, or None if it is gone."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    mtime, size = stat.st_mtime_ns, stat.st_size
    for extra in companions(path):
        try:
            more = os.stat(extra)
        except OSError:
            continue
        mtime = max(mtime, more.st_mtime_ns)
        size += more.st_size
    return mtime, size


class ParseCache:
    """Parse results by file, in one sqlite database. Safe to use from several threads."""

    def __init__(self, root: Path, fingerprint: str) -> None:
        folder = root / CACHE_DIR
        folder.mkdir(parents=True, exist_ok=True)
        ignore = folder / ".gitignore"
        if not ignore.exists():
            ignore.write_text("*\n", encoding="utf-8")
        self._lock = threading.Lock()
        self._db = sqlite3.connect(folder / CACHE_FILE, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        row = self._db.execute("SELECT value FROM meta WHERE key='fingerprint'").fetchone()
        if row is None or row[0] != fingerprint:
            # Another grammar or layout: start over.
            self._db.execute("DROP TABLE IF EXISTS files")
            self._db.execute(
                "INSERT OR REPLACE INTO meta VALUES ('fingerprint', ?)", (fingerprint,)
            )
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, mtime INTEGER,"
            " size INTEGER, hash TEXT, summary TEXT, data TEXT)"
        )
        self._db.commit()

    def entries(self) -> dict[str, tuple[int, int, str, str]]:
        """path -> (mtime, size, hash, summary JSON) of every cached file."""
        with self._lock:
            rows = self._db.execute("SELECT path, mtime, size, hash, summary FROM files").fetchall()
        return {row[0]: row[1:] for row in rows}

    def data(self, path: str) -> str | None:
        """The stored parse (JSON) of one file."""
        with self._lock:
            row = self._db.execute("SELECT data FROM files WHERE path=?", (path,)).fetchone()
        return row[0] if row else None

    def store(self, rows: Iterable[tuple[str, int, int, str, str, str]]) -> None:
        """Rows of (path, mtime, size, hash, summary JSON, parse JSON)."""
        with self._lock:
            self._db.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?)", rows)
            self._db.commit()

    def touch(self, rows: Iterable[tuple[int, int, str]]) -> None:
        """Update the stamps of files whose content did not change: (mtime, size, path)."""
        with self._lock:
            self._db.executemany("UPDATE files SET mtime=?, size=? WHERE path=?", rows)
            self._db.commit()

    def forget(self, paths: Iterable[str]) -> None:
        with self._lock:
            self._db.executemany("DELETE FROM files WHERE path=?", [(p,) for p in paths])
            self._db.commit()

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _load(data: str) -> SourceFile | None:
    try:
        return SourceFile.model_validate_json(data)
    except ValueError:
        return None


class _Progress:
    """Reports files done of total, at most five times a second (and at the end)."""

    def __init__(self, total: int, report: Callable[[int, int], None] | None) -> None:
        self.total = total
        self.done = 0
        self.report = report
        self._last = 0.0

    def advance(self, count: int) -> None:
        self.done += count
        now = time.perf_counter()
        if self.report is not None and now - self._last > 0.2:
            self.report(self.done, self.total)
            self._last = now

    def finish(self) -> None:
        if self.report is not None:
            self.report(self.total, self.total)


class _Unchanged:
    """The cached paths whose files still have the cached stamp: known Smalltalk sources,
    so the walk need not read them to tell. The stamps it takes are kept for the scan."""

    def __init__(self, known: dict[str, tuple[int, int, str, str]]) -> None:
        self.known = known
        self.stamps: dict[str, tuple[int, int] | None] = {}

    def __contains__(self, path: object) -> bool:
        if not isinstance(path, str) or path not in self.known:
            return False
        stamp = self.stamps[path] = file_stamp(path)
        return stamp == self.known[path][:2]

    def stamp(self, path: str) -> tuple[int, int] | None:
        return self.stamps.pop(path) if path in self.stamps else file_stamp(path)


class WorkspaceIndex:
    """Keeps a ProjectModel current with the files under the workspace roots."""

    # File watchers the server registers with the client.
    WATCH_GLOBS = ("**/*.st", "**/properties.json", "**/README.md")

    def __init__(
        self,
        project: ProjectModel,
        roots: list[Path],
        *,
        is_open: Callable[[str], bool] = lambda path: False,
        use_cache: bool = True,
        use_workers: bool = True,
    ) -> None:
        self.project = project
        self.roots = [Path(r).absolute() for r in roots]
        self.is_open = is_open
        self.use_cache = use_cache
        self.use_workers = use_workers
        self._cancel = threading.Event()
        self._caches: dict[Path, ParseCache] = {}
        self._facts = FactsCache()
        self._fingerprint: str | None = None

    def cancel(self) -> None:
        self._cancel.set()

    def _cache_for(self, root: Path) -> ParseCache | None:
        if not self.use_cache or not root.is_dir():
            return None
        if root not in self._caches:
            if self._fingerprint is None:
                self._fingerprint = grammar_fingerprint()
            try:
                self._caches[root] = ParseCache(root, self._fingerprint)
            except (OSError, sqlite3.Error) as err:
                log.warning("no parse cache under %s: %s", root, err)
                return None
        return self._caches.get(root)

    def root_of(self, path: str) -> Path | None:
        for root in self.roots:
            if path == str(root) or path.startswith(str(root).rstrip("/") + "/"):
                return root
        return None

    def scan(self, report: Callable[[int, int], None] | None = None) -> ScanStats:
        """Index every file under the roots (cache first); returns what it did."""
        began = time.perf_counter()
        began_cpu = time.thread_time()
        stats = ScanStats()
        seen: set[str] = set()
        with paused_gc():
            for root in self.roots:
                if self._cancel.is_set():
                    break
                self._scan_root(root, stats, seen, report)
        # The model's indexes live as long as the server: keep the cyclic collector's full
        # passes (tens of ms on a large project, in the middle of a request) off them.
        gc.freeze()
        if not self._cancel.is_set():
            for path in self.project.paths():
                if path not in seen and self.root_of(path) and not self.is_open(path):
                    self.project.remove(path)
                    stats.removed += 1
                    stats.changed.append(path)
        stats.seconds = time.perf_counter() - began
        stats.cpu_seconds = time.thread_time() - began_cpu
        return stats

    def _scan_root(
        self,
        root: Path,
        stats: ScanStats,
        seen: set[str],
        report: Callable[[int, int], None] | None,
    ) -> None:
        cache = self._cache_for(root)
        known = cache.entries() if cache is not None else {}
        unchanged = _Unchanged(known)
        paths = [str(p) for p in iter_project(root, unchanged)]
        progress = _Progress(len(paths), report)
        summaries: list[tuple[str, Summary, Loader]] = []
        touched: list[tuple[int, int, str]] = []
        misses: list[tuple[str, tuple[int, int]]] = []
        for path in paths:
            if self._cancel.is_set():
                return
            seen.add(path)
            stamp = unchanged.stamp(path)
            if stamp is None:
                progress.advance(1)
                continue
            stats.files += 1
            entry = known.get(path)
            hit = entry is not None and entry[:2] == stamp
            if entry is not None and not hit and content_hash(path) == entry[2]:
                hit = True  # touched, not changed
                touched.append((stamp[0], stamp[1], path))
            if hit and cache is not None and entry is not None:
                stats.cached += 1
                progress.advance(1)
                if not self.is_open(path):
                    summaries.append((path, json.loads(entry[3]), self._loader(cache, path)))
                if len(summaries) >= BATCH:
                    self._flush(summaries, [])
            else:
                misses.append((path, stamp))
        self._flush(summaries, [])
        self._parse(misses, cache, stats, progress)
        progress.finish()
        if cache is not None:
            cache.touch(touched)
            gone = [p for p in known if p not in seen]
            if gone:
                cache.forget(gone)

    def _parse(
        self,
        misses: list[tuple[str, tuple[int, int]]],
        cache: ParseCache | None,
        stats: ScanStats,
        progress: _Progress,
    ) -> None:
        """Parse the files the cache does not have, in worker processes when they are many."""
        workers = min(worker_count(), MAX_WORKERS)
        if len(misses) >= PARALLEL_MIN_FILES and workers > 1 and self.use_workers:
            done: set[str] = set()
            try:
                for chunk in parse_in_workers(misses, workers, self._cancel, cache is not None):
                    self._add_parsed(chunk, cache)
                    done.update(row.path for row in chunk)
                    stats.parsed += len(chunk)
                    progress.advance(len(chunk))
                return
            except Exception as err:  # a worker died, or processes cannot start here
                log.warning("parsing in worker processes failed (%s); parsing in-process", err)
                misses = [item for item in misses if item[0] not in done]
        parsed: list[SourceFile] = []
        rows: list[ParsedFile] = []
        for path, stamp in misses:
            if self._cancel.is_set():
                return
            if cache is None:  # nothing to store: the parse alone
                source = parse_file(Path(path), self._facts)
            else:
                source, row = parse_one(path, stamp, self._facts)
                rows.append(row)
            stats.parsed += 1
            progress.advance(1)
            if not self.is_open(path):
                parsed.append(source)
            if len(parsed) >= BATCH:
                self._flush([], parsed)
            if len(rows) >= BATCH:
                self._store(cache, rows)
                rows = []
        self._flush([], parsed)
        self._store(cache, rows)

    def _add_parsed(self, rows: list[ParsedFile], cache: ParseCache | None) -> None:
        """Files parsed elsewhere: stored, then indexed by their summaries (loaded on use)."""
        self._store(cache, rows)
        self._flush(
            [
                (row.path, json.loads(row.summary), self._row_loader(cache, row))
                for row in rows
                if not self.is_open(row.path)
            ],
            [],
        )

    def _row_loader(self, cache: ParseCache | None, row: ParsedFile) -> Loader:
        if cache is not None and row.digest is not None:
            return self._loader(cache, row.path)
        data = row.data
        return lambda: _load(data)

    @staticmethod
    def _store(cache: ParseCache | None, rows: list[ParsedFile]) -> None:
        if cache is not None:
            cache.store(row for row in rows if row.digest is not None)  # type: ignore[misc]

    def _flush(
        self, summaries: list[tuple[str, Summary, Loader]], parsed: list[SourceFile]
    ) -> None:
        self.project.put_summaries(summaries)
        self.project.put_many(parsed)
        summaries.clear()
        parsed.clear()

    def _loader(self, cache: ParseCache, path: str) -> Loader:
        """Loads a file's parse from the cache, or parses the file if the cache lost it."""

        def load() -> SourceFile | None:
            try:
                data = cache.data(path)
            except sqlite3.Error:
                data = None
            source = _load(data) if data else None
            if source is None and os.path.isfile(path):
                source = parse_file(Path(path), self._facts)
            return source

        return load

    def refresh_path(self, path: str) -> list[str]:
        """Re-read one path from disk after an outside change (created, changed, deleted, or a
        closed buffer); a directory counts for every file under it. Returns the paths whose
        parse in the model changed."""
        target = Path(path)
        if target.name == "README.md":
            target = target.parent / "properties.json"
            path = str(target)
        if target.is_dir():
            changed: list[str] = []
            present = {str(child) for child in iter_project(target)}
            prefix = path.rstrip("/") + "/"
            stale = [p for p in self.project.paths() if p.startswith(prefix) and p not in present]
            for child in sorted(present) + stale:
                changed += self.refresh_path(child)
            return changed
        if not target.is_file():
            prefix = path.rstrip("/") + "/"
            gone = [p for p in self.project.paths() if p == path or p.startswith(prefix)]
            gone = [p for p in gone if not self.is_open(p)]
            for p in gone:
                self.project.remove(p)
            return gone
        if self.is_open(path):
            return []
        if not (target.suffix == ".st" or target.name == "properties.json"):
            return []
        source = parse_file(target, self._facts)
        previous = self.project.file(path)
        if previous is not None and previous == source:
            return []
        self.project.put(source)
        return [path]

    def close(self) -> None:
        for cache in self._caches.values():
            cache.close()
        self._caches.clear()


def describe(stats: ScanStats) -> str:
    return json.dumps(
        {k: v for k, v in stats.__dict__.items() if k != "changed"}, separators=(",", ":")
    )
