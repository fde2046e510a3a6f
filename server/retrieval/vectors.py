"""The FAISS part of the index: inner product on normalised vectors, keyed by unit id.

Small projects use an exact flat index. From `IVF_THRESHOLD` vectors on, an inverted-file
index (IVF) answers faster at a small loss of recall; it supports removal by id, which
incremental updates need (FAISS's HNSW does not). The threshold is measured in
bench/bench_retrieval.py and recorded in BENCHMARKS.md.
"""

from __future__ import annotations

import math
import os
from typing import Any, Literal

import faiss
import numpy as np

IndexKind = Literal["flat", "ivf"]

# Exact flat search costs about 0.2 ms per thousand 384-dimensional vectors on one core of
# this machine (FAISS's generic build), IVF well under a millisecond at 50,000 with recall@10
# about 0.96 (bench/bench_retrieval.py, BENCHMARKS.md). From this count on, IVF keeps the
# vector search a small part of the context builder's 30 ms.
IVF_THRESHOLD = 20_000
IVF_NPROBE = 16

# One query at a time gains nothing from OpenMP threads, and idle OpenMP threads spin-wait,
# fighting torch and llama.cpp for the cores: FAISS runs on the calling thread only.
faiss.omp_set_num_threads(1)


class VectorIndexError(RuntimeError):
    """An index file that cannot be read or does not match the metadata."""


def _ids(ids: Any) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(ids, dtype=np.int64).reshape(-1))


def _vecs(vectors: Any, dimension: int) -> np.ndarray:
    array = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32).reshape(-1, dimension))
    return array


class VectorIndex:
    def __init__(self, dimension: int, ivf_threshold: int = IVF_THRESHOLD) -> None:
        self.dimension = dimension
        self.ivf_threshold = ivf_threshold
        self.kind: IndexKind = "flat"
        self._index: Any = faiss.IndexIDMap2(faiss.IndexFlatIP(dimension))
        # Vectors the IVF quantizer was trained on; retrained when the index outgrows it.
        self._trained_on = 0

    @property
    def ntotal(self) -> int:
        return int(self._index.ntotal)

    def add(self, ids: Any, vectors: Any) -> None:
        ids_arr = _ids(ids)
        if ids_arr.size:
            self._index.add_with_ids(_vecs(vectors, self.dimension), ids_arr)

    def remove(self, ids: Any) -> None:
        ids_arr = _ids(ids)
        if ids_arr.size:
            self._index.remove_ids(ids_arr)

    def needs_rebuild(self) -> bool:
        """True when the index kind no longer fits its size (checked after updates)."""
        n = self.ntotal
        if self.kind == "flat":
            return n >= self.ivf_threshold
        return n < self.ivf_threshold // 2 or n > 4 * max(self._trained_on, 1)

    def rebuild(self, ids: Any, vectors: Any) -> None:
        """Replace the contents, choosing the kind that fits the number of vectors."""
        ids_arr = _ids(ids)
        vecs = _vecs(vectors, self.dimension)
        if ids_arr.size >= self.ivf_threshold:
            nlist = int(min(4096, max(16, math.sqrt(ids_arr.size))))
            quantizer = faiss.IndexFlatIP(self.dimension)
            index = faiss.IndexIVFFlat(
                quantizer, self.dimension, nlist, faiss.METRIC_INNER_PRODUCT
            )
            index.train(vecs)
            index.nprobe = IVF_NPROBE
            self._index, self.kind, self._trained_on = index, "ivf", int(ids_arr.size)
        else:
            self._index = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dimension))
            self.kind, self._trained_on = "flat", 0
        self.add(ids_arr, vecs)

    def search(self, vector: Any, k: int) -> list[tuple[int, float]]:
        """(id, score) pairs, best first; at most k."""
        if self.ntotal == 0 or k <= 0:
            return []
        query = _vecs(vector, self.dimension)[:1]
        scores, ids = self._index.search(query, min(k, self.ntotal))
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]

    # --- persistence -----------------------------------------------------------------------

    def serialize(self) -> bytes:
        return bytes(faiss.serialize_index(self._index))

    def memory_bytes(self) -> int:
        """Approximate resident size: the serialised form holds the vectors, ids and lists."""
        return len(faiss.serialize_index(self._index))

    @classmethod
    def from_bytes(
        cls, data: bytes, dimension: int, ivf_threshold: int = IVF_THRESHOLD
    ) -> VectorIndex:
        try:
            index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
        except Exception as err:  # faiss raises RuntimeError with a C++ message
            raise VectorIndexError(f"unreadable vector index: {err}") from err
        if int(index.d) != dimension:
            raise VectorIndexError(f"vector index has dimension {index.d}, expected {dimension}")
        self = cls(dimension, ivf_threshold)
        self._index = index
        if isinstance(index, faiss.IndexIVF):
            self.kind = "ivf"
            index.nprobe = IVF_NPROBE
            self._trained_on = int(index.ntotal)
        return self

    @classmethod
    def load(cls, path: str, dimension: int, ivf_threshold: int = IVF_THRESHOLD) -> VectorIndex:
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except OSError as err:
            raise VectorIndexError(f"cannot read {path}: {err}") from err
        return cls.from_bytes(data, dimension, ivf_threshold)


def write_atomic(path: str, data: bytes) -> None:
    """Write to a temporary file beside `path`, flush it to disk, then rename over `path`:
    a kill at any moment leaves either the old file or the new one, never half of one."""
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
