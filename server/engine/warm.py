"""Prompt states of recently used documents, kept warm in one llama.cpp context.

A context's KV cache holds one prompt; switching to another document used to throw it away,
so coming back cost the whole prompt again. Each completion names its document
(`GenerateParams.cache_slot`); the KV key is (document, adapter set), and the context's
snapshot store (server.engine.lora.KVSnapshots, `llama_state_seq_get_data`/`set_data`) keeps the
states of the most recently used keys: leaving a document saves its state, coming back restores
it, and only what changed since is evaluated again. The number of states and their memory are
capped (`completion.warm_documents`, `completion.warm_memory_mb`); the oldest go first.

Why snapshots rather than several sequences in one context: a sequence per document needs a
context `warm_documents` times as large, reserved up front (or a unified cache whose attention
spans every document's tokens on each decode), while a snapshot costs only the memory of the
tokens it holds and a copy on a switch (measured in BENCHMARKS.md, "Arrival").
"""

from __future__ import annotations

from typing import Protocol

MB = 1024 * 1024
# Between the document and the adapter set in a KV key (never in a URI).
_SEPARATOR = "\x1f"


class SnapshotStore(Protocol):
    max_count: int
    max_bytes: int


def kv_key(slot: str, adapter_key: str) -> str:
    """The KV key of a prompt: its slot (document) and adapter set; the bare adapter key when
    there is no slot, as before slots existed."""
    return f"{slot}{_SEPARATOR}{adapter_key}" if slot else adapter_key


def configure(store: SnapshotStore, count: int | None, max_bytes: int | None) -> None:
    """Apply the settings' caps to a context's snapshot store (None keeps what it has)."""
    if count is not None and count != store.max_count:
        store.max_count = count
    if max_bytes is not None and max_bytes != store.max_bytes:
        store.max_bytes = max_bytes
