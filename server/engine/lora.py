"""LoRA adapters in a live llama.cpp model: load once, set per context, free when gone.

`llama_adapter_lora_init` loads an adapter's tensors next to the model's weights (tens of ms);
`llama_set_adapters_lora` sets which loaded adapters a context applies, with scales (a no-op when
the set is unchanged); `llama_adapter_lora_free` frees one. Switching the set does not touch the
context's KV cache, so a prefix computed under one set must never be reused under another:
`adapter_key` names a set (names, scales and file versions) for every cache key.

Freeing an adapter that a context still applies would leave the context with a dangling
pointer, so `ModelAdapters.unload` first asks every attached context to drop it.
"""

from __future__ import annotations

import ctypes
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from server.engine.lora_validation import AdapterError, AdapterInfo, validate_adapter

log = logging.getLogger(__name__)


def _lib() -> Any:
    # The engine initialises llama.cpp once (backend, log routing); use it when present.
    try:
        from server.engine.llama_model import llama

        return llama()
    except ImportError:  # pragma: no cover - the engine is part of this package
        import llama_cpp

        return llama_cpp


class AdapterLoadError(RuntimeError):
    """llama.cpp refused an adapter that passed validation (see the llama.cpp log)."""


def file_version(path: str | Path) -> str:
    """A short fingerprint of a file's version: a changed file gets a new cache key."""
    stat = Path(path).stat()
    return f"{stat.st_size:x}-{stat.st_mtime_ns:x}"


@dataclass(frozen=True)
class ActiveAdapter:
    """One adapter of a request's active set."""

    name: str
    scale: float
    version: str
    ptr: Any = None  # the llama_adapter_lora pointer, compared by identity

    def describe(self) -> str:
        return self.name if self.scale == 1.0 else f"{self.name}×{self.scale:g}"


def adapter_key(active: Sequence[ActiveAdapter]) -> str:
    """A stable name for an active set; "" is the bare base model. Adapters at scale 0 have no
    effect and are left out, so they do not split the cache."""
    parts = sorted(f"{a.name}@{a.scale:.6g}#{a.version}" for a in active if a.scale != 0.0)
    return "+".join(parts)


def describe(active: Sequence[ActiveAdapter]) -> str:
    """The active set for people: "house-style, idioms×0.5"; "" for none."""
    return ", ".join(a.describe() for a in sorted(active, key=lambda a: a.name) if a.scale != 0.0)


# --- llama.cpp calls ------------------------------------------------------------------------


def load_lora(model_ptr: Any, path: str | Path) -> Any:
    """Load an adapter file into a llama_model; AdapterLoadError if llama.cpp refuses it."""
    lib = _lib()
    ptr = lib.llama_adapter_lora_init(model_ptr, str(path).encode("utf-8"))
    if not ptr:
        raise AdapterLoadError(f"{path}: llama.cpp could not load this adapter (see the log)")
    return ptr


def free_lora(ptr: Any) -> None:
    _lib().llama_adapter_lora_free(ptr)


def set_context_adapters(ctx: Any, active: Sequence[ActiveAdapter]) -> None:
    """Make `active` the context's adapter set (an empty set is the bare base model)."""
    lib = _lib()
    chosen = sorted((a for a in active if a.scale != 0.0), key=lambda a: a.name)
    n = len(chosen)
    if n == 0:
        rc = lib.llama_set_adapters_lora(ctx, None, 0, None)
    else:
        ptrs = (lib.llama_adapter_lora_p_ctypes * n)(*(a.ptr for a in chosen))
        scales = (ctypes.c_float * n)(*(a.scale for a in chosen))
        rc = lib.llama_set_adapters_lora(ctx, ptrs, n, scales)
    if rc != 0:
        raise AdapterLoadError(f"llama_set_adapters_lora returned {rc}")


# --- adapters of one model ------------------------------------------------------------------


@dataclass
class LoadedLora:
    name: str
    path: str
    version: str
    ptr: Any
    info: AdapterInfo
    load_ms: float


# Called with an adapter pointer about to be freed; must return once no context applies it.
Detach = Callable[[Any], None]


class ModelAdapters:
    """The adapters loaded into one llama_model (shared by every context on it).

    Two locks: `_lock` guards the table for short lookups (a context resolving its set takes
    it while holding its own lock), `_change` serialises loads and unloads, which call the
    contexts' detach callbacks (taking their locks) with `_lock` released: no lock cycle."""

    def __init__(self, model_ptr: Any, model_path: str | Path) -> None:
        self.model_ptr = model_ptr
        self.model_path = Path(model_path)
        self._loaded: dict[str, LoadedLora] = {}
        self._lock = threading.Lock()
        self._change = threading.Lock()
        self._detachers: list[Detach] = []
        self._closed = False

    def attach(self, detach: Detach) -> None:
        """Register a context's way of dropping an adapter before it is freed."""
        with self._lock:
            self._detachers.append(detach)

    def detach(self, detach: Detach) -> None:
        with self._lock:
            if detach in self._detachers:
                self._detachers.remove(detach)

    def get(self, name: str) -> LoadedLora | None:
        with self._lock:
            return self._loaded.get(name)

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._loaded)

    def load(self, name: str, path: str | Path) -> LoadedLora:
        """Validate and load an adapter under `name`; a loaded one of the same file version is
        kept, another version replaces it. AdapterError / AdapterLoadError say why not."""
        path = Path(path)
        with self._change:
            if self._closed:
                raise AdapterLoadError(f"{path}: the model is closed")
            version = file_version(path)
            current = self.get(name)
            if current is not None and current.path == str(path) and current.version == version:
                return current
            info = validate_adapter(path, self.model_path)
            started = time.perf_counter()
            ptr = load_lora(self.model_ptr, path)
            elapsed = (time.perf_counter() - started) * 1000
            loaded = LoadedLora(name, str(path), version, ptr, info, elapsed)
            with self._lock:
                self._loaded[name] = loaded
            if current is not None:
                self._free(current)
            log.info("loaded adapter %s from %s in %.1f ms", name, path, loaded.load_ms)
            return loaded

    def unload(self, name: str) -> bool:
        with self._change:
            with self._lock:
                loaded = self._loaded.pop(name, None)
            if loaded is None:
                return False
            self._free(loaded)
            log.info("unloaded adapter %s", name)
            return True

    def _free(self, loaded: LoadedLora) -> None:
        with self._lock:
            detachers = list(self._detachers)
        for detach in detachers:
            detach(loaded.ptr)
        free_lora(loaded.ptr)

    def active(self, wanted: Sequence[tuple[str, float]]) -> tuple[ActiveAdapter, ...]:
        """The active set for (name, scale) pairs; names not loaded are skipped."""
        result = []
        with self._lock:
            for name, scale in wanted:
                loaded = self._loaded.get(name)
                if loaded is not None and scale != 0.0:
                    result.append(ActiveAdapter(name, float(scale), loaded.version, loaded.ptr))
        return tuple(sorted(result, key=lambda a: a.name))

    def close(self) -> None:
        """Free every adapter; call before the model itself is freed (llama.cpp would free
        them with the model, and a later free would then be a double free)."""
        with self._change:
            self._closed = True
        for name in self.names():
            self.unload(name)


# --- one context's adapter set and KV snapshots ----------------------------------------------


class SessionLike(Protocol):
    """What ContextAdapters needs of the engine's context wrapper (server.engine.session)."""

    ctx: Any
    tokens: list[int]
    kv_key: str

    def reset(self) -> None: ...


@dataclass
class _Snapshot:
    key: str
    tokens: list[int]
    data: Any  # ctypes uint8 array
    size: int
    ptrs: frozenset[int]


class KVSnapshots:
    """Saved KV states of sequence 0, one per adapter set, most recent last.

    Switching from set A to B and back would otherwise evaluate the whole prompt again under
    A; restoring A's saved state costs a copy (about 9 KiB per token on Gemma 3 270M)."""

    def __init__(self, max_count: int = 2, max_bytes: int = 128 * 1024 * 1024) -> None:
        self.max_count = max_count
        self.max_bytes = max_bytes
        self._items: list[_Snapshot] = []
        # Figures for benchmarks and logs.
        self.saves = 0
        self.restores = 0

    @property
    def enabled(self) -> bool:
        return self.max_count > 0

    @property
    def bytes(self) -> int:
        return sum(item.size for item in self._items)

    def save(self, ctx: Any, key: str, tokens: list[int], ptrs: frozenset[int]) -> bool:
        if not self.enabled or len(tokens) < MIN_SNAPSHOT_TOKENS:
            return False
        lib = _lib()
        size = int(lib.llama_state_seq_get_size(ctx, 0))
        if size <= 0 or size > self.max_bytes:
            return False
        data = (ctypes.c_uint8 * size)()
        written = int(lib.llama_state_seq_get_data(ctx, data, size, 0))
        if written <= 0:
            return False
        self.drop_key(key)
        self._items.append(_Snapshot(key, list(tokens), data, written, ptrs))
        while len(self._items) > self.max_count or self.bytes > self.max_bytes:
            self._items.pop(0)
        self.saves += 1
        return True

    def restore(self, ctx: Any, key: str) -> list[int] | None:
        """Put the saved state of `key` into sequence 0; its tokens, or None if none is kept
        (or llama.cpp refused it; the caller then resets)."""
        found = next((item for item in self._items if item.key == key), None)
        if found is None:
            return None
        self._items.remove(found)
        lib = _lib()
        lib.llama_memory_clear(lib.llama_get_memory(ctx), True)
        if int(lib.llama_state_seq_set_data(ctx, found.data, found.size, 0)) == 0:
            log.warning("restoring the KV snapshot of adapter set %r failed", key)
            return None
        self.restores += 1
        return found.tokens

    def drop_key(self, key: str) -> None:
        self._items = [item for item in self._items if item.key != key]

    def drop_ptr(self, ptr: Any) -> None:
        self._items = [item for item in self._items if _addr(ptr) not in item.ptrs]

    def clear(self) -> None:
        self._items = []


MIN_SNAPSHOT_TOKENS = 32


def _addr(ptr: Any) -> int:
    return ctypes.cast(ptr, ctypes.c_void_p).value or 0


class ContextAdapters:
    """The adapter side of one llama context: applies each request's set before its prompt is
    evaluated, keeps the KV cache from being reused under another set (restoring a snapshot
    of that set if one is kept), and drops an adapter that is about to be freed.

    `prepare` runs on the context's worker with the context's lock held; `drop` comes from
    other threads and takes that lock, so an adapter is never freed mid-decode."""

    def __init__(
        self,
        session: SessionLike,
        pool: ModelAdapters,
        lock: threading.Lock,
        snapshots: KVSnapshots | None = None,
    ) -> None:
        self.session = session
        self.pool = pool
        self.lock = lock
        self.snapshots = snapshots if snapshots is not None else KVSnapshots()
        self.applied: tuple[ActiveAdapter, ...] = ()
        pool.attach(self.drop)

    def prepare(self, wanted: Sequence[tuple[str, float]], extra_key: str = "") -> str:
        """Apply the adapters named in `wanted` (those loaded) and return the KV key; call
        before comparing the prompt with the cached tokens."""
        session = self.session
        active = self.pool.active(wanted)
        key = adapter_key(active)
        if extra_key and extra_key != key:
            key = f"{extra_key}|{key}"
        if key != session.kv_key:
            old_ptrs = frozenset(_addr(a.ptr) for a in self.applied)
            if session.tokens:
                self.snapshots.save(session.ctx, session.kv_key, session.tokens, old_ptrs)
            restored = self.snapshots.restore(session.ctx, key)
            if restored is None:
                session.reset()
            else:
                session.tokens = restored
            session.kv_key = key
        # A no-op in llama.cpp when the set is unchanged.
        set_context_adapters(session.ctx, active)
        self.applied = active
        return key

    def drop(self, ptr: Any) -> None:
        with self.lock:
            self.snapshots.drop_ptr(ptr)
            if self.session.ctx is None:
                return
            if any(_addr(a.ptr) == _addr(ptr) for a in self.applied):
                set_context_adapters(self.session.ctx, ())
                self.applied = ()
                self.session.reset()
                # Matches no request's key: the next request applies its set afresh.
                self.session.kv_key = "<dropped>"

    def close(self) -> None:
        self.pool.detach(self.drop)
        self.snapshots.clear()
        self.applied = ()


__all__ = [
    "ActiveAdapter",
    "AdapterError",
    "AdapterLoadError",
    "ContextAdapters",
    "KVSnapshots",
    "LoadedLora",
    "ModelAdapters",
    "adapter_key",
    "describe",
    "file_version",
    "free_lora",
    "load_lora",
    "set_context_adapters",
]
