"""Secrets (the remote backend's API key): read from the environment or a file, and never
written anywhere else.

The key is read once per engine (`read_api_key`) and registered here; every log record (both
the stderr and the client handler), every message shown to the user, every note written and
every remote error text goes through `redact`, which replaces a registered secret by
`[redacted]`. So a server that echoes the Authorization header in an error body, or an
exception that carries it, cannot put the key in a log, a status, a note or `doctor` output.
Settings hold only where the key is (`backends.*.api_key_env`, `backends.*.api_key_file`).
"""

from __future__ import annotations

import logging
import os
import stat
import threading
from pathlib import Path

REDACTED = "[redacted]"
# Shorter values would redact ordinary words.
_MIN_LENGTH = 6
_lock = threading.Lock()
_secrets: set[str] = set()


class SecretError(ValueError):
    """The key cannot be read; the message names where it was looked for, never a value."""


def register(value: str) -> None:
    if len(value) >= _MIN_LENGTH:
        with _lock:
            _secrets.add(value)


def redact(text: str) -> str:
    """`text` with every registered secret replaced by [redacted]."""
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def has_secret(text: str) -> bool:
    with _lock:
        return any(secret in text for secret in _secrets)


def read_api_key(env_name: str, file_name: str, setting: str) -> str | None:
    """The API key from the environment variable `env_name` or the file `file_name` (its first
    line), registered for redaction; None when neither is configured. `setting` names the
    settings section in messages (e.g. "backends.coder")."""
    key: str | None = None
    if env_name:
        key = os.environ.get(env_name)
        if not key:
            raise SecretError(
                f"the environment variable {env_name} (named by {setting}.api_key_env) is not set"
            )
    elif file_name:
        path = Path(os.path.expanduser(file_name))
        try:
            mode = path.stat().st_mode
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            raise SecretError(
                f"cannot read the key file {path} (named by {setting}.api_key_file): "
                f"{getattr(err, 'strerror', None) or type(err).__name__}"
            ) from None
        key = lines[0].strip() if lines else ""
        if not key:
            raise SecretError(f"the key file {path} (named by {setting}.api_key_file) is empty")
        if mode & (stat.S_IRGRP | stat.S_IROTH):
            logging.getLogger(__name__).warning(
                "the key file %s is readable by other users (chmod 600 it)", path
            )
    if key is None:
        return None
    register(key)
    return key


class RedactingFilter(logging.Filter):
    """Replaces registered secrets in a record's message and traceback before any handler
    formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        with _lock:
            if not _secrets:
                return True
        message = record.getMessage()
        if record.exc_info:
            text = logging.Formatter().formatException(record.exc_info)
            if has_secret(text):
                message = f"{message}\n{text}"
                record.exc_info = None
                record.exc_text = None
        if has_secret(message):
            record.msg = redact(message)
            record.args = None
        return True
