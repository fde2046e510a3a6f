"""Open documents and their parses; the text and parse of any document as of now.

An open buffer is parsed lazily: edits only mark it stale, and the next request (or the
debounced re-parse after typing stops) parses it once, with the grammar's `DocumentParser`
so the facts of unchanged methods are reused.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from pygls.uris import to_fs_path

from server.stamp_cache import StampCache
from smalltalk_grammar import DocumentParser, SourceFile, parse_file
from smalltalk_grammar.text import decode


@dataclass(frozen=True)
class Snapshot:
    """One version of a document: the text the positions refer to and its parse."""

    path: str
    text: str
    source: SourceFile
    version: int | None = None


def path_of(uri: str) -> str:
    """The project-model key of a document: its absolute file path, or the URI itself."""
    if uri.startswith("file:"):
        path = to_fs_path(uri)
        if path:
            return str(Path(path).absolute())
    return uri


def read_text(path: str) -> str | None:
    """A file's text, decoded as the grammar decodes it (BOM, Latin-1 fallback)."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return None
    decoded = decode(data)
    return None if decoded.binary else decoded.text


class OpenDocuments:
    """Parsers and latest parses of the open documents. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._parsers: dict[str, DocumentParser] = {}
        self._snapshots: dict[str, Snapshot] = {}
        self._open_paths: dict[str, int] = {}

    def opened(self, uri: str) -> None:
        with self._lock:
            if uri not in self._parsers:
                path = path_of(uri)
                self._parsers[uri] = DocumentParser(path)
                self._open_paths[path] = self._open_paths.get(path, 0) + 1

    def forget(self, uri: str) -> None:
        with self._lock:
            if self._parsers.pop(uri, None) is None:
                return
            self._snapshots.pop(uri, None)
            path = path_of(uri)
            count = self._open_paths.get(path, 0) - 1
            if count > 0:
                self._open_paths[path] = count
            else:
                self._open_paths.pop(path, None)

    def is_open_path(self, path: str) -> bool:
        with self._lock:
            return path in self._open_paths

    def is_open(self, uri: str) -> bool:
        with self._lock:
            return uri in self._parsers

    def uris(self) -> list[str]:
        with self._lock:
            return list(self._parsers)

    def latest(self, uri: str) -> Snapshot | None:
        with self._lock:
            return self._snapshots.get(uri)

    def parse(self, uri: str, text: str, version: int | None) -> tuple[Snapshot, bool]:
        """The snapshot of `text`; parsed now unless the last parse was of the same text.
        Returns (snapshot, whether a new parse was made)."""
        with self._lock:
            current = self._snapshots.get(uri)
            if current is not None and (current.text is text or current.text == text):
                return current, False
            parser = self._parsers.get(uri)
            if parser is None:
                self.opened(uri)
                parser = self._parsers[uri]
            source = parser.parse(text)
            snap = Snapshot(path_of(uri), text, source, version)
            self._snapshots[uri] = snap
            return snap, True


# Text and parse of closed files that requests asked about, keyed by path and file stamp.
_DISK: StampCache[Snapshot] = StampCache(limit=64)


def _load_snapshot(path: str) -> Snapshot | None:
    text = read_text(path)
    if text is None:
        return None
    # parse_file, not parse: FileTree properties.json and the decoding warnings need it.
    return Snapshot(path, text, parse_file(Path(path)))


def disk_snapshot(path: str) -> Snapshot | None:
    """A closed file's text with its parse."""
    return _DISK.get(path, _load_snapshot)
