"""Shared fixtures. Models load once per test session; add fixtures here additively."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def minilm_embedder():
    """The embedded default embedding model (all-MiniLM-L6-v2), loaded once, one torch thread."""
    from server.retrieval.embedder import load_embedder

    return load_embedder("all-minilm-l6-v2", threads=1)
