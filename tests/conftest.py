"""Shared fixtures. Models load once per test session; add fixtures here additively."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def minilm_embedder():
    """The embedded default embedding model (all-MiniLM-L6-v2), loaded once, one torch thread."""
    from server.retrieval.embedder import load_embedder

    return load_embedder("all-minilm-l6-v2", threads=1)


@pytest.fixture(scope="session")
def gemma_model_path():
    """The embedded coder's GGUF file (Gemma 3 270M, assembled from its package once)."""
    from server.engine.embedded import resolve_model_path

    return resolve_model_path("gemma3-270m")


@pytest.fixture(scope="session")
def gemma_model(gemma_model_path):
    """The embedded coder loaded once into llama.cpp (a LoadedModel; contexts are per test)."""
    from server.engine.llama_model import load_model

    model = load_model(gemma_model_path)
    yield model
    model.close()
