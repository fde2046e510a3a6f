"""The remote engine: a role's model served by an OpenAI-compatible server (llama.cpp's
`llama-server`, llama-cpp-python's `llama_cpp.server`, vLLM) instead of this process.

Only the generate stage changes: prompts, FIM layout, stop strings, the stop check and the
filters are the pipeline's own, so the same context gives the same prompt either way. The
prompt goes to `/v1/completions` with `stream: true`; the text is cut by the same rules as in
process, and the stream is closed (which stops the server's work) on cancel, on a superseding
request, at the generation cap (`max_generate_s`), and once the stop check cuts.

Settings per role (`backends.coder` / `backends.reasoner`, server.config.RoleBackend):
`backend = "remote"`, `base_url`, `model`, `api_key_env` (the *name* of an environment
variable; the key is sent as a bearer token and never logged), `connect_timeout_s`,
`read_timeout_s`, `retry_max_s`, `adapters`, `adapter_model`, `fim_tokens`. The FIM tokens,
chat template and architecture come from a local copy of the model when `models.*` names one
(the embedded defaults always are), else from `fim_tokens` and the server's `/props`.

Failures: a server that is down, slow (no byte for `read_timeout_s`), answers 5xx, refuses
the key or sends malformed JSON makes the request fail at once with one message; the role is
reported "failed" (the editor shows the message once), later requests fail fast without
touching the network, and a background probe retries with exponential backoff until the server
answers, when the role is "ready" again. A 4xx about one request fails that request only.

LoRA: with llama-server, adapters are ids by name from `GET /lora-adapters` (the file stem)
sent in each request's `lora` field (scales included; unlisted ones at 0). With vLLM (and a
`llama_cpp.server` configured with one model alias per adapter), an adapter is a model named
`adapter_model` (default "{name}"): one adapter per request, at scale 1. Activating an
adapter the server does not offer is refused with a message naming what it offers.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx

from server import secrets
from server.config import Settings
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
    model_ids,
    parse_event,
    response_json,
    root_url,
    stop_reason_of,
    transport_error,
)
from server.engine.remote_model import (
    RemoteAdapters,
    RemoteInfo,
    RemoteModel,
    fim_of,
    local_copy,
)
from server.engine.types import (
    CancelToken,
    FimTokens,
    GenerateParams,
    Generation,
    Role,
    StopCheck,
    StopReason,
)

log = logging.getLogger(__name__)
# httpx logs every request at INFO and httpcore every socket step at DEBUG.
logging.getLogger("httpx").setLevel(logging.WARNING)
logging.getLogger("httpcore").setLevel(logging.INFO)

# How often a running request looks at its CancelToken (cancel, supersede, generation cap).
_POLL_S = 0.01
_FIRST_RETRY_S = 0.5
_CLOSE_WAIT_S = 5.0

# (role, state, error): how the registry hears that the server went away or came back.
StateCallback = Callable[[Role, Literal["ready", "failed"], str | None], None]


class RemoteSetupError(ValueError):
    """The remote settings cannot work (an API key variable that is not set)."""


# --- the event loop the requests run on ------------------------------------------------------


class _LoopThread:
    """An asyncio loop on a thread of its own: the engine's requests, probes and retries."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.thread.start()

    def submit(self, coro: Coroutine[Any, Any, Any]) -> concurrent.futures.Future[Any]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def close(self, before: Coroutine[Any, Any, Any]) -> None:
        """Cancel what runs, run `before` (closing the client), stop the loop."""

        async def shutdown() -> None:
            current = asyncio.current_task()
            tasks = [t for t in asyncio.all_tasks() if t is not current]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await before

        if threading.current_thread() is self.thread:  # closed by a listener on this loop
            self.loop.create_task(shutdown()).add_done_callback(lambda _: self.loop.stop())
            return
        try:
            self.submit(shutdown()).result(_CLOSE_WAIT_S)
        except (concurrent.futures.TimeoutError, RuntimeError) as err:
            log.warning("remote engine shutdown: %s", err)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(_CLOSE_WAIT_S)
        if not self.thread.is_alive():
            self.loop.close()


@dataclass
class _Stream:
    """What one request has produced so far (kept when it is stopped)."""

    started: float = field(default_factory=time.monotonic)
    text: str = ""
    tokens: int = 0
    prompt_tokens: int = 0
    first_token: float | None = None
    finish: StopReason | None = None

    def generation(self, reason: StopReason, error: str | None = None) -> Generation:
        now = time.monotonic()
        first = self.first_token or now
        return Generation(
            self.text,
            reason,
            prompt_tokens=self.prompt_tokens,
            generated_tokens=self.tokens,
            prompt_ms=(first - self.started) * 1000,
            generate_ms=(now - first) * 1000 if self.first_token else 0.0,
            error=error,
        )


# --- the engine ---------------------------------------------------------------------------


class RemoteEngine:
    """A TextEngine (and EngineBackend) whose generate streams from a remote server."""

    def __init__(
        self,
        role: Role,
        settings: Settings,
        workspace: Path | None = None,
        on_state: StateCallback | None = None,
    ) -> None:
        self.role = role
        self.config = settings.backend_for(role)
        self.server = root_url(self.config.base_url)
        self._timeouts = (self.config.connect_timeout_s, self.config.read_timeout_s)
        self._api = api_url(self.config.base_url)
        self._on_state = on_state
        self._headers = {"Accept": "text/event-stream"}
        try:
            key = secrets.read_api_key(
                self.config.api_key_env, self.config.api_key_file, f"backends.{role}"
            )
        except secrets.SecretError as err:
            raise RemoteSetupError(str(err)) from None
        if key is not None:
            self._headers["Authorization"] = f"Bearer {key}"
        self.local = local_copy(settings, role, workspace)
        self._fim = fim_of(self.config, self.local)
        self.model = self._model(RemoteAdapters(self.server, "off", why_none="not connected"))
        # The message of the failure that made the server unavailable; None while it works.
        self.problem: str | None = None
        self._last_request_error = ""
        self._lock = threading.Lock()
        self._closed = False
        self._retrying = False
        self._thread = _LoopThread(f"remote-{role}")
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(
                self.config.read_timeout_s, connect=self.config.connect_timeout_s
            ),
            # Every editor keystroke may open a stream; a few stay for prefix-friendly reuse.
            limits=httpx.Limits(max_connections=8, max_keepalive_connections=2),
        )

    # --- TextEngine ----------------------------------------------------------------------

    @property
    def model_id(self) -> str:
        return f"{self.config.model or 'default'}@{self.server}"

    @property
    def fim(self) -> FimTokens | None:
        return self._fim

    def generate(
        self,
        prompt: str,
        params: GenerateParams,
        cancel: CancelToken,
        stop_check: StopCheck | None = None,
    ) -> Generation:
        if self._closed:
            return Generation("", "error", error=f"the remote {self.role} engine was closed")
        problem = self.problem
        if problem is not None:  # fail fast: the background retry brings the server back
            return Generation("", "error", error=problem)
        if cancel.should_stop():
            return Generation("", _why(cancel))
        try:
            model, lora = self._adapter_request(params.adapters)
        except RemoteError as err:
            return self._failed(_Stream(), err)
        body = completion_body(prompt, params, model, lora)
        try:
            return self._thread.submit(self._run(body, params, cancel, stop_check)).result()
        except (concurrent.futures.CancelledError, RuntimeError):
            return Generation("", "error", error=f"the remote {self.role} engine was closed")

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._thread.close(self._client.aclose())

    # --- connection state ------------------------------------------------------------------

    def start(self) -> None:
        """Ask the server what it serves (blocking, bounded by the timeouts); report the role
        ready, or failed with the reason while retrying in the background."""
        try:
            self._thread.submit(self._connect()).result()
        except (concurrent.futures.CancelledError, RuntimeError):
            return

    async def _connect(self) -> None:
        try:
            self.model = await self._probe()
        except RemoteError as err:
            self._mark_down(err.message)
            return
        self._report("ready", None)

    def _report(self, state: Literal["ready", "failed"], error: str | None) -> None:
        if self._on_state is not None and not self._closed:
            try:
                self._on_state(self.role, state, error)
            except Exception:
                log.exception("remote engine state listener failed")

    def _mark_down(self, reason: str) -> None:
        message = f"remote server {self.server} {reason} (retrying in the background)"
        with self._lock:
            if self.problem is not None or self._closed:
                return
            self.problem = message
            start_retry = not self._retrying
            self._retrying = True
        log.warning("the %s model is unavailable: %s", self.role, message)
        self._report("failed", message)
        if start_retry:
            self._thread.submit(self._retry())

    async def _retry(self) -> None:
        delay = _FIRST_RETRY_S
        try:
            while not self._closed:
                await asyncio.sleep(delay)
                try:
                    model = await self._probe()
                except RemoteError as err:
                    log.debug("remote server %s still unavailable: %s", self.server, err.message)
                    delay = min(delay * 2, self.config.retry_max_s)
                    continue
                # A fresh model: the adapters feature checks its adapters against the server
                # again (it may have restarted with others).
                self.model = model
                with self._lock:
                    self.problem = None
                log.info("remote server %s is back for the %s model", self.server, self.role)
                self._report("ready", None)
                return
        finally:
            with self._lock:
                self._retrying = False

    async def _get(self, url: str) -> httpx.Response:
        try:
            return await self._client.get(url, headers=self._headers)
        except httpx.HTTPError as err:
            raise transport_error(err, *self._timeouts) from err

    async def _probe(self) -> RemoteModel:
        """The server's models and adapters; RemoteError if it cannot serve this role."""
        response = await self._get(f"{self._api}/models")
        if response.status_code != 200:
            raise http_error(response.status_code, response.content)
        ids = model_ids(response_json(response))
        wanted = self.config.model
        if wanted and wanted not in ids:
            raise RemoteError(f"does not serve the model '{wanted}' (it serves: {', '.join(ids)})")
        template = self.local.metadata.get("tokenizer.chat_template") if self.local else None
        if not template:
            template = await self._server_template()
        return self._model(await self._adapters(ids), template)

    async def _server_template(self) -> str | None:
        # llama-server publishes the model's chat template; other servers answer 404.
        try:
            response = await self._get(f"{self.server}/props")
            body = response_json(response) if response.status_code == 200 else None
        except RemoteError:
            return None
        template = body.get("chat_template") if isinstance(body, dict) else None
        return template if isinstance(template, str) and template else None

    async def _adapters(self, ids: list[str]) -> RemoteAdapters:
        mode = self.config.adapters
        if mode == "off":
            why = f"backends.{self.role}.adapters is off"
            return RemoteAdapters(self.server, "off", why_none=why)
        if mode in ("auto", "lora-field"):
            response = await self._get(f"{self.server}/lora-adapters")
            if response.status_code == 200:
                offered = lora_ids(response_json(response))
                return RemoteAdapters(self.server, "lora-field", offered)
            if mode == "lora-field":
                why = f"it has no per-request LoRA (GET /lora-adapters: {response.status_code})"
                return RemoteAdapters(self.server, "off", why_none=why)
        base = self.config.model or (ids[0] if ids else "")
        return RemoteAdapters(
            self.server, "models", adapters_as_models(ids, self.config.adapter_model, base)
        )

    def _model(self, adapters: RemoteAdapters, template: str | None = None) -> RemoteModel:
        local = self.local
        path = Path(local.path) if local is not None else Path(self.model_id)
        architecture = local.architecture if local is not None else "unknown"
        template = template or (local.metadata.get("tokenizer.chat_template") if local else None)
        return RemoteModel(path, RemoteInfo(architecture), adapters, template)

    # --- one request -----------------------------------------------------------------------

    def _adapter_request(
        self, pairs: tuple[tuple[str, float], ...]
    ) -> tuple[str, list[dict[str, Any]] | None]:
        """The model name and `lora` field for a request's adapters."""
        pool = self.model.adapters
        active = pool.active(pairs)
        if pool.mode == "lora-field":
            lora = []
            for adapter in active:
                loaded = pool.get(adapter.name)
                if loaded is not None:
                    lora.append({"id": loaded.server_id, "scale": adapter.scale})
            # Sent even when empty: unlisted adapters are then off, as in process.
            return self.config.model, lora
        if not active:
            return self.config.model, None
        names = ", ".join(a.describe() for a in active)
        if len(active) > 1:
            raise RemoteError(
                f"takes one adapter per request (adapters as models); active: {names}", False
            )
        if active[0].scale != 1.0:
            raise RemoteError(
                f"cannot scale adapters (adapters as models); active: {names}", False
            )
        loaded = pool.get(active[0].name)
        return (str(loaded.server_id) if loaded else self.config.model), None

    async def _run(
        self,
        body: dict[str, Any],
        params: GenerateParams,
        cancel: CancelToken,
        stop_check: StopCheck | None,
    ) -> Generation:
        stream = _Stream()
        task = asyncio.ensure_future(self._consume(body, params.stop, stop_check, stream))
        capped = False
        while not task.done():
            if not capped and stream.first_token is not None:
                # The generation cap counts from the first token: never the prompt's time.
                cancel.limit(params.max_generate_s)
                capped = True
            if cancel.should_stop():
                # Closing the stream closes the connection: the server stops generating.
                task.cancel()
                break
            await asyncio.wait({task}, timeout=_POLL_S)
        try:
            reason = await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # the engine is closing
            return stream.generation(_why(cancel))
        except RemoteError as err:
            return self._failed(stream, err)
        return stream.generation(reason)

    async def _consume(
        self,
        body: dict[str, Any],
        stop: tuple[str, ...],
        stop_check: StopCheck | None,
        stream: _Stream,
    ) -> StopReason:
        url = f"{self._api}/completions"
        try:
            async with self._client.stream("POST", url, json=body, headers=self._headers) as rsp:
                if rsp.status_code != 200:
                    raise http_error(rsp.status_code, await rsp.aread())
                async for line in rsp.aiter_lines():
                    event = parse_event(line)
                    if event is None:
                        continue
                    if event == DONE:
                        break
                    assert isinstance(event, Chunk)
                    if event.prompt_tokens is not None:
                        stream.prompt_tokens = event.prompt_tokens
                    if event.text:
                        stream.first_token = stream.first_token or time.monotonic()
                        stream.tokens += 1
                        stream.text += event.text
                        cut = cut_at(stream.text, stop, stop_check)
                        if cut is not None:
                            stream.text = stream.text[:cut]
                            return "stop"
                    if event.finish_reason:
                        stream.finish = stop_reason_of(event.finish_reason)
        except httpx.HTTPError as err:
            raise transport_error(err, *self._timeouts) from err
        if stream.finish is None:
            # llama_cpp.server ends a stream early when another request waits (its
            # interrupt_requests): a partial answer, not one to cache.
            log.debug("remote stream ended without a finish reason after %d tokens", stream.tokens)
            return "budget"
        return stream.finish

    def _failed(self, stream: _Stream, err: RemoteError) -> Generation:
        if err.server_down:
            self._mark_down(err.message)
            return stream.generation("error", self.problem or err.message)
        message = f"remote server {self.server} {err.message}"
        if message != self._last_request_error:  # one warning per distinct problem
            self._last_request_error = message
            log.warning("%s request failed: %s", self.role, message)
        return stream.generation("error", message)


def _why(cancel: CancelToken) -> StopReason:
    return "cancelled" if cancel.cancelled else "budget"
