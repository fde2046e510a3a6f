"""Markdown notes (explanations, designs) written under `<workspace>/.smalltalk-lsp/notes/`,
where the editor opens them. One file per kind and subject: running an action again on the
same code replaces its note."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
from pathlib import Path

from server import secrets

log = logging.getLogger(__name__)

NOTES_DIR = Path(".smalltalk-lsp") / "notes"


def slug(text: str, limit: int = 48) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")
    return cleaned[:limit].rstrip("-") or "note"


def note_path(root: Path, kind: str, subject: str, key: str) -> Path:
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:8]
    return root / NOTES_DIR / f"{kind}-{slug(subject)}-{digest}.md"


def write_note(root: Path, kind: str, subject: str, key: str, markdown: str) -> Path:
    """Write a note atomically; if the workspace is read-only the note goes to the user's
    temporary folder instead (the text must reach the editor either way)."""
    path = note_path(root, kind, subject, key)
    markdown = secrets.redact(markdown)
    try:
        return _write(path, markdown)
    except OSError as err:
        fallback = Path(tempfile.gettempdir()) / "smalltalk-lsp-notes" / path.name
        log.warning("cannot write %s (%s); writing %s", path, err, fallback)
        return _write(fallback, markdown)


def _write(path: Path, markdown: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".note-", suffix=".md")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(markdown)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_note(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
