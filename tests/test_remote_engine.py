"""The remote engine against a real `llama_cpp.server` serving the embedded coder (the
session's team server): the completion pipeline gives the same prompt and the same suggestion
as in process, cancelling closes the stream (the server notices and stops), a budget returns
the partial text in time, and the server's adapters are found (and unknown ones refused)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from remote_support import TEAM_KEY, TEAM_KEY_ENV

from server.completion.pipeline import CompletionOptions, complete
from server.completion.providers import ClassContextProvider
from server.completion.types import CompletionRequest
from server.config import validate_settings
from server.engine.lora import AdapterLoadError
from server.engine.registry import RoleSpec, open_context
from server.engine.remote import RemoteEngine
from server.engine.types import CancelToken, GenerateParams
from server.project_model import ProjectModel
from smalltalk_grammar import parse_path

SAMPLE = Path(__file__).parent / "fixtures" / "sample" / "tonel"
STORE = SAMPLE / "StreamingRights-Core" / "SRStore.class.st"
EMPTY_METHOD = "\n{ #category : #testing }\nSRStore >> isEmpty [\n\n\t"
LONG = GenerateParams(max_tokens=64)


@pytest.fixture(scope="module")
def remote(team_server: Any) -> Any:
    import os

    os.environ[TEAM_KEY_ENV] = TEAM_KEY
    backend = {"backend": "remote", "base_url": team_server.url + "/v1", "model": "gemma3-270m",
               "api_key_env": TEAM_KEY_ENV, "read_timeout_s": 300}
    # The role names the model the server runs: its FIM tokens (none) come from that file.
    loaded = validate_settings(
        {"backends": {"coder": backend}, "models": {"code_generation": "gemma3-270m"}}
    )
    assert not loaded.problems
    states: list[tuple[str, str | None]] = []
    engine = RemoteEngine("coder", loaded.settings, None, lambda r, s, e: states.append((s, e)))
    engine.start()
    assert states == [("ready", None)], states
    yield engine
    engine.close()


def request() -> CompletionRequest:
    text = STORE.read_text(encoding="utf-8") + EMPTY_METHOD
    return CompletionRequest(STORE.as_uri(), text + "\n]\n", len(text), str(STORE), "tonel")


def test_the_pipeline_gives_the_in_process_suggestion(
    remote: RemoteEngine, gemma_model: Any, gemma_model_path: Path
) -> None:
    project = ProjectModel(parse_path(SAMPLE))
    providers = [ClassContextProvider(lambda: project)]
    options = CompletionOptions(max_generate_ms=300_000, max_tokens_line=10, max_tokens_block=10)
    spec = RoleSpec(role="coder", name="gemma3-270m", path=gemma_model_path, n_ctx=2048,
                    n_batch=512, n_threads=2, mmap=True, mlock=False)
    local = open_context(spec, gemma_model)
    try:
        here = complete(request(), local, providers, options)
    finally:
        local.close()
    there = complete(request(), remote, providers, options)
    assert remote.fim == local.fim  # Gemma 3 270M has none: both build a prefix-only prompt
    assert there.prompt is not None and here.prompt is not None
    assert there.prompt.text == here.prompt.text
    assert here.raw.strip(), "the coder wrote nothing"
    assert there.raw == here.raw
    assert there.text == here.text
    assert there.generation is not None and there.generation.stop_reason in ("stop", "length")


def test_cancel_closes_the_stream(remote: RemoteEngine, team_server: Any) -> None:
    cancel = CancelToken()
    first_token = threading.Event()

    def check(text: str) -> int | None:
        first_token.set()
        return None

    results: list[Any] = []
    worker = threading.Thread(
        target=lambda: results.append(remote.generate('"cancel me"\n' + request().text,
                                                      LONG, cancel, check))
    )
    worker.start()
    assert first_token.wait(300), "no token arrived"
    cancelled_at = time.monotonic()
    cancel.cancel()
    worker.join(60)
    stopped_after = time.monotonic() - cancelled_at
    generation = results[0]
    assert generation.stop_reason == "cancelled" and generation.generated_tokens < 64
    assert stopped_after < 1.0
    # The server saw the client go and stopped generating for it.
    deadline = time.monotonic() + 120
    while "Disconnected from client" not in team_server.log.read_text():
        assert time.monotonic() < deadline, "the server never noticed the closed stream"
        time.sleep(0.1)
    after = remote.generate("Object subclass: #", GenerateParams(max_tokens=2), CancelToken())
    assert after.stop_reason in ("length", "stop") and after.error is None


def test_a_budget_returns_in_time(remote: RemoteEngine) -> None:
    started = time.monotonic()
    generation = remote.generate('"budget"\n' + request().text, LONG, CancelToken(0.5))
    assert generation.stop_reason == "budget"
    assert time.monotonic() - started < 1.0
    assert remote.problem is None  # a late answer is not a broken server


def test_the_servers_adapters_are_found_and_unknown_ones_refused(remote: RemoteEngine) -> None:
    pool = remote.model.adapters
    assert pool.mode == "models"  # llama_cpp.server has no /lora-adapters
    assert pool.offered == {"house": "house"}
    with pytest.raises(AdapterLoadError, match=r"has no adapter 'late' \(it offers: house\)"):
        pool.load("late", "/elsewhere/late.gguf")
    pool.load("house", "/elsewhere/house.gguf")
    try:
        model, lora = remote._adapter_request((("house", 1.0),))
        assert (model, lora) == ("house", None)
        scaled = remote.generate("x", GenerateParams(adapters=(("house", 0.5),)), CancelToken())
        assert scaled.stop_reason == "error" and "cannot scale adapters" in (scaled.error or "")
    finally:
        pool.unload("house")
