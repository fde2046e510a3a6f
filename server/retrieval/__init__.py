"""Retrieval over the project's own Smalltalk sources.

units      index units (one per method, one per class definition) with content hashes
embedder   sentence-transformers embeddings, offline
store      SQLite metadata and vectors (source of truth)
vectors    the FAISS index (flat, IVF when large)
lexical    selector-word search
index      RetrievalIndex: persistence, incremental updates, hybrid search
context    build_context: labelled items within a token budget, from the one cursor analysis
           (server.completion.cursor)

Import the modules themselves: the package imports nothing, so the server starts without
numpy, faiss and torch (they load when indexing starts).
"""
