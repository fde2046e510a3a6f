"""The SQLite half of the index: unit metadata, content hashes and the vectors themselves.

SQLite is the source of truth. Every change is one transaction, so a kill in the middle of a
write rolls back to the previous state on the next open. The FAISS file beside it is a cache
that can always be rebuilt from the vectors stored here without embedding anything again.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from server.retrieval.units import Unit

STORE_FORMAT = "1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS units (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    path TEXT NOT NULL,
    class_name TEXT NOT NULL,
    side TEXT NOT NULL,
    selector TEXT NOT NULL,
    category TEXT NOT NULL,
    hash TEXT NOT NULL,
    vector BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS units_path ON units (path);
"""


class StoreCorrupt(RuntimeError):
    """The database file is damaged, truncated or not ours."""


@dataclass(frozen=True, slots=True)
class UnitRecord:
    """What the index remembers of a unit: enough to find it again in the project model."""

    id: int
    key: str
    kind: str
    path: str
    class_name: str
    side: str
    selector: str
    category: str
    hash: str


class MetadataStore:
    def __init__(self, path: str) -> None:
        """Open (or create) the database at `path` (":memory:" for none); StoreCorrupt if
        the file is damaged."""
        self.path = path
        try:
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        except sqlite3.Error as err:
            raise StoreCorrupt(f"cannot open {path}: {err}") from err
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            result = self._db.execute("PRAGMA quick_check").fetchone()
            if not result or result[0] != "ok":
                raise StoreCorrupt(f"{path}: integrity check failed: {result}")
            self._db.executescript(_SCHEMA)
            stored_format = self.get_meta("format")
            if stored_format is None:
                self.set_meta({"format": STORE_FORMAT, "generation": "0"})
            elif stored_format != STORE_FORMAT:
                raise StoreCorrupt(f"{path}: index format {stored_format}, expected {STORE_FORMAT}")
        except sqlite3.Error as err:
            self._db.close()
            raise StoreCorrupt(f"{path}: {err}") from err
        except StoreCorrupt:
            self._db.close()
            raise

    def close(self) -> None:
        self._db.close()

    # --- meta ------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, values: dict[str, str]) -> None:
        with self._transaction():
            self._set_meta(values)

    def _set_meta(self, values: dict[str, str]) -> None:
        self._db.executemany(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", list(values.items())
        )

    @property
    def generation(self) -> int:
        return int(self.get_meta("generation") or 0)

    # --- units -----------------------------------------------------------------------------

    def records(self) -> list[UnitRecord]:
        rows = self._db.execute(
            "SELECT id, key, kind, path, class_name, side, selector, category, hash FROM units"
        ).fetchall()
        return [UnitRecord(*row) for row in rows]

    def vectors(self, dimension: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of every unit, for rebuilding the FAISS index."""
        return _vectors_of(self._db, self.path, dimension)

    def vector_of(self, unit_id: int) -> np.ndarray | None:
        row = self._db.execute("SELECT vector FROM units WHERE id = ?", (unit_id,)).fetchone()
        return None if row is None else np.frombuffer(row[0], dtype=np.float32)

    def next_id(self) -> int:
        row = self._db.execute("SELECT COALESCE(MAX(id), 0) FROM units").fetchone()
        return int(row[0]) + 1

    def apply(
        self,
        add: Iterable[tuple[int, Unit, np.ndarray]],
        remove_ids: Iterable[int],
        meta: dict[str, str] | None = None,
    ) -> int:
        """Remove and add units in one transaction; answer the new generation."""
        generation = self.generation + 1
        with self._transaction():
            self._db.executemany("DELETE FROM units WHERE id = ?", [(i,) for i in remove_ids])
            self._db.executemany(
                "INSERT OR REPLACE INTO units (id, key, kind, path, class_name, side, selector,"
                " category, hash, vector) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        unit_id, u.key, u.kind, u.path, u.class_name, u.side, u.selector,
                        u.category, u.hash, np.ascontiguousarray(v, dtype=np.float32).tobytes(),
                    )
                    for unit_id, u, v in add
                ],
            )
            self._set_meta({**(meta or {}), "generation": str(generation)})
        return generation

    def reset(self, meta: dict[str, str]) -> None:
        """Forget every unit (another embedding model): nothing of the old vectors stays."""
        with self._transaction():
            self._db.execute("DELETE FROM units")
            self._db.execute("DELETE FROM meta")
            self._set_meta({"format": STORE_FORMAT, "generation": "0", **meta})

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


def _vectors_of(
    db: sqlite3.Connection, path: str, dimension: int
) -> tuple[np.ndarray, np.ndarray]:
    rows = db.execute("SELECT id, vector FROM units ORDER BY id").fetchall()
    ids = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
    vectors = np.frombuffer(b"".join(row[1] for row in rows), dtype=np.float32)
    if vectors.size != len(rows) * dimension:
        raise StoreCorrupt(f"{path}: stored vectors do not have dimension {dimension}")
    return ids, vectors.reshape(len(rows), dimension)


def read_vectors(path: str, dimension: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids, vectors) through a connection of its own, so the store's connection stays free
    for searches meanwhile (WAL lets a reader and the writer work at once)."""
    db = sqlite3.connect(Path(path).resolve().as_uri() + "?mode=ro", uri=True)
    try:
        return _vectors_of(db, path, dimension)
    finally:
        db.close()


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")
