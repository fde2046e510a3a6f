"""The OpenAI-compatible wire format, as plain functions: URLs, the `/v1/completions` request
body, server-sent-event lines, error bodies, and the adapter lists servers publish.

Kept apart from the engine (server.engine.remote) so the protocol is tested without a server.
Works with llama.cpp's `llama-server`, llama-cpp-python's `llama_cpp.server` and vLLM.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

import httpx

from server import secrets
from server.engine.types import GenerateParams, StopCheck, StopReason

# The end of a stream (`data: [DONE]`).
DONE = "[DONE]"


class RemoteError(Exception):
    """A remote request failed. `server_down` marks failures of the server itself (down,
    slow, 5xx, malformed answers): requests fail fast until a background retry succeeds.
    Other errors (4xx) belong to one request."""

    def __init__(self, message: str, server_down: bool = True) -> None:
        super().__init__(message)
        self.message = message
        self.server_down = server_down


def root_url(base_url: str) -> str:
    """The server's root (where llama-server has /health, /props, /lora-adapters)."""
    base = base_url.strip().rstrip("/")
    return base.removesuffix("/v1")


def api_url(base_url: str) -> str:
    """The OpenAI API prefix: `<root>/v1`."""
    return root_url(base_url) + "/v1"


def completion_body(
    prompt: str,
    params: GenerateParams,
    model: str = "",
    lora: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The streaming `/v1/completions` request for a prompt built by the same stages as in
    process. The in-process sampler has no penalties and no min-p while servers default to
    some, so they are switched off explicitly: greedy decoding then picks the same tokens."""
    body: dict[str, Any] = {
        "prompt": prompt,
        "max_tokens": params.max_tokens,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "top_k": params.top_k,
        "min_p": 0.0,
        "seed": params.seed,
        "stream": True,
        # llama.cpp's name and vLLM's name for the same thing; each ignores the other's.
        "repeat_penalty": 1.0,
        "repetition_penalty": 1.0,
        "presence_penalty": 0.0,
        "frequency_penalty": 0.0,
        # llama-server: keep the KV cache of the prompt for the next request (prefix reuse).
        "cache_prompt": True,
    }
    if params.stop:
        body["stop"] = list(params.stop)
    if model:
        body["model"] = model
    if lora is not None:
        body["lora"] = lora
    return body


@dataclass(frozen=True)
class Chunk:
    """One streamed piece: its text, the finish reason if it is the last, token usage."""

    text: str = ""
    finish_reason: str | None = None
    prompt_tokens: int | None = None


def parse_event(line: str) -> Chunk | str | None:
    """One line of a server-sent-event stream: a Chunk, DONE, or None for lines that carry
    nothing (blank lines, comments such as keep-alive pings, `event:` fields).
    RemoteError (server_down) for data that is not the JSON of a completion chunk."""
    line = line.strip()
    if not line or line.startswith(":") or not line.startswith("data:"):
        return None
    data = line[5:].strip()
    if data == DONE:
        return DONE
    try:
        event = json.loads(data)
    except json.JSONDecodeError as err:
        raise RemoteError(f"sent malformed JSON in its stream ({err.msg}: {data[:80]!r})") from err
    return chunk_of(event)


def chunk_of(event: Any) -> Chunk:
    if not isinstance(event, dict):
        raise RemoteError(f"sent a stream event that is not an object: {str(event)[:80]!r}")
    if "error" in event:
        raise RemoteError(f"reported an error: {error_text(event)}", server_down=False)
    usage = event.get("usage")
    prompt_tokens = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    choices = event.get("choices")
    if not isinstance(choices, list):
        raise RemoteError(f"sent a stream event without choices: {json.dumps(event)[:80]!r}")
    if not choices:  # the usage-only chunk some servers send last
        return Chunk(prompt_tokens=prompt_tokens)
    choice = choices[0]
    text = choice.get("text", "") if isinstance(choice, dict) else None
    if not isinstance(text, str):
        raise RemoteError(f"sent a choice without text: {json.dumps(choice)[:80]!r}")
    finish = choice.get("finish_reason")
    return Chunk(text, finish if isinstance(finish, str) else None, prompt_tokens)


def stop_reason_of(finish_reason: str | None) -> StopReason:
    """The engine's stop reason for an OpenAI finish reason (a server's "stop" covers both an
    end-of-sequence token and a stop string)."""
    if finish_reason == "length":
        return "length"
    return "stop"


def cut_at(text: str, stop: tuple[str, ...], stop_check: StopCheck | None) -> int | None:
    """Where the text stops: the earliest stop string or `stop_check` cut (the same rule as
    the in-process session applies after every token)."""
    found = [index for s in stop if s and (index := text.find(s)) >= 0]
    if stop_check is not None:
        checked = stop_check(text)
        if checked is not None:
            found.append(checked)
    return min(found) if found else None


def error_text(body: Any) -> str:
    """The message of an error body (with any secret redacted: a server may echo the key)."""
    return secrets.redact(_error_text(body))


def _error_text(body: Any) -> str:
    """The message of an error body: OpenAI's {"error": {"message"}}, FastAPI's {"detail"},
    or the raw text."""
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str):
            return error
        detail = body.get("detail")
        if detail:
            return detail if isinstance(detail, str) else json.dumps(detail)[:200]
        if body.get("message"):
            return str(body["message"])
    return str(body)[:200]


def http_error(status: int, raw: bytes) -> RemoteError:
    """A RemoteError for a non-200 answer: 5xx means the server is in trouble; 4xx is about
    this request (or the configuration: key, model name)."""
    try:
        body: Any = json.loads(raw.decode("utf-8", errors="replace"))
    except json.JSONDecodeError:
        body = raw.decode("utf-8", errors="replace").strip()
    message = error_text(body) or "(no message)"
    if status in (401, 403):
        message = f"refused the API key ({status}: {message})"
        return RemoteError(message, server_down=True)
    return RemoteError(f"answered {status}: {message}", server_down=status >= 500)


def model_ids(body: Any) -> list[str]:
    """The model ids of a `GET /v1/models` answer; RemoteError if it is not one."""
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        raise RemoteError(f"sent a model list that is not one: {json.dumps(body)[:80]!r}")
    return [str(item["id"]) for item in data if isinstance(item, dict) and "id" in item]


def lora_ids(body: Any) -> dict[str, int]:
    """llama-server's `GET /lora-adapters` ([{"id", "path", "scale"}]) as adapter name (the
    file's stem, as the catalogue names a bare adapter file) -> id."""
    if not isinstance(body, list):
        raise RemoteError(f"sent an adapter list that is not one: {json.dumps(body)[:80]!r}")
    found: dict[str, int] = {}
    for item in body:
        if isinstance(item, dict) and isinstance(item.get("id"), int) and item.get("path"):
            found[PurePath(str(item["path"])).stem] = int(item["id"])
    return found


def adapters_as_models(ids: list[str], adapter_model: str, base: str) -> dict[str, str]:
    """Adapter name -> model id, for servers that serve each adapter as a model (vLLM's
    --lora-modules, llama_cpp.server's aliases): every id but the base's that fits
    `adapter_model` ("{name}", "{name}-lora", ...)."""
    prefix, _, suffix = adapter_model.partition("{name}")
    found: dict[str, str] = {}
    for model_id in ids:
        if model_id == base or not (model_id.startswith(prefix) and model_id.endswith(suffix)):
            continue
        name = model_id[len(prefix) : len(model_id) - len(suffix)]
        if name:
            found[name] = model_id
    return found


def response_json(response: httpx.Response) -> Any:
    try:
        return json.loads(response.content)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RemoteError(f"sent malformed JSON ({err}): {response.text[:80]!r}") from err


def transport_error(
    err: httpx.HTTPError, connect_timeout_s: float, read_timeout_s: float
) -> RemoteError:
    """One stable message per kind of failure (the editor shows each message once)."""
    if isinstance(err, httpx.ConnectTimeout):
        return RemoteError(f"did not accept a connection within {connect_timeout_s:g} s")
    if isinstance(err, httpx.TimeoutException):
        return RemoteError(f"was silent for {read_timeout_s:g} s (too slow)")
    if isinstance(err, httpx.ConnectError):
        reason = str(err).split("] ")[-1] or "connection failed"
        return RemoteError(f"cannot be reached ({reason})")
    if isinstance(err, httpx.RemoteProtocolError | httpx.ReadError):
        return RemoteError("dropped the connection in the middle of a request")
    return RemoteError(f"failed: {type(err).__name__}: {err}")
