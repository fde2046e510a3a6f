"""The server's events: typed, each handler isolated (one that raises is logged, the others
still run). Features subscribe at setup; the server core emits.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, ParamSpec

if TYPE_CHECKING:
    from lsprotocol import types

    from server.config import Settings
    from smalltalk_grammar.model import SourceFile

log = logging.getLogger(__name__)

P = ParamSpec("P")


class Event(Generic[P]):
    """Handlers called in subscription order with the event's arguments."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._handlers: list[Callable[P, None]] = []

    def subscribe(self, handler: Callable[P, None]) -> Callable[P, None]:
        self._handlers.append(handler)
        return handler

    def emit(self, *args: P.args, **kwargs: P.kwargs) -> None:
        for handler in list(self._handlers):
            try:
                handler(*args, **kwargs)
            except Exception:
                log.exception("%s handler %s failed", self.name,
                              getattr(handler, "__qualname__", handler))


def _event(name: str) -> Callable[[], Event]:  # type: ignore[type-arg]
    return lambda: Event(name)


@dataclass
class ServerEvents:
    """What happens to a server, for features to follow."""

    # `initialized` arrived (the models have started loading, the scan is running).
    initialized: Event[[]] = field(default_factory=_event("initialized"))
    # `shutdown` arrived (before the models are freed).
    shutdown: Event[[]] = field(default_factory=_event("shutdown"))
    # The settings were (re)loaded.
    settings_changed: Event[[Settings]] = field(default_factory=_event("settings_changed"))
    # Path of a file whose parse changed (created, edited, deleted).
    file_changed: Event[[str]] = field(default_factory=_event("file_changed"))
    # Paths of every workspace/didChangeWatchedFiles event, whatever the file (adapters).
    watched_files: Event[[list[str]]] = field(default_factory=_event("watched_files"))
    # (uri, parse) of an open document after each (re)parse; diagnostics listen here.
    document_parsed: Event[[str, SourceFile]] = field(default_factory=_event("document_parsed"))
    # uri of a document the client closed.
    document_closed: Event[[str]] = field(default_factory=_event("document_closed"))
    # uri of an open document after each didChange (its text is current).
    document_changed: Event[[str]] = field(default_factory=_event("document_changed"))
    # (uri, position) where the client shows the cursor: it asked for the highlights there.
    cursor_seen: Event[[str, types.Position]] = field(default_factory=_event("cursor_seen"))
    # The workspace scan has filled the project model (once per start).
    scan_done: Event[[]] = field(default_factory=_event("scan_done"))
