"""Free cores for generation: how much of the CPU the rest of the machine is using right now.

Generating tokens one at a time is memory-bound and its threads wait for each other at every
step, so a generation thread on a core that another process wants runs several times slower
(BENCHMARKS.md: one thread 4-17x faster than two on a busy 2-core machine), while on idle
cores all of them are faster. With `cpu_settings.generation_threads` unset, the coder's
context generates on as many physical cores as the others leave free, between half of
`threads` and all of them, checked before each token (the other roles keep half). Read
from /proc (Linux); elsewhere nothing is known and the floor is used.
Work at a lower priority (`nice`) counts too: llama.cpp's threads wait for each other at
every step, and a niced process on their core still made each token several times slower
(2 threads beside niced training on 2 cores: 0.7-3 s a token).
"""

from __future__ import annotations

import os
import threading
import time
from functools import lru_cache
from pathlib import Path

# Shorter windows than this say little (a prompt answered from the KV cache).
MIN_WINDOW_S = 0.25
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@lru_cache(maxsize=1)
def physical_cores() -> int:
    """Distinct (package, core) pairs of the online CPUs; os.cpu_count() when unknown."""
    cores: set[tuple[str, str]] = set()
    for topology in Path("/sys/devices/system/cpu").glob("cpu[0-9]*/topology"):
        try:
            cores.add(((topology / "physical_package_id").read_text().strip(),
                       (topology / "core_id").read_text().strip()))
        except OSError:
            continue
    return len(cores) or os.cpu_count() or 1


def _busy_ticks() -> tuple[int, int] | None:
    """(ticks all CPUs spent busy, ticks this process spent), or None."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        own = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return user + nice + system + irq + softirq + steal, int(own[11]) + int(own[12])


class CpuMeter:
    """Cores kept busy by other processes since the last reading."""

    def __init__(self) -> None:
        self._last = _busy_ticks()
        self._at = time.monotonic()
        self._others = 0.0

    def others_busy(self) -> float:
        """Cores other processes used since the previous call (the previous figure when that
        was under MIN_WINDOW_S ago)."""
        now = time.monotonic()
        if now - self._at < MIN_WINDOW_S:
            return self._others
        ticks = _busy_ticks()
        if ticks is None or self._last is None:
            return 0.0
        total, own = ticks[0] - self._last[0], ticks[1] - self._last[1]
        self._others = max(0.0, (total - own) / _TICKS / (now - self._at))
        self._last, self._at = ticks, now
        return self._others


# Contexts of this process generating or reading a prompt right now: two of them (coder and
# reasoner) are each other's competition, which the meter cannot see (the same process).
_active = 0
_active_lock = threading.Lock()


class Active:
    """`with Active():` around a context's work."""

    def __enter__(self) -> Active:
        global _active
        with _active_lock:
            _active += 1
        return self

    def __exit__(self, *_exc: object) -> None:
        global _active
        with _active_lock:
            _active -= 1


def generation_threads(floor: int, ceiling: int, others_busy: float) -> int:
    """Threads for generating: the physical cores others leave free, within [floor, ceiling];
    the floor while another context of this process is working too."""
    if _active > 1:
        return floor
    free = physical_cores() - round(others_busy)
    return max(floor, min(ceiling, free))
