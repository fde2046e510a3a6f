"""Progress lines for the long stages (train, eval): done/total, rate, tokens/s, ETA, memory.

A line goes to stderr at most every `every_s` seconds and at the end, plain text so that it
reads the same in a terminal, a log file or CI:

    training: 40/200 steps, loss 1.234, 412 tok/s, 2.9 s/step, ETA 7m44s, RSS 3.9 GB
"""

from __future__ import annotations

import os
import resource
import sys
import time
from typing import TextIO


def rss_bytes() -> int:
    """This process's resident memory now (Linux /proc), else its peak."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def duration(seconds: float) -> str:
    seconds = max(int(seconds), 0)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class Progress:
    """Reports `update()` calls of a stage with `total` units (steps, examples)."""

    def __init__(self, label: str, total: int, unit: str, initial: int = 0,
                 enabled: bool = True, every_s: float = 10.0,
                 budget_s: float | None = None, stream: TextIO | None = None) -> None:
        self.label, self.total, self.unit = label, total, unit
        self.done = initial
        self.initial = initial
        self.enabled = enabled
        self.every_s = every_s
        self.budget_s = budget_s
        self.stream = stream or sys.stderr
        self.tokens = 0
        self.started = time.monotonic()
        self.last = 0.0

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def eta(self) -> float | None:
        """Seconds left: the remaining units at the rate so far, within the budget if any."""
        done = self.done - self.initial
        if done <= 0:
            return None
        left = (self.total - self.done) * self.elapsed / done
        if self.budget_s is not None:
            left = min(left, max(self.budget_s - self.elapsed, 0.0))
        return left

    def line(self, extra: str = "") -> str:
        elapsed = max(self.elapsed, 1e-9)
        done = self.done - self.initial
        parts = [f"{self.label}: {self.done}/{self.total} {self.unit}"]
        if extra:
            parts.append(extra)
        if self.tokens:
            parts.append(f"{self.tokens / elapsed:.0f} tok/s")
        if done:
            parts.append(f"{elapsed / done:.1f} s/{self.unit.rstrip('s')}")
        eta = self.eta()
        parts.append(f"ETA {duration(eta)}" if eta is not None else "ETA ?")
        parts.append(f"RSS {rss_bytes() / 2**30:.1f} GB")
        return ", ".join(parts)

    def update(self, n: int = 1, tokens: int = 0, extra: str = "", force: bool = False) -> None:
        self.done += n
        self.tokens += tokens
        now = time.monotonic()
        if self.enabled and (force or self.done >= self.total or now - self.last >= self.every_s):
            self.last = now
            print(self.line(extra), file=self.stream, flush=True)

    def finish(self, extra: str = "") -> None:
        if self.enabled:
            print(self.line(extra) + f" (done in {duration(self.elapsed)})", file=self.stream,
                  flush=True)
