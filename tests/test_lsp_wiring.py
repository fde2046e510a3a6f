"""The server core's wiring, without a client: features set up in any order give the same
server, events isolate a failing handler, and the models answer before they are started."""

from __future__ import annotations

import logging

import pytest

from server.actions.models import ActionError
from server.engine.types import CancelToken
from server.events import Event
from server.lsp import FEATURES, create_server


def _wiring(features: list) -> dict[str, object]:  # type: ignore[type-arg]
    ls = create_server(features)
    fm = ls.protocol.fm
    return {
        "methods": sorted(fm.features),
        "commands": sorted(fm.commands),
        "context providers": [type(p).__name__ for p in ls.context_providers],
        "hover extras": len(ls.hover_extras),
        "completion sources": len(ls.completion_sources),
        "retrieval": type(ls.retrieval).__name__,
        "settings handlers": len(ls.events.settings_changed._handlers),
    }


def test_feature_order_does_not_matter() -> None:
    forward = _wiring(FEATURES)
    assert forward == _wiring(list(reversed(FEATURES)))
    assert "textDocument/inlineCompletion" in forward["methods"]  # type: ignore[operator]
    assert "smalltalk.adapters.activate" in forward["commands"]  # type: ignore[operator]
    assert forward["context providers"] == ["RetrievalContextProvider"]
    assert forward["hover extras"] == 1 and forward["completion sources"] == 1
    assert forward["retrieval"] == "IndexingService"


def test_an_event_handler_that_fails_does_not_stop_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    event: Event[[str]] = Event("file_changed")
    seen: list[str] = []

    def broken(path: str) -> None:
        raise RuntimeError("boom")

    event.subscribe(broken)
    event.subscribe(seen.append)
    with caplog.at_level(logging.ERROR, logger="server.events"):
        event.emit("/ws/A.st")
    assert seen == ["/ws/A.st"]
    assert "file_changed handler" in caplog.text and "boom" in caplog.text


def test_models_before_initialized() -> None:
    models = create_server([]).models
    assert models.status() == {
        "models": {"coder": "off", "reasoner": "off"},
        # What the settings name, loaded or not (the defaults here).
        "names": {"coder": "qwen2.5-coder-0.5b", "reasoner": "qwen2.5-coder-1.5b"},
        "indexing": "indexing",
        "adapters": [],
        "completion": {"state": "idle"},
    }
    assert models.engine("coder") is None and models.worker("coder") is None
    assert models.select_adapters("coder", "/ws/A.st").key == ""
    assert models.label("coder", "/ws/A.st") == "coder model"
    assert not models.gate()
    with pytest.raises(ActionError, match="not been started"):
        models.reasoner(CancelToken())
    models.close()
