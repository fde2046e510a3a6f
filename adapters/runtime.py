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
from typing import Any

from adapters.validation import AdapterError, AdapterInfo, validate_adapter

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
    """The adapters loaded into one llama_model (shared by every context on it)."""

    def __init__(self, model_ptr: Any, model_path: str | Path) -> None:
        self.model_ptr = model_ptr
        self.model_path = Path(model_path)
        self._loaded: dict[str, LoadedLora] = {}
        self._lock = threading.RLock()
        self._detachers: list[Detach] = []

    def attach(self, detach: Detach) -> None:
        """Register a context's way of dropping an adapter before it is freed."""
        with self._lock:
            self._detachers.append(detach)

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
        version = file_version(path)
        with self._lock:
            current = self._loaded.get(name)
            if current is not None and current.path == str(path) and current.version == version:
                return current
            info = validate_adapter(path, self.model_path)
            started = time.perf_counter()
            ptr = load_lora(self.model_ptr, path)
            loaded = LoadedLora(
                name, str(path), version, ptr, info, (time.perf_counter() - started) * 1000
            )
            if current is not None:
                self._free(current)
            self._loaded[name] = loaded
            log.info("loaded adapter %s from %s in %.1f ms", name, path, loaded.load_ms)
            return loaded

    def unload(self, name: str) -> bool:
        with self._lock:
            loaded = self._loaded.pop(name, None)
            if loaded is None:
                return False
            self._free(loaded)
            log.info("unloaded adapter %s", name)
            return True

    def _free(self, loaded: LoadedLora) -> None:
        for detach in list(self._detachers):
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
        """Free every adapter (before the model itself is freed)."""
        with self._lock:
            for name in list(self._loaded):
                self.unload(name)


__all__ = [
    "ActiveAdapter",
    "AdapterError",
    "AdapterLoadError",
    "LoadedLora",
    "ModelAdapters",
    "adapter_key",
    "describe",
    "file_version",
    "free_lora",
    "load_lora",
    "set_context_adapters",
]
