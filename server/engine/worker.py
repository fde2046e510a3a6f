"""A dedicated inference thread per context: jobs run one at a time, off the event loop.

A job submitted with a key (the document URI) supersedes the job with the same key that is
waiting or running: that one's CancelToken is cancelled, which stops it within a token or in
the middle of prompt processing. pygls cannot stop a thread, so the worker does.

`job` is how work that may have been asked before is asked: a job with the same tag (what
it computes) waiting or running under the key is joined, and a generation that ran to its end
is remembered by its tag, so the same work asked again (greedy decoding: the same tag gives
the same text) is answered at once, without queueing behind a running job.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from server.engine.types import CancelToken, Generation

log = logging.getLogger(__name__)


@dataclass
class Job:
    fn: Callable[[CancelToken], Any]
    cancel: CancelToken
    key: str | None = None
    future: Future[Any] = field(default_factory=Future)
    # What the job computes, for a caller that would submit the same work (see `job`).
    tag: Any = None
    # Work nobody waits for yet (a suggestion computed ahead): any newer job cancels it.
    background: bool = False
    # Its generation may answer the same tag later (see `job`): kept among the last `reuse`.
    reuse: int = 0
    # Answered from a remembered generation: nothing ran.
    reused: bool = False


# The stop reasons of a generation that ran to its end (not cut by a cap, a cancel, an error).
_FINISHED = ("eos", "stop", "length")


class Remembered:
    """Generations that ran to their end, by tag (model, prompt, settings), the last `size`."""

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self._results: OrderedDict[Any, Generation] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, tag: Any) -> Generation | None:
        with self._lock:
            found = self._results.get(tag)
            if found is not None:
                self._results.move_to_end(tag)
            return found

    def keep(self, tag: Any, result: object) -> None:
        """Remember `result` if it is a generation that ran to its end."""
        if not isinstance(result, Generation) or result.stop_reason not in _FINISHED:
            return
        with self._lock:
            self._results[tag] = result
            self._results.move_to_end(tag)
            while len(self._results) > self.size:
                self._results.popitem(last=False)


class InferenceWorker:
    def __init__(self, name: str) -> None:
        self.name = name
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._lock = threading.Lock()
        self._by_key: dict[str, Job] = {}
        self._running: Job | None = None
        # Jobs queued or running, for `busy`.
        self._jobs: dict[int, Job] = {}
        self._idle = threading.Event()
        self._idle.set()
        # Generations of `reuse` jobs; a new model gets a new worker, so they never go stale.
        self.remembered = Remembered()
        # Monotonic time the last job finished, for "cancel -> free" measurements.
        self.last_finished = 0.0
        self._thread = threading.Thread(target=self._run, name=f"inference-{name}", daemon=True)
        self._thread.start()

    def submit(
        self,
        fn: Callable[[CancelToken], Any],
        key: str | None = None,
        budget_s: float | None = None,
        tag: Any = None,
        background: bool = False,
        reuse: int = 0,
    ) -> Job:
        """Queue `fn(cancel)`; a job with the same key is cancelled first, and so is every
        background job. A budget counts from now: the user waits from the request, not from
        when the worker got to it."""
        job = Job(fn, CancelToken(budget_s), key, tag=tag, background=background, reuse=reuse)
        with self._lock:
            for other in self._by_key.values():
                if other.background:
                    other.cancel.cancel()
            if self._running is not None and self._running.background:
                self._running.cancel.cancel()
            if key is not None:
                previous = self._by_key.get(key)
                if previous is not None:
                    previous.cancel.cancel()
                self._by_key[key] = job
            self._jobs[id(job)] = job
            self._idle.clear()
        self._queue.put(job)
        return job

    def job(
        self,
        fn: Callable[[CancelToken], Any],
        key: str,
        tag: Any,
        background: bool = False,
        reuse: int = 0,
    ) -> Job:
        """The job that computes `tag` for `key`: with `reuse` (the same tag gives the same
        result), a remembered generation of the tag, already done (`Job.reused`); else the
        job waiting or running under `key` for the same tag, joined (someone waits for it now
        unless `background`); else `fn` submitted."""
        if reuse:
            self.remembered.size = reuse
            found = self.remembered.get(tag)
            if found is not None:
                done = Job(fn, CancelToken(), key, tag=tag, reuse=reuse, reused=True)
                done.future.set_result(found)
                return done
        with self._lock:
            running = self._by_key.get(key)
            if running is not None and running.tag == tag and not running.cancel.cancelled:
                log.debug("%s joins the work already running for it on %s", key, self.name)
                running.background = running.background and background
                return running
        return self.submit(fn, key, tag=tag, background=background, reuse=reuse)

    def cancel(self, key: str) -> bool:
        with self._lock:
            job = self._by_key.get(key)
        if job is None:
            return False
        job.cancel.cancel()
        return True

    @property
    def busy(self) -> bool:
        """True while a job someone waits for is queued or running (work computed ahead,
        `background`, does not count: what gives way to completions need not wait for it)."""
        with self._lock:
            return any(not job.background and not job.cancel.cancelled
                       for job in self._jobs.values())

    def wait_idle(self, timeout: float | None = None) -> bool:
        return self._idle.wait(timeout)

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            with self._lock:
                self._running = job
            try:
                if job.cancel.cancelled:
                    # Superseded before it started: the awaiting side gets None.
                    job.future.set_result(None)
                elif job.future.set_running_or_notify_cancel():
                    try:
                        result = job.fn(job.cancel)
                        if job.reuse:
                            self.remembered.keep(job.tag, result)
                        job.future.set_result(result)
                    except BaseException as err:  # reported to whoever awaits the job
                        log.exception("inference job failed on %s", self.name)
                        job.future.set_exception(err)
            finally:
                with self._lock:
                    self._running = None
                    if job.key is not None and self._by_key.get(job.key) is job:
                        del self._by_key[job.key]
                    self._jobs.pop(id(job), None)
                    self.last_finished = time.monotonic()
                    if self._queue.empty():
                        self._idle.set()

    def close(self, timeout: float = 5.0) -> None:
        """Cancel everything and stop the thread."""
        with self._lock:
            for job in self._by_key.values():
                job.cancel.cancel()
            if self._running is not None:
                self._running.cancel.cancel()
        self._queue.put(None)
        self._thread.join(timeout)
