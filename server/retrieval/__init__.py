"""Retrieval over the project's own Smalltalk sources.

units      index units (one per method, one per class definition) with content hashes
embedder   sentence-transformers embeddings, offline
store      SQLite metadata and vectors (source of truth)
vectors    the FAISS index (flat, IVF when large)
lexical    selector-word search
index      RetrievalIndex: persistence, incremental updates, hybrid search
cursor     what the code at a cursor is about
context    build_context: labelled items within a token budget
"""

from server.retrieval.context import Context, ContextItem, build_context
from server.retrieval.embedder import Embedder, EmbedderError, load_embedder
from server.retrieval.index import RetrievalIndex, UpdateStats

__all__ = [
    "Context",
    "ContextItem",
    "Embedder",
    "EmbedderError",
    "RetrievalIndex",
    "UpdateStats",
    "build_context",
    "load_embedder",
]
