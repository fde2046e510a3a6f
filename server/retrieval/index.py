"""The retrieval index of one workspace: units, their vectors (FAISS) and metadata (SQLite).

Layout under `<workspace>/.smalltalk-lsp/index/`:
  units.sqlite          units, content hashes and vectors (the source of truth, transactional)
  vectors-<gen>.faiss   the FAISS index as of store generation <gen> (a cache of the vectors)
  manifest.json         embedding model, dimension, count, index kind, generation, file name

Every file is replaced atomically (temporary file, then rename), and the manifest last, so a
kill at any point leaves an index that opens. What cannot be trusted is rebuilt: a damaged
database re-embeds everything, a damaged or stale FAISS file is rebuilt from the stored
vectors, and an index made with another embedding model is discarded, never mixed.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import OrderedDict, defaultdict, deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel

from server.project_model import ProjectModel
from server.retrieval.embedder import Embedder
from server.retrieval.lexical import LexicalIndex
from server.retrieval.store import MetadataStore, StoreCorrupt, UnitRecord, read_vectors
from server.retrieval.units import Unit, relative_path, units_of_file, units_of_files
from server.retrieval.vectors import IVF_THRESHOLD, VectorIndex, VectorIndexError, write_atomic
from smalltalk_grammar.model import SourceFile

log = logging.getLogger(__name__)

INDEX_DIR = Path(".smalltalk-lsp") / "index"
DB_FILE = "units.sqlite"
MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = 1

Progress = Callable[[int, int], None]


class UpdateStats(BaseModel):
    units: int = 0
    embedded: int = 0
    reused: int = 0
    removed: int = 0
    seconds: float = 0.0
    # True when `should_stop` ended the update early; the rest is picked up next time.
    stopped: bool = False


class EmbedPlan(BaseModel):
    """How an update embeds: batches at once (when the embedder allows), and trivial
    accessors last or never (`retrieval.index_workers`, `retrieval.accessors`)."""

    workers: int = 1
    accessors: Literal["last", "skip"] = "last"


class RetrievalIndex:
    """Thread-safe: one thread updates (embedding outside the lock, in small batches) while
    others search; a search waits at most for one batch to be applied, never for embedding."""

    def __init__(
        self,
        root: str | Path | None,
        embedder: Embedder | None,
        *,
        directory: str | Path | None = None,
        ivf_threshold: int = IVF_THRESHOLD,
    ) -> None:
        self.root = str(root) if root is not None else None
        self.embedder = embedder
        if directory is not None:
            self.directory: Path | None = Path(directory)
        else:
            self.directory = Path(root) / INDEX_DIR if root is not None else None
        self.ivf_threshold = ivf_threshold
        self.lexical = LexicalIndex()
        self.store: MetadataStore | None = None
        self.vectors: VectorIndex | None = None
        # What opening had to repair, e.g. ["store rebuilt"], for logs, tests and the CLI.
        self.repairs: list[str] = []
        self._lock = threading.RLock()
        self._update_lock = threading.Lock()
        self._save_lock = threading.Lock()
        self._cache_lock = threading.Lock()
        self._records: dict[str, UnitRecord] = {}
        self._by_id: dict[int, UnitRecord] = {}
        self._ids_by_hash: dict[str, set[int]] = defaultdict(set)
        self._next_id = 1
        self._dirty = False
        # Keys of units known by structure and selector but not yet embedded (or never, for
        # skipped accessors): searchable lexically from the start of an update.
        self._unembedded: set[str] = set()
        # Query texts (or method slots, see query_vector_soon) -> (text, vector).
        self._query_cache: OrderedDict[str, tuple[str, np.ndarray]] = OrderedDict()
        self._query_pending: set[str] = set()
        self._query_executor: ThreadPoolExecutor | None = None
        if embedder is not None:
            self._open_store(embedder)

    # --- opening ---------------------------------------------------------------------------

    def _open_store(self, embedder: Embedder) -> None:
        db_path = ":memory:"
        if self.directory is not None:
            try:
                # Never recreate a deleted workspace folder just to hold the index.
                if self.root is not None and not Path(self.root).is_dir():
                    raise FileNotFoundError(f"workspace folder {self.root} does not exist")
                self.directory.mkdir(parents=True, exist_ok=True)
                db_path = str(self.directory / DB_FILE)
            except OSError as err:
                log.warning("retrieval index kept in memory only: cannot create %s: %s",
                            self.directory, err)
                self.directory = None
        try:
            store = MetadataStore(db_path)
        except StoreCorrupt as err:
            log.warning("retrieval index is damaged (%s): rebuilding it", err)
            self.repairs.append("store rebuilt")
            self._delete_files(all_files=True)
            store = MetadataStore(db_path)
        wanted = {"model": embedder.name, "dimension": str(embedder.dimension)}
        found = {"model": store.get_meta("model"), "dimension": store.get_meta("dimension")}
        if found != wanted:
            if found["model"] is not None:
                log.warning(
                    "retrieval index was built with embedding model %s (%s dimensions), "
                    "configured is %s (%s dimensions): rebuilding it",
                    found["model"], found["dimension"], wanted["model"], wanted["dimension"],
                )
                self.repairs.append("other model")
            store.reset(wanted)
            self._delete_files(all_files=False)
        self.store = store
        for record in store.records():
            self._remember(record)
        self._next_id = store.next_id()
        self.vectors = self._load_vectors(store, embedder.dimension)

    def _load_vectors(self, store: MetadataStore, dimension: int) -> VectorIndex:
        problem = None
        manifest = self.read_manifest()
        if manifest is None:
            problem = "no manifest"
        elif (manifest.get("model"), manifest.get("dimension")) != (
            store.get_meta("model"), dimension,
        ):
            problem = "manifest of another model"
        elif manifest.get("generation") != store.generation:
            problem = "older than the stored units"
        else:
            try:
                assert self.directory is not None
                index = VectorIndex.load(
                    str(self.directory / str(manifest["file"])), dimension, self.ivf_threshold
                )
                if index.ntotal == len(self._records):
                    return index
                problem = f"holds {index.ntotal} vectors for {len(self._records)} units"
            except VectorIndexError as err:
                problem = str(err)
        index = VectorIndex(dimension, self.ivf_threshold)
        if self._records:
            log.warning("retrieval vector index %s: rebuilding it from the stored vectors "
                        "(nothing is embedded again)", problem)
            self.repairs.append("vectors rebuilt")
            ids, vectors = store.vectors(dimension)
            index.rebuild(ids, vectors)
            self._dirty = True
        return index

    def read_manifest(self) -> dict[str, Any] | None:
        if self.directory is None:
            return None
        try:
            data = json.loads((self.directory / MANIFEST_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) and data.get("format") == MANIFEST_FORMAT else None

    def _delete_files(self, all_files: bool) -> None:
        if self.directory is None or not self.directory.is_dir():
            return
        patterns = ["vectors-*.faiss", "*.tmp", MANIFEST_FILE]
        if all_files:
            patterns += [DB_FILE, DB_FILE + "-wal", DB_FILE + "-shm", DB_FILE + "-journal"]
        for pattern in patterns:
            for path in self.directory.glob(pattern):
                try:
                    path.unlink()
                except OSError as err:
                    log.warning("cannot remove %s: %s", path, err)

    # --- reading ---------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._records)

    def records(self) -> list[UnitRecord]:
        with self._lock:
            return list(self._records.values())

    def record(self, key: str) -> UnitRecord | None:
        return self._records.get(key)

    def relative(self, path: str | None) -> str:
        return relative_path(path, self.root)

    def absolute(self, path: str) -> str:
        """The project-model path of a stored (relative) path."""
        if self.root is None or os.path.isabs(path):
            return path
        return os.path.join(self.root, path)

    def query_vector(self, text: str) -> np.ndarray | None:
        """The embedding of a query text (blocks while the model runs; cached)."""
        if self.embedder is None:
            return None
        with self._cache_lock:
            cached = self._query_cache.get(text)
            if cached is not None:
                self._query_cache.move_to_end(text)
                return cached[1]
        vector = self.embedder.embed([text])
        self._remember_query(text, text, vector)
        return vector

    def query_vector_soon(self, slot: str, text: str) -> np.ndarray | None:
        """A query vector for code being written, without waiting for the model.

        Answers the latest vector computed for `slot` (the method being written; an earlier
        version of its text is close enough), or None the first time; and, when `text`
        differs from what that vector was made of, embeds it on a background thread for the
        next call. At most one embedding per slot is in flight."""
        if self.embedder is None:
            return None
        with self._cache_lock:
            cached = self._query_cache.get(slot)
            if cached is not None:
                self._query_cache.move_to_end(slot)
            stale = cached is None or cached[0] != text
            if stale and slot not in self._query_pending:
                self._query_pending.add(slot)
                if self._query_executor is None:
                    self._query_executor = ThreadPoolExecutor(
                        max_workers=1, thread_name_prefix="retrieval-query"
                    )
                self._query_executor.submit(self._embed_query, slot, text)
        return None if cached is None else cached[1]

    def wait_for_queries(self, timeout: float = 30.0) -> None:
        """Until no background query embedding is in flight (tests and benchmarks)."""
        deadline = time.monotonic() + timeout
        while self._query_pending and time.monotonic() < deadline:
            time.sleep(0.005)

    def _embed_query(self, slot: str, text: str) -> None:
        try:
            assert self.embedder is not None
            self._remember_query(slot, text, self.embedder.embed([text]))
        except Exception:
            log.exception("embedding a retrieval query failed")
        finally:
            with self._cache_lock:
                self._query_pending.discard(slot)

    def _remember_query(self, slot: str, text: str, vector: np.ndarray) -> None:
        with self._cache_lock:
            self._query_cache[slot] = (text, vector)
            self._query_cache.move_to_end(slot)
            while len(self._query_cache) > 64:
                self._query_cache.popitem(last=False)

    def stored_vector(self, key: str) -> np.ndarray | None:
        """The vector already stored for a unit: a query that costs no embedding."""
        with self._lock:
            record = self._records.get(key)
            if record is None or self.store is None:
                return None
            vector = self.store.vector_of(record.id)
        return None if vector is None else vector.reshape(1, -1)

    def search_similar(self, text: str, k: int) -> list[tuple[UnitRecord, float]]:
        """Units nearest to `text` by embedding, best first."""
        vector = self.query_vector(text)
        if vector is None:
            return []
        return self.search_vector(vector, k)

    def search_vector(self, vector: np.ndarray, k: int) -> list[tuple[UnitRecord, float]]:
        with self._lock:
            if self.vectors is None:
                return []
            hits = self.vectors.search(vector, k)
            return [(self._by_id[i], score) for i, score in hits if i in self._by_id]

    def search_lexical(self, selectors: list[str], k: int) -> list[tuple[UnitRecord, float]]:
        """Method units whose selectors share words with `selectors`, best first."""
        with self._lock:
            hits = self.lexical.search(selectors, k)
            return [(self._records[key], score) for key, score in hits if key in self._records]

    # --- updating --------------------------------------------------------------------------

    def sync_project(
        self, project: ProjectModel, progress: Progress | None = None,
        should_stop: Callable[[], bool] | None = None, batch_size: int = 32,
        plan: EmbedPlan | None = None,
    ) -> UpdateStats:
        """Bring the whole index in line with the project; units of vanished files go."""
        units = units_of_files(project.files(), self.root)
        return self.update(units, None, progress, should_stop, batch_size, plan)

    def update_sources(
        self, sources: Iterable[SourceFile], progress: Progress | None = None,
        should_stop: Callable[[], bool] | None = None, batch_size: int = 32,
        plan: EmbedPlan | None = None,
    ) -> UpdateStats:
        """Re-index the given files only (a save, a watched-file change)."""
        sources = list(sources)
        units = [u for s in sources for u in units_of_file(s, self.root)]
        scope = {self.relative(s.path) for s in sources}
        return self.update(units, scope, progress, should_stop, batch_size, plan)

    def remove_paths(self, paths: Iterable[str]) -> UpdateStats:
        return self.update([], {self.relative(p) for p in paths})

    def update(
        self,
        units: Sequence[Unit],
        scope: set[str] | None,
        progress: Progress | None = None,
        should_stop: Callable[[], bool] | None = None,
        batch_size: int = 32,
        plan: EmbedPlan | None = None,
    ) -> UpdateStats:
        """Make the units of `scope` (relative paths; None: everything) equal to `units`.
        Only units whose content hash is new are embedded. Units new to the index are
        searchable lexically at once; their vectors follow batch by batch."""
        plan = plan or EmbedPlan()
        started = time.perf_counter()
        with self._update_lock:
            stats = UpdateStats(units=len(units))
            with self._lock:
                new = {u.key: u for u in units}
                removed = [
                    key for key, rec in self._records.items()
                    if key not in new and (scope is None or rec.path in scope)
                ]
                reuse: list[tuple[Unit, np.ndarray | None]] = []
                to_embed: list[Unit] = []
                for unit in new.values():
                    old = self._records.get(unit.key)
                    if old is not None and old.hash == unit.hash and \
                            unit.key not in self._unembedded:
                        stats.reused += 1
                    elif self.store is None:
                        reuse.append((unit, None))  # lexical only: nothing to embed
                    elif (vector := self._vector_of_hash(unit.hash)) is not None:
                        reuse.append((unit, vector))
                        stats.reused += 1
                    else:
                        to_embed.append(unit)
                self._apply(reuse, removed)
                stats.removed = len(removed)
                # Known by selector before any embedding; an edited unit keeps its old
                # vector until the new one replaces it.
                self._apply([(u, None) for u in to_embed if u.key not in self._records], [])
                if plan.accessors == "skip":
                    to_embed = [u for u in to_embed if not u.accessor]
            # Batches of texts of about one length: a batch is padded to its longest text, so
            # mixing a 20-token accessor with a 256-token method wastes most of the work.
            # Trivial accessors come after everything else.
            to_embed.sort(key=lambda u: (u.accessor, len(u.text), u.key))
            self._embed_all(to_embed, stats, progress, should_stop, batch_size, plan.workers)
            self._rebuild_vectors_if_needed()
        stats.seconds = time.perf_counter() - started
        return stats

    def _embed_all(
        self, to_embed: list[Unit], stats: UpdateStats, progress: Progress | None,
        should_stop: Callable[[], bool] | None, batch_size: int, workers: int,
    ) -> None:
        """Embed in batches, up to `workers` at once when the embedder allows it; each batch
        is applied and reported in order, and `progress` (which may block, to give way to a
        completion) holds back the next batch until it returns."""
        total = len(to_embed)
        if progress is not None:
            progress(0, total)
        embedder = self.embedder
        if not to_embed or embedder is None:
            return
        size = max(1, batch_size)
        batches = [to_embed[i:i + size] for i in range(0, total, size)]
        workers = workers if getattr(embedder, "concurrent", False) else 1
        with ThreadPoolExecutor(max_workers=max(1, workers),
                                thread_name_prefix="retrieval-embed") as pool:
            in_flight: deque[tuple[list[Unit], Future[np.ndarray]]] = deque()
            queued = iter(batches)
            while True:
                while len(in_flight) < workers and not stats.stopped:
                    if should_stop is not None and should_stop():
                        stats.stopped = True
                        break
                    batch = next(queued, None)
                    if batch is None:
                        break
                    in_flight.append((batch, pool.submit(
                        embedder.embed, [u.text for u in batch])))  # outside the lock
                if not in_flight:
                    break
                batch, future = in_flight.popleft()
                vectors = future.result()
                with self._lock:
                    self._apply(list(zip(batch, vectors, strict=True)), [])
                stats.embedded += len(batch)
                if progress is not None:
                    progress(stats.embedded, total)
                time.sleep(0)  # let searches and the event loop in between batches

    def _rebuild_vectors_if_needed(self) -> None:
        """Switch flat <-> IVF (or retrain IVF) when the size calls for it. Training takes
        seconds at 50,000 vectors, so it runs outside the lock on a separate read of the
        stored vectors; searches go on with the old index until the swap. Only the updating
        thread (holding _update_lock) writes, so nothing changes in between."""
        store, embedder = self.store, self.embedder
        with self._lock:
            if self.vectors is None or store is None or embedder is None or \
                    not self.vectors.needs_rebuild():
                return
            if store.path == ":memory:":  # one connection: read it under the lock
                ids, vectors = store.vectors(embedder.dimension)
        if store.path != ":memory:":
            ids, vectors = read_vectors(store.path, embedder.dimension)
        fresh = VectorIndex(embedder.dimension, self.ivf_threshold)
        fresh.rebuild(ids, vectors)
        with self._lock:
            self.vectors = fresh
            self._dirty = True

    def _vector_of_hash(self, content_hash: str) -> np.ndarray | None:
        for unit_id in self._ids_by_hash.get(content_hash, ()):
            assert self.store is not None
            vector = self.store.vector_of(unit_id)
            if vector is not None:
                return vector
        return None

    def _apply(self, adds: list[tuple[Unit, np.ndarray | None]], remove_keys: list[str]) -> None:
        """One transaction: drop `remove_keys` and any older version of the added units."""
        if not adds and not remove_keys:
            return
        gone = [self._records[k] for k in remove_keys if k in self._records]
        gone += [self._records[u.key] for u, _ in adds if u.key in self._records]
        added = []
        for unit, vector in adds:
            added.append((self._next_id, unit, vector))
            self._next_id += 1
        remove_ids = [rec.id for rec in gone]
        if self.store is not None and self.vectors is not None:
            rows = [(i, u, v) for i, u, v in added if v is not None]
            self.store.apply(rows, remove_ids)
            self.vectors.remove(remove_ids)
            if rows:
                self.vectors.add([r[0] for r in rows], np.stack([r[2] for r in rows]))
            self._dirty = True
        for rec in gone:
            self._forget(rec)
        for unit_id, unit, vector in added:
            if vector is None and self.store is not None:
                self._unembedded.add(unit.key)
            else:
                self._unembedded.discard(unit.key)
            self._remember(UnitRecord(
                id=unit_id, key=unit.key, kind=unit.kind, path=unit.path,
                class_name=unit.class_name, side=unit.side, selector=unit.selector,
                category=unit.category, hash=unit.hash,
            ))

    def _remember(self, record: UnitRecord) -> None:
        self._records[record.key] = record
        self._by_id[record.id] = record
        self._ids_by_hash[record.hash].add(record.id)
        if record.kind == "method":
            self.lexical.add(record.key, record.selector)

    def _forget(self, record: UnitRecord) -> None:
        self._records.pop(record.key, None)
        self._unembedded.discard(record.key)
        self._by_id.pop(record.id, None)
        ids = self._ids_by_hash.get(record.hash)
        if ids is not None:
            ids.discard(record.id)
            if not ids:
                del self._ids_by_hash[record.hash]
        self.lexical.remove(record.key)

    # --- persistence -----------------------------------------------------------------------

    def save(self) -> bool:
        """Write the FAISS file and the manifest if anything changed; False if not written.
        The database is already durable; this only spares the next start a rebuild."""
        if self.store is None or self.vectors is None or self.directory is None:
            return False
        with self._save_lock:
            with self._lock:
                if not self._dirty:
                    return False
                data = self.vectors.serialize()
                manifest = {
                    "format": MANIFEST_FORMAT,
                    "model": self.store.get_meta("model"),
                    "dimension": self.vectors.dimension,
                    "count": self.vectors.ntotal,
                    "kind": self.vectors.kind,
                    "generation": self.store.generation,
                    "file": f"vectors-{self.store.generation}.faiss",
                }
                self._dirty = False
            try:
                write_atomic(str(self.directory / str(manifest["file"])), data)
                write_atomic(
                    str(self.directory / MANIFEST_FILE),
                    json.dumps(manifest, indent=1).encode("utf-8"),
                )
            except OSError as err:
                log.warning("cannot write the retrieval index to %s: %s", self.directory, err)
                with self._lock:
                    self._dirty = True
                return False
            for old in self.directory.glob("vectors-*.faiss"):
                if old.name != manifest["file"]:
                    old.unlink(missing_ok=True)
            return True

    def disk_bytes(self) -> int:
        if self.directory is None or not self.directory.is_dir():
            return 0
        return sum(p.stat().st_size for p in self.directory.iterdir() if p.is_file())

    def memory_bytes(self) -> int:
        """Vectors in FAISS plus a rough figure for the Python-side records."""
        with self._lock:
            vectors = self.vectors.memory_bytes() if self.vectors is not None else 0
            return vectors + 600 * len(self._records)

    def close(self) -> None:
        if self._query_executor is not None:
            self._query_executor.shutdown(wait=True, cancel_futures=True)
        self.save()
        with self._lock:
            if self.store is not None:
                self.store.close()
                self.store = None
