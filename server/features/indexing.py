"""Retrieval indexing in the server: a background thread keeps the index in line with the
project model, and completions get the context builder through a context provider.

After the workspace scan the whole project is synced (only changed units are embedded); then
every changed file (`events.file_changed`: edits after a quiet period, saves, watched files) is
re-indexed. Embedding runs at nice 10 (the indexer thread and the `retrieval.index_workers`
threads it starts, which inherit its priority), in small batches, reporting `$/progress`, and
gives way between batches while a completion is in flight; completions never wait for it:
new units are searchable by selector before their vectors come, and until then they get the
context the project model alone gives.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from server.completion import arrival
from server.config import EmbeddingRuntime, Settings
from server.retrieval.context import RetrievalContextProvider
from server.retrieval.units import units_of_file
from smalltalk_grammar.model import MethodDef

if TYPE_CHECKING:
    # numpy, faiss and torch load when indexing starts, not with the server.
    from server.core import SmalltalkLanguageServer, WorkDone
    from server.retrieval.embedder import Embedder
    from server.retrieval.index import EmbedPlan, Progress, RetrievalIndex, UpdateStats

log = logging.getLogger(__name__)

# Edits are indexed after this many quiet seconds, so typing costs one embedding per pause.
QUIET_S = 2.0
# Units per batch: between two batches the indexer gives way to a completion, so a batch is
# what a completion may have to wait for on the other core (8 texts: about 0.1 s of int8
# embedding); the ONNX embedder runs one text per call, so smaller batches cost nothing.
BATCH = 8
NICE = 10
RECENT = 8
SAVE_INTERVAL_S = 300.0
PROGRESS_TITLE = "Indexing for retrieval"

class IndexingService:
    def __init__(self, ls: SmalltalkLanguageServer) -> None:
        self.ls = ls
        self.index: RetrievalIndex | None = None
        # Set after each pass that leaves nothing pending (tests and benchmarks wait on it).
        self.idle = threading.Event()
        self.last_stats: UpdateStats | None = None
        self._recent: deque[MethodDef] = deque(maxlen=RECENT)
        self._embedder: Embedder | None = None
        self._embedder_name: tuple[str, EmbeddingRuntime, int] | None = None
        self._failed_names: set[tuple[str, EmbeddingRuntime, int]] = set()
        self._cv = threading.Condition()
        self._full = False
        self._reopen = True
        self._pending: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_save = 0.0

    # --- hooks (event loop) ----------------------------------------------------------------

    def scan_done(self) -> None:
        with self._cv:
            self._full = True
            self.idle.clear()
            self._cv.notify()
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="retrieval-indexer",
                                            daemon=True)
            self._thread.start()

    def file_changed(self, path: str) -> None:
        with self._cv:
            self._pending[path] = time.monotonic()
            self.idle.clear()
            self._cv.notify()

    def settings_changed(self, settings: Settings) -> None:
        if _embedding_of(settings) != self._embedder_name or (
            self.index is not None and not settings.retrieval.enabled
        ) or (self.index is None and settings.retrieval.enabled):
            with self._cv:
                self._reopen = self._full = True
                self._cv.notify()

    def shutdown(self) -> None:
        self._stop.set()
        with self._cv:
            self._cv.notify()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self.index is not None:
            self.index.close()

    def recent(self) -> list[MethodDef]:
        return list(self._recent)

    def current_index(self) -> RetrievalIndex | None:
        return self.index if self.ls.settings.retrieval.enabled else None

    # --- the worker thread -----------------------------------------------------------------

    def _run(self) -> None:
        _lower_priority()
        while not self._stop.is_set():
            with self._cv:
                while not self._stop.is_set() and not self._work_ready():
                    if not self._pending:
                        self.idle.set()
                    self._cv.wait(timeout=self._wait_time())
                if self._stop.is_set():
                    break
                full, reopen = self._full, self._reopen
                now = time.monotonic()
                paths = [p for p, t in self._pending.items() if now - t >= QUIET_S or full]
                for path in paths:
                    del self._pending[path]
                self._full = self._reopen = False
            try:
                if reopen:
                    self._open()
                if self.index is None:
                    continue
                if full:
                    self._pass(self._sync_all, full=True)
                elif paths:
                    self._pass(functools.partial(self._sync_paths, paths), full=False)
            except Exception:
                log.exception("retrieval indexing failed")

    def _work_ready(self) -> bool:
        if self._full or self._reopen:
            return True
        now = time.monotonic()
        return any(now - t >= QUIET_S for t in self._pending.values())

    def _wait_time(self) -> float | None:
        if not self._pending:
            return None
        oldest = min(self._pending.values())
        return max(0.05, QUIET_S - (time.monotonic() - oldest))

    def _open(self) -> None:
        settings = self.ls.settings
        if self.index is not None:
            self.index.close()
            self.index = None
        if not settings.retrieval.enabled:
            return
        from server.retrieval.embedder import EmbedderError, load_embedder
        from server.retrieval.index import RetrievalIndex

        root = self.ls.roots[0] if self.ls.roots else None
        name = _embedding_of(settings)
        if name != self._embedder_name:
            self._embedder, self._embedder_name = None, name
            try:
                # One torch thread (the ONNX runtime takes one core per call): a query is no
                # slower on one; the indexer runs `index_workers` calls at once while no
                # completion is in flight (BENCHMARKS.md).
                self._embedder = load_embedder(name[0], threads=1, runtime=name[1],
                                               max_tokens=name[2])
            except EmbedderError as err:
                if name not in self._failed_names:
                    self._failed_names.add(name)
                    log.warning("retrieval: %s; context goes on without similar-code "
                                "search (class, implementors and selector matches still work)",
                                err)
        # The model loads in a fraction of a second once its ONNX file is cached (made once,
        # in seconds); the first pass then makes every unit searchable by selector before it
        # embeds any (structure context needs no index at all).
        self.index = RetrievalIndex(root, self._embedder)

    def _pass(self, work: Callable[[Progress], UpdateStats], full: bool) -> None:
        """Run one update; `$/progress` begins only once there is something to embed."""
        with contextlib.ExitStack() as stack:
            reporter: list[WorkDone] = []

            def progress(done: int, total: int) -> None:
                # Between batches: embedding gives way while a completion is in flight.
                waited = arrival.give_way(self.ls.models.completion_in_flight, self._stop.is_set)
                if waited > 0.05:
                    log.debug("indexing waited %.2fs for a completion", waited)
                if total == 0:
                    return
                if not reporter:
                    reporter.append(stack.enter_context(self.ls.progress(PROGRESS_TITLE)))
                reporter[0].report(f"{done}/{total} units", int(done * 100 / total))

            stats = work(progress)
        self.last_stats = stats
        # The database already holds every change; the FAISS file only spares the next start
        # a rebuild from the stored vectors, and at 50,000 units it takes most of a second to
        # write: after a full pass, then at most every SAVE_INTERVAL_S, and on shutdown.
        now = time.monotonic()
        if self.index is not None and (full or now - self._last_save >= SAVE_INTERVAL_S):
            self.index.save()
            self._last_save = now
        if stats.embedded or stats.removed:
            log.info("retrieval index: %d units, %d embedded, %d reused, %d removed in %.2fs",
                     stats.units, stats.embedded, stats.reused, stats.removed, stats.seconds)

    def _plan(self) -> EmbedPlan:
        from server.retrieval.index import EmbedPlan

        retrieval = self.ls.settings.retrieval
        return EmbedPlan(workers=retrieval.index_workers, accessors=retrieval.accessors)

    def _sync_all(self, progress: Progress) -> UpdateStats:
        assert self.index is not None
        return self.index.sync_project(self.ls.project, progress=progress,
                                       should_stop=self._stop.is_set, batch_size=BATCH,
                                       plan=self._plan())

    def _sync_paths(self, paths: Sequence[str], progress: Progress) -> UpdateStats:
        index = self.index
        assert index is not None
        project = self.ls.project
        sources = [s for p in paths if (s := project.file(p)) is not None]
        for source in sources:
            for unit in units_of_file(source, index.root):
                old = index.record(unit.key)
                if unit.kind == "method" and (old is None or old.hash != unit.hash):
                    self._remember_edit(source.methods, unit.class_name, unit.side,
                                        unit.selector)
        stats = index.update_sources(sources, progress=progress,
                                     should_stop=self._stop.is_set, batch_size=BATCH,
                                     plan=self._plan())
        gone = [p for p in paths if project.file(p) is None]
        if gone:
            removed = index.remove_paths(gone)
            stats.removed += removed.removed
        return stats

    def _remember_edit(self, methods: list[MethodDef], cls: str, side: str, sel: str) -> None:
        for method in methods:
            if (method.class_name, method.side, method.selector) == (cls, side, sel):
                self._recent = deque(
                    [method, *(m for m in self._recent
                               if (m.class_name, m.side, m.selector) != (cls, side, sel))],
                    maxlen=RECENT,
                )
                return


def _embedding_of(settings: Settings) -> tuple[str, EmbeddingRuntime, int]:
    """What decides the vectors: model, runtime and word pieces per text."""
    retrieval = settings.retrieval
    return settings.models.embeddings, retrieval.embedding_runtime, retrieval.max_tokens


def _lower_priority() -> None:
    """Lower this thread's scheduling priority (Linux keeps a nice value per thread)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)
    except (AttributeError, OSError) as err:
        log.debug("cannot lower the indexing thread's priority: %s", err)


def setup(ls: SmalltalkLanguageServer) -> None:
    service = IndexingService(ls)
    ls.retrieval = service
    ls.events.scan_done.subscribe(service.scan_done)
    ls.events.file_changed.subscribe(service.file_changed)
    ls.events.settings_changed.subscribe(service.settings_changed)
    ls.events.shutdown.subscribe(service.shutdown)
    ls.context_providers.append(RetrievalContextProvider(
        project=lambda: ls.project,
        index=service.current_index,
        budget_tokens=lambda: ls.settings.retrieval.context_tokens,
        recent=service.recent,
        sources=lambda: ls.settings.completion.context_sources,
    ))

