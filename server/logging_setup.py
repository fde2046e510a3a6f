"""Logging: the project's named stdlib loggers, forwarded to the client as `window/logMessage`.

Records are buffered until the server is initialized (a client ignores notifications sent
before `initialize`), then flushed in order. Only our own logger trees are forwarded: pygls
logs every message it sends, and forwarding those would send a message per message.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections import deque
from collections.abc import Callable

from server.secrets import RedactingFilter

# Logger trees that reach the client.
FORWARDED_LOGGERS = ("server", "smalltalk_grammar", "adapters")
# Records kept while no client is attached; the oldest are dropped beyond this.
BUFFER_LIMIT = 1000

# (level number, formatted message) -> None; must be safe to call from any thread.
Sender = Callable[[int, str], None]


class ClientLogHandler(logging.Handler):
    """Forwards records to a sender once one is attached; buffers them before that."""

    def __init__(self, level: int = logging.INFO) -> None:
        super().__init__(level)
        self._sender: Sender | None = None
        self._buffer: deque[tuple[int, str]] = deque(maxlen=BUFFER_LIMIT)
        self._guard = threading.local()
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def attach(self, sender: Sender) -> None:
        """Start forwarding; everything buffered so far goes out first."""
        with self.lock or threading.RLock():
            self._sender = sender
            pending = list(self._buffer)
            self._buffer.clear()
        for level, message in pending:
            self._send(sender, level, message)

    def detach(self) -> None:
        self._sender = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.format(record)
        except Exception:  # a bad format string must not break the caller
            self.handleError(record)
            return
        sender = self._sender
        if sender is None:
            self._buffer.append((record.levelno, message))
            return
        self._send(sender, record.levelno, message)

    def _send(self, sender: Sender, level: int, message: str) -> None:
        # Sending may itself log (e.g. a broken pipe); never recurse into ourselves.
        if getattr(self._guard, "active", False):
            return
        self._guard.active = True
        try:
            sender(level, message)
        except Exception:
            pass
        finally:
            self._guard.active = False


def configure(level: str | int | None = None, stderr: bool = True) -> ClientLogHandler:
    """Install one client handler (and optionally a stderr handler) on our logger trees.

    Idempotent per process: a second call replaces the handlers of the first.
    """
    if level is None:
        level = os.environ.get("SMALLTALK_LSP_LOG_LEVEL", "INFO")
    if isinstance(level, str):
        level = logging.getLevelName(level.upper())
        if not isinstance(level, int):
            level = logging.INFO
    client = ClientLogHandler(level)
    handlers: list[logging.Handler] = [client]
    redacting = RedactingFilter()
    if stderr:
        err = logging.StreamHandler(sys.stderr)
        err.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        err.setLevel(level)
        handlers.append(err)
    for name in FORWARDED_LOGGERS:
        logger = logging.getLogger(name)
        for old in list(logger.handlers):
            if getattr(old, "_smalltalk_lsp", False):
                logger.removeHandler(old)
        for handler in handlers:
            handler._smalltalk_lsp = True  # type: ignore[attr-defined]
            if not any(isinstance(f, RedactingFilter) for f in handler.filters):
                handler.addFilter(redacting)  # no API key reaches a log (server.secrets)
            logger.addHandler(handler)
        logger.setLevel(level)
        # Our records must not also reach the root logger (which may print to stdout).
        logger.propagate = False
    return client


class _AnsweredErrors(logging.Filter):
    """Drops pygls' tracebacks for errors a handler raised on purpose to answer a request
    (invalid parameters, a failed code action): the client gets the message in the
    response; a traceback on stderr for each would only look like a crash."""

    def filter(self, record: logging.LogRecord) -> bool:
        from pygls.exceptions import JsonRpcException, JsonRpcInternalError

        error = record.exc_info[1] if record.exc_info else None
        return not (
            isinstance(error, JsonRpcException) and not isinstance(error, JsonRpcInternalError)
        )


def quiet_answered_errors() -> None:
    logger = logging.getLogger("pygls.protocol.json_rpc")
    if not any(isinstance(f, _AnsweredErrors) for f in logger.filters):
        logger.addFilter(_AnsweredErrors())
