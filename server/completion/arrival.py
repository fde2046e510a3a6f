"""Suggestions that arrive: what the coder is doing for each request, told to the editor, and
waiting for a model that is still loading instead of answering nothing.

`CompletionActivity` follows every inline completion from request to answer: waiting for the
model, thinking (the prompt being evaluated, with tokens done of total when the engine says),
writing (generating), then the last answer's figures (time, prompt tokens, reused and restored
tokens). It is part of `smalltalk/status` under "completion"; the editor plugins show it, so a
user can tell a slow suggestion from none. Plain state, no LSP: the model feature sends it.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from server.completion.types import CompletionRequest, Suggestion

State = Literal["idle", "waiting-for-model", "queued", "thinking", "writing"]
# Progress notifications while thinking: at most one per this many seconds.
NOTIFY_EVERY_S = 0.25
# How often a request waiting for a loading model looks again.
MODEL_POLL_S = 0.1
# How often background work that gives way to a completion looks again.
GIVE_WAY_POLL_S = 0.02


@dataclass
class _Request:
    uri: str
    ticket: int
    started: float
    state: State = "queued"
    done: int = 0
    total: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class CompletionActivity:
    """The completions in flight, per document (the newest request of a document wins)."""

    def __init__(self, notify: Callable[[], None]) -> None:
        self._notify = notify
        self._lock = threading.Lock()
        self._tickets = itertools.count(1)
        self._requests: dict[str, _Request] = {}
        self._last: dict[str, Any] | None = None
        self._sent = 0.0
        # Counters for tests and logs.
        self.answered = 0
        self.superseded = 0

    # --- a request's life ------------------------------------------------------------------

    def begin(self, uri: str) -> int:
        """A new request for `uri`; returns its ticket (an older one of the same document is
        superseded)."""
        with self._lock:
            ticket = next(self._tickets)
            self._requests[uri] = _Request(uri, ticket, time.monotonic())
        self._notify()
        return ticket

    def is_current(self, uri: str, ticket: int) -> bool:
        with self._lock:
            found = self._requests.get(uri)
            return found is not None and found.ticket == ticket

    def set_state(self, uri: str, ticket: int, state: State) -> None:
        with self._lock:
            found = self._requests.get(uri)
            if found is None or found.ticket != ticket or found.state == state:
                return
            found.state = state
        self._notify()

    def prompt_progress(self, uri: str, ticket: int) -> Callable[[int, int], None]:
        """The engine's prompt-progress callback for a request (called on the worker)."""

        def report(done: int, total: int) -> None:
            with self._lock:
                found = self._requests.get(uri)
                if found is None or found.ticket != ticket:
                    return
                found.done, found.total = done, total
                finished = done >= total
                found.state = "writing" if finished else "thinking"
                now = time.monotonic()
                due = finished or done == 0 or now - self._sent >= NOTIFY_EVERY_S
                if due:
                    self._sent = now
            if due:
                self._notify()

        return report

    def end(self, uri: str, ticket: int, suggestion: Suggestion | None, why: str = "") -> None:
        """The request was answered (`suggestion`, possibly empty) or ended early (`why`)."""
        with self._lock:
            found = self._requests.get(uri)
            if found is None or found.ticket != ticket:
                self.superseded += 1
                return
            del self._requests[uri]
            self.answered += 1
            last: dict[str, Any] = {
                # Counts the answers: a client sees which report is new.
                "n": self.answered,
                "uri": uri,
                "ms": round((time.monotonic() - found.started) * 1000),
                "empty": suggestion is None or not suggestion.text,
            }
            if why:
                last["why"] = why
            if suggestion is not None:
                last["source"] = suggestion.source
                generation = suggestion.generation
                if generation is not None:
                    last.update(
                        prompt_tokens=generation.prompt_tokens,
                        reused_tokens=generation.reused_tokens,
                        restored_tokens=generation.restored_tokens,
                        generated_tokens=generation.generated_tokens,
                        stop_reason=generation.stop_reason,
                    )
            self._last = last
        self._notify()

    def closed(self, uri: str) -> None:
        """The document closed: its request (if any) is over."""
        with self._lock:
            gone = self._requests.pop(uri, None) is not None
        if gone:
            self._notify()

    # --- what the editor is told -----------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """{"state", "uri", "done", "total", "seconds", "last"} of the newest request in
        flight ("idle" when none)."""
        with self._lock:
            newest = max(self._requests.values(), key=lambda r: r.ticket, default=None)
            out: dict[str, Any] = {"state": "idle"}
            if newest is not None:
                out = {
                    "state": newest.state,
                    "uri": newest.uri,
                    "seconds": round(time.monotonic() - newest.started, 1),
                }
                if newest.total:
                    out.update(done=newest.done, total=newest.total)
            if self._last is not None:
                out["last"] = dict(self._last)
            return out


async def wait_for_model(
    state_of: Callable[[], str], still_wanted: Callable[[], bool]
) -> bool:
    """Wait while `role`'s model is loading (or about to); True once it is ready, False when it
    failed or is off, or when the request is no longer wanted (superseded, document closed).
    $/cancelRequest cancels the wait itself."""
    while still_wanted():
        state = state_of()
        if state == "ready":
            return True
        if state == "failed":
            return False
        await asyncio.sleep(MODEL_POLL_S)
    return False


def give_way(busy: Callable[[], bool], stop: Callable[[], bool]) -> float:
    """Block (a background thread) while a completion is in flight: on 2 cores a second busy
    thread makes llama.cpp several times slower. Returns the seconds waited."""
    started = time.monotonic()
    while busy() and not stop():
        time.sleep(GIVE_WAY_POLL_S)
    return time.monotonic() - started


# --- ready before asked: the next suggestion after an accepted one ---------------------------


@dataclass(frozen=True)
class Shown:
    """A suggestion as it was answered: the document's text then, the cursor, the text."""

    text: str
    offset: int
    suggestion: str


def accepted_at(shown: Shown, text_now: str) -> int | None:
    """The cursor after the user accepted `shown` whole (the document is the text then with
    the suggestion inserted at the cursor); None for any other change."""
    s = shown.suggestion
    if not s or len(text_now) != len(shown.text) + len(s):
        return None
    at = shown.offset
    if text_now[at : at + len(s)] != s:
        return None
    if text_now[:at] != shown.text[:at] or text_now[at + len(s) :] != shown.text[at:]:
        return None
    return at + len(s)


def after_accepting(request: CompletionRequest, suggestion: str) -> CompletionRequest:
    """The request that follows accepting `suggestion` whole: the same document with it
    inserted, the cursor after it (what the editor asks next, computed ahead of it)."""
    at = request.offset
    text = request.text[:at] + suggestion + request.text[at:]
    return replace(request, text=text, offset=at + len(suggestion))
