"""A small thread-safe LRU of values read from files, keyed by path and file stamp."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

T = TypeVar("T")


class StampCache(Generic[T]):
    """Values derived from a file, reused while its mtime and size are unchanged."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._items: OrderedDict[tuple[str, int, int], T] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: str, load: Callable[[str], T | None]) -> T | None:
        """The cached value for `path`, else `load(path)` (None: unreadable, not cached)."""
        try:
            stat = Path(path).stat()
        except (OSError, ValueError):
            return None
        key = (path, stat.st_mtime_ns, stat.st_size)
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
                return found
        value = load(path)
        if value is None:
            return None
        with self._lock:
            self._items[key] = value
            if len(self._items) > self._limit:
                self._items.popitem(last=False)
        return value
