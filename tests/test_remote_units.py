"""The remote engine without a model: the wire format (request body, stream events, error
bodies, adapter lists), the adapter pool, the settings, and every failure mode against small
HTTP servers on loopback that misbehave on purpose (down, slow, 5xx, 4xx, malformed JSON,
refused key), including the background retry that brings a role back."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from remote_support import free_port

from server.config import validate_settings
from server.engine.lora import AdapterLoadError
from server.engine.remote import RemoteEngine, RemoteSetupError
from server.engine.remote_api import (
    DONE,
    Chunk,
    RemoteError,
    adapters_as_models,
    api_url,
    completion_body,
    cut_at,
    http_error,
    lora_ids,
    parse_event,
    root_url,
)
from server.engine.remote_model import RemoteAdapters
from server.engine.session import _stop_index
from server.engine.types import CancelToken, GenerateParams

# --- the wire format ----------------------------------------------------------------------------


def test_urls_with_and_without_v1():
    for base in ("http://h:8080", "http://h:8080/", "http://h:8080/v1", "http://h:8080/v1/"):
        assert root_url(base) == "http://h:8080"
        assert api_url(base) == "http://h:8080/v1"


def test_completion_body_matches_the_in_process_sampler():
    params = GenerateParams(max_tokens=12, stop=("\n\n", "]"), seed=3)
    body = completion_body("Object subclass: ", params, "coder-33b", [{"id": 0, "scale": 0.5}])
    assert body["prompt"] == "Object subclass: " and body["stream"] is True
    assert body["max_tokens"] == 12 and body["temperature"] == 0.0 and body["seed"] == 3
    assert body["stop"] == ["\n\n", "]"] and body["model"] == "coder-33b"
    assert body["lora"] == [{"id": 0, "scale": 0.5}]
    # No penalties and no min-p, as in process.
    assert body["repeat_penalty"] == body["repetition_penalty"] == 1.0
    assert body["min_p"] == body["presence_penalty"] == body["frequency_penalty"] == 0.0
    bare = completion_body("x", GenerateParams())
    assert "model" not in bare and "lora" not in bare and "stop" not in bare


def test_stream_events():
    assert parse_event("") is None
    assert parse_event(": ping - 2026-01-01") is None
    assert parse_event("event: message") is None
    assert parse_event("data: [DONE]") == DONE
    line = 'data: {"choices": [{"text": "^ ", "finish_reason": null}]}'
    assert parse_event(line) == Chunk("^ ", None)
    last = 'data: {"choices": [{"text": "", "finish_reason": "length"}]}'
    assert parse_event(last) == Chunk("", "length")
    usage = 'data: {"choices": [], "usage": {"prompt_tokens": 41}}'
    assert parse_event(usage) == Chunk(prompt_tokens=41)


@pytest.mark.parametrize(
    ("line", "needle", "down"),
    [
        ('data: {"choices": [{"text": "a"', "malformed JSON", True),
        ("data: [1, 2]", "not an object", True),
        ('data: {"id": "x"}', "without choices", True),
        ('data: {"choices": [{"text": 5}]}', "without text", True),
        ('data: {"error": {"message": "context full"}}', "context full", False),
    ],
)
def test_bad_stream_events(line: str, needle: str, down: bool):
    with pytest.raises(RemoteError, match=needle) as caught:
        parse_event(line)
    assert caught.value.server_down is down


def test_error_bodies():
    openai = http_error(400, b'{"error": {"message": "prompt too long", "type": "x"}}')
    assert openai.message == "answered 400: prompt too long" and not openai.server_down
    fastapi = http_error(404, b'{"detail": "Not Found"}')
    assert "404: Not Found" in fastapi.message and not fastapi.server_down
    crashed = http_error(502, b"<html>Bad Gateway</html>")
    assert "502" in crashed.message and "Bad Gateway" in crashed.message and crashed.server_down
    key = http_error(401, b'{"detail": "Invalid API key"}')
    assert "refused the API key" in key.message and key.server_down


@pytest.mark.parametrize(
    ("text", "stop"),
    [
        ("^ items isEmpty\n\n", ("\n\n",)),
        ("abc]def", ("]", "\n")),
        ("no stop here", ("\n",)),
        ("a!b", ()),
    ],
)
def test_stopping_is_the_in_process_rule(text: str, stop: tuple[str, ...]):
    def check(t: str) -> int | None:
        return t.find("!") if "!" in t else None

    for end in range(len(text) + 1):
        assert cut_at(text[:end], stop, check) == _stop_index(text[:end], stop, check)


def test_adapter_lists():
    assert lora_ids([{"id": 0, "path": "/srv/lora/house.gguf", "scale": 0.0},
                     {"id": 1, "path": "idioms.gguf", "scale": 1.0}]) == {"house": 0, "idioms": 1}
    with pytest.raises(RemoteError, match="not one"):
        lora_ids({"adapters": []})
    ids = ["qwen-33b", "house", "house-lora", "idioms-lora"]
    assert adapters_as_models(ids, "{name}", "qwen-33b") == {
        "house": "house", "house-lora": "house-lora", "idioms-lora": "idioms-lora"
    }
    assert adapters_as_models(ids, "{name}-lora", "qwen-33b") == {
        "house": "house-lora", "idioms": "idioms-lora"
    }


def test_adapter_pool_refuses_what_the_server_does_not_offer():
    pool = RemoteAdapters("http://gpu:8080", "lora-field", {"house": 0, "idioms": 1})
    with pytest.raises(AdapterLoadError, match=r"no adapter 'late' \(it offers: house, idioms\)"):
        pool.load("late", "/ws/.smalltalk-lsp/adapters/late.gguf")
    house = pool.load("house", "/ws/house.gguf")
    assert pool.load("house", "/ws/house.gguf") is house  # unchanged: the same object
    assert pool.names() == ["house"] and pool.get("house").server_id == 0
    active = pool.active([("house", 0.5), ("idioms", 1.0), ("gone", 1.0)])
    assert [(a.name, a.scale) for a in active] == [("house", 0.5)]
    assert pool.active([("house", 0.0)]) == ()
    assert pool.unload("house") and not pool.unload("house")
    off = RemoteAdapters("http://gpu:8080", "off", why_none="it has no per-request LoRA")
    with pytest.raises(AdapterLoadError, match="no per-request LoRA"):
        off.load("house", "/ws/house.gguf")


# --- settings -----------------------------------------------------------------------------------


def test_remote_settings_are_validated_by_name():
    loaded = validate_settings({"backends": {
        "coder": {"backend": "remote"},
        "reasoner": {"backend": "remote", "base_url": "http://gpu:8000/v1/", "retry_max_s": 0,
                     "fim_tokens": ["<PRE>"], "adapter_model": "lora", "colour": "red"},
    }})
    problems = " | ".join(loaded.problems)
    assert "'backends.coder': Value error, a remote backend needs base_url" in problems
    assert "'backends.reasoner.retry_max_s'" in problems
    assert "'backends.reasoner.fim_tokens'" in problems
    assert "'backends.reasoner.adapter_model'" in problems
    assert "unknown setting 'backends.reasoner.colour'" in problems
    settings = loaded.settings
    assert settings.backend_for("coder").backend == "local"  # the bad section fell back
    reasoner = settings.backend_for("reasoner")
    assert reasoner.backend == "remote" and reasoner.base_url == "http://gpu:8000/v1"
    assert reasoner.retry_max_s == 30.0 and reasoner.fim_tokens is None
    bad_url = validate_settings({"backends": {"coder": {"base_url": "gpu:8080"}}})
    assert "'backends.coder.base_url': Value error, must start with http://" in bad_url.problems[0]


def test_an_api_key_variable_that_is_not_set_is_named(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("NO_SUCH_TEAM_KEY", raising=False)
    settings = remote_settings("http://127.0.0.1:9", api_key_env="NO_SUCH_TEAM_KEY")
    with pytest.raises(RemoteSetupError, match="NO_SUCH_TEAM_KEY .* is not set"):
        RemoteEngine("coder", settings)


# --- failures against misbehaving servers -------------------------------------------------------


def remote_settings(url: str, **backend: Any) -> Any:
    config = {"backend": "remote", "base_url": url, "model": "m", "retry_max_s": 1.0, **backend}
    loaded = validate_settings({"backends": {"coder": config}, "models": {"reasoning": "off"}})
    assert not loaded.problems, loaded.problems
    return loaded.settings


class Behaviour:
    """What the loopback server does; tests change it while it runs."""

    completions = "ok"  # ok | 503 | 400 | malformed | silent
    models = "ok"  # ok | 401 | down (500)
    key: str | None = None
    seen_keys: list[str | None]

    def __init__(self) -> None:
        self.seen_keys = []


def _handler(behaviour: Behaviour) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # keep pytest's output clean
            pass

        def send(self, status: int, body: bytes, kind: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def authorised(self) -> bool:
            sent = self.headers.get("Authorization")
            behaviour.seen_keys.append(sent)
            if behaviour.key and sent != f"Bearer {behaviour.key}":
                self.send(401, b'{"detail": "Invalid API key"}')
                return False
            return True

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.path == "/v1/models" and self.authorised():
                if behaviour.models == "down":
                    self.send(500, b'{"error": {"message": "loading"}}')
                else:
                    self.send(200, json.dumps({"data": [{"id": "m"}]}).encode())
            elif self.path != "/v1/models":
                self.send(404, b'{"detail": "Not Found"}')

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length", 0))
            self.rfile.read(length)
            if not self.authorised():
                return
            mode = behaviour.completions
            if mode == "503":
                self.send(503, b'{"error": {"message": "overloaded"}}')
            elif mode == "400":
                self.send(400, b'{"error": {"message": "prompt is too long"}}')
            elif mode == "silent":
                time.sleep(3)
            else:
                text = '{"choices": [{"text": "a"' if mode == "malformed" else json.dumps(
                    {"choices": [{"text": "^ true", "finish_reason": "stop"}]}
                )
                self.send(200, f"data: {text}\n\ndata: [DONE]\n\n".encode(), "text/event-stream")

    return Handler


@pytest.fixture
def fake() -> Iterator[tuple[str, Behaviour]]:
    behaviour = Behaviour()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(behaviour))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", behaviour
    server.shutdown()
    server.server_close()


class States:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None]] = []

    def __call__(self, role: str, state: str, error: str | None) -> None:
        self.seen.append((state, error))

    def wait(self, state: str, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.seen or self.seen[-1][0] != state:
            assert time.monotonic() < deadline, f"never {state}: {self.seen}"
            time.sleep(0.02)


def engine_for(url: str, **backend: Any) -> tuple[RemoteEngine, States]:
    states = States()
    engine = RemoteEngine("coder", remote_settings(url, **backend), None, states)
    engine.start()
    return engine, states


def generate(engine: RemoteEngine, budget_s: float | None = None) -> tuple[Any, float]:
    started = time.monotonic()
    result = engine.generate("x := ", GenerateParams(max_tokens=8), CancelToken(budget_s))
    return result, time.monotonic() - started


def test_a_working_server_streams_text(fake: tuple[str, Behaviour]):
    url, _ = fake
    engine, states = engine_for(url)
    try:
        assert states.seen == [("ready", None)]
        result, _ = generate(engine)
        assert (result.text, result.stop_reason, result.error) == ("^ true", "stop", None)
    finally:
        engine.close()


def test_a_server_that_is_down_fails_fast_once():
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    engine, states = engine_for(url)
    try:
        assert states.seen[0][0] == "failed"
        message = states.seen[0][1] or ""
        assert url in message and "cannot be reached" in message and "retrying" in message
        result, seconds = generate(engine)
        assert result.stop_reason == "error" and result.error == message
        assert seconds < 0.05, "a known-down server is not asked again"
        time.sleep(1.5)  # background retries do not report the same failure again
        assert [s for s, _ in states.seen] == ["failed"]
    finally:
        engine.close()


def test_5xx_marks_the_server_down_and_the_retry_brings_it_back(fake: tuple[str, Behaviour]):
    url, behaviour = fake
    engine, states = engine_for(url)
    try:
        behaviour.completions, behaviour.models = "503", "down"
        result, _ = generate(engine)
        assert result.stop_reason == "error" and "answered 503: overloaded" in (result.error or "")
        assert states.seen[-1][0] == "failed"
        assert generate(engine)[0].error == result.error  # fails fast with the same message
        behaviour.completions, behaviour.models = "ok", "ok"
        states.wait("ready")
        assert generate(engine)[0].text == "^ true"
    finally:
        engine.close()


def test_4xx_fails_the_request_only(fake: tuple[str, Behaviour]):
    url, behaviour = fake
    engine, states = engine_for(url)
    try:
        behaviour.completions = "400"
        result, _ = generate(engine)
        assert result.stop_reason == "error"
        assert result.error == f"remote server {url} answered 400: prompt is too long"
        assert states.seen == [("ready", None)]
        behaviour.completions = "ok"
        assert generate(engine)[0].text == "^ true"
    finally:
        engine.close()


def test_malformed_json_is_a_server_failure(fake: tuple[str, Behaviour]):
    url, behaviour = fake
    engine, states = engine_for(url)
    try:
        behaviour.completions = "malformed"
        result, _ = generate(engine)
        assert result.stop_reason == "error" and "malformed JSON" in (result.error or "")
        assert states.seen[-1][0] == "failed"
        behaviour.completions = "ok"
        states.wait("ready")  # /v1/models answered all along: back at the first retry
    finally:
        engine.close()


def test_a_silent_server_times_out_and_a_budget_stops_first(fake: tuple[str, Behaviour]):
    url, behaviour = fake
    engine, states = engine_for(url, read_timeout_s=0.5)
    try:
        behaviour.completions = "silent"
        result, seconds = generate(engine, budget_s=0.2)
        # A completion's budget is not a server failure: the answer is just late.
        assert result.stop_reason == "budget" and seconds < 0.4
        assert states.seen == [("ready", None)]
        result, seconds = generate(engine)  # no budget (an explanation): the timeout decides
        assert result.stop_reason == "error"
        assert "silent for 0.5 s (too slow)" in (result.error or "")
        assert 0.45 < seconds < 2.0
        assert states.seen[-1][0] == "failed"
    finally:
        engine.close()


def test_the_api_key_is_sent_and_a_refused_key_is_reported(
    fake: tuple[str, Behaviour], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    url, behaviour = fake
    behaviour.key = "s3cret-team-key"
    monkeypatch.setenv("TEAM_KEY", "s3cret-team-key")
    engine, states = engine_for(url, api_key_env="TEAM_KEY")
    try:
        assert states.seen == [("ready", None)]
        assert generate(engine)[0].text == "^ true"
        assert behaviour.seen_keys[-1] == "Bearer s3cret-team-key"
    finally:
        engine.close()
    monkeypatch.setenv("TEAM_KEY", "wrong-key")
    engine, states = engine_for(url, api_key_env="TEAM_KEY")
    try:
        message = states.seen[0][1] or ""
        assert states.seen[0][0] == "failed" and "refused the API key (401" in message
        assert "wrong-key" not in message
    finally:
        engine.close()
    assert "s3cret-team-key" not in caplog.text and "wrong-key" not in caplog.text


def test_a_model_the_server_does_not_serve_is_named(fake: tuple[str, Behaviour]):
    url, _ = fake
    engine, states = engine_for(url, model="coder-33b")
    try:
        assert states.seen[0] == (
            "failed",
            f"remote server {url} does not serve the model 'coder-33b' (it serves: m) "
            "(retrying in the background)",
        )
    finally:
        engine.close()


def test_closing_stops_a_request_in_flight(fake: tuple[str, Behaviour]):
    url, behaviour = fake
    engine, _ = engine_for(url)
    behaviour.completions = "silent"
    results: list[Any] = []
    worker = threading.Thread(target=lambda: results.append(generate(engine)))
    worker.start()
    time.sleep(0.2)
    engine.close()
    worker.join(5)
    assert results and results[0][0].stop_reason == "error" and "closed" in results[0][0].error
