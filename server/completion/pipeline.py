"""The completion pipeline: context -> prompt -> generate -> filters -> suggestion.

Each stage is a plain function (context.build_context, prompt.build_prompt, the engine's
generate, filters.apply_filters); this module only strings them together, once for callers
that may block (`smalltalk-lsp complete`, tests) and once for the LSP event loop, where
generation runs on the role's inference worker.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass

from server.completion.cache import CacheKey, SuggestionCache
from server.completion.context import ContextProvider, build_context
from server.completion.filters import apply_filters
from server.completion.lexical import Scanner
from server.completion.prompt import build_prompt
from server.completion.types import CompletionRequest, CursorContext, Prompt, Suggestion
from server.config import Settings
from server.engine.types import CancelToken, GenerateParams, Generation, StopCheck, TextEngine
from server.engine.worker import InferenceWorker

log = logging.getLogger(__name__)
# How long past the budget to wait for a generation the budget has just cut.
_GRACE_S = 0.1
PROMPT_MARK = "<<<prompt>>>"


@dataclass(frozen=True)
class CompletionOptions:
    budget_ms: int = 1000
    max_tokens_line: int = 48
    max_tokens_block: int = 128
    temperature: float = 0.0
    prefix_chars: int = 3000
    suffix_chars: int = 600
    context_chars: int = 1500
    repository_layout: bool = True
    # The active LoRA adapter set; part of every cache key.
    adapter_key: str = ""
    # That set as (name, scale) pairs, applied to the context for this request.
    adapters: tuple[tuple[str, float], ...] = ()

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        adapter_key: str = "",
        adapters: tuple[tuple[str, float], ...] = (),
    ) -> CompletionOptions:
        c = settings.completion
        return cls(
            budget_ms=c.budget_ms,
            max_tokens_line=c.max_tokens_line,
            max_tokens_block=c.max_tokens_block,
            temperature=c.temperature,
            prefix_chars=c.prefix_chars,
            suffix_chars=c.suffix_chars,
            # The context cap follows the retrieval budget (about 4 characters a token).
            context_chars=settings.retrieval.context_tokens * 4,
            repository_layout=c.repository_layout,
            adapter_key=adapter_key,
            adapters=adapters,
        )


@dataclass(frozen=True)
class Prepared:
    ctx: CursorContext
    prompt: Prompt
    params: GenerateParams
    key: CacheKey
    started: float


def prepare(
    request: CompletionRequest,
    engine: TextEngine,
    providers: Sequence[ContextProvider],
    options: CompletionOptions,
    cache: SuggestionCache,
) -> Prepared | Suggestion:
    """Context and prompt stages; a Suggestion straight away when a cache answers."""
    started = time.monotonic()
    key = CacheKey(request.uri, engine.model_id, options.adapter_key)
    rest = cache.typed_through(key, request.text, request.offset)
    if rest is not None:
        cache.remember(key, request.text, request.offset, rest)
        return Suggestion(rest, "line", source="typed-through", timings=_since(started))
    ctx = build_context(request, providers, options.prefix_chars, options.suffix_chars)
    if ctx.method is None:
        # Outside any method nothing could check a suggestion (filters.drop_outside_methods):
        # do not spend the model on one.
        return Suggestion("", ctx.mode, timings=_since(started))
    prompt = build_prompt(
        ctx, engine.fim, options.max_tokens_line, options.max_tokens_block, options.context_chars,
        options.repository_layout,
    )
    params = GenerateParams(
        max_tokens=prompt.max_tokens,
        temperature=options.temperature,
        stop=prompt.stop,
        budget_s=options.budget_ms / 1000,
        adapter_key=options.adapter_key,
        adapters=options.adapters,
        warm_past_budget=True,
    )
    prepared = Prepared(ctx, prompt, params, key, started)
    # The whole prompt, for debugging suggestions (and for bench_completion, which sends the
    # very same prompt to llama-cpp-python).
    log.debug("prompt for %s (%s mode):\n%s%s", request.uri, prompt.mode, PROMPT_MARK, prompt.text)
    if options.temperature == 0:
        raw = cache.prompt_result(key.model_id, key.adapter_key, prompt.text, prompt.max_tokens)
        if raw is not None:
            return _finish(prepared, Generation(raw, "stop"), cache, source="cache")
    return prepared


def stop_check_for(ctx: CursorContext) -> StopCheck:
    """Stop generating as soon as the filters would cut anyway: at the method's end and at a
    chunk's `!` (line ends are a plain stop string)."""
    scanner = Scanner(ctx.scan)

    def check(text: str) -> int | None:
        # The scanner counts offsets over everything fed so far, which is `text` itself.
        for event in scanner.feed(text[scanner.offset :]):
            if event.kind == "bad-close" or (event.kind == "bang" and ctx.in_chunk_file):
                return event.offset
        return None

    return check


def _finish(
    prepared: Prepared, generation: Generation, cache: SuggestionCache, source: str = "model"
) -> Suggestion:
    ctx, prompt = prepared.ctx, prepared.prompt
    text = apply_filters(generation.text, ctx) or ""
    if source == "model" and generation.stop_reason in ("eos", "stop", "length"):
        key = prepared.key
        cache.store_prompt_result(
            key.model_id, key.adapter_key, prompt.text, prompt.max_tokens, generation.text
        )
    if text:
        cache.remember(prepared.key, ctx.request.text, ctx.request.offset, text)
    timings = _since(prepared.started)
    timings.update(prompt_ms=generation.prompt_ms, generate_ms=generation.generate_ms)
    return Suggestion(
        text,
        prompt.mode,
        raw=generation.text,
        source="cache" if source == "cache" else "model",
        prompt=prompt,
        timings=timings,
        generation=generation,
    )


def _since(started: float) -> dict[str, float]:
    return {"total_ms": (time.monotonic() - started) * 1000}


def complete(
    request: CompletionRequest,
    engine: TextEngine,
    providers: Sequence[ContextProvider] = (),
    options: CompletionOptions | None = None,
    cache: SuggestionCache | None = None,
    cancel: CancelToken | None = None,
) -> Suggestion:
    """The whole pipeline in the calling thread (blocks while the model generates)."""
    options = options or CompletionOptions()
    cache = cache or SuggestionCache()
    prepared = prepare(request, engine, providers, options, cache)
    if isinstance(prepared, Suggestion):
        return prepared
    cancel = cancel or CancelToken(prepared.params.budget_s)
    generation = engine.generate(
        prepared.prompt.text, prepared.params, cancel, stop_check_for(prepared.ctx)
    )
    return _finish(prepared, generation, cache)


async def complete_async(
    request: CompletionRequest,
    engine: TextEngine,
    worker: InferenceWorker,
    providers: Sequence[ContextProvider] = (),
    options: CompletionOptions | None = None,
    cache: SuggestionCache | None = None,
) -> Suggestion | None:
    """The pipeline for the event loop: generation on the worker, keyed by document so a newer
    request supersedes this one. None when superseded or cancelled."""
    options = options or CompletionOptions()
    cache = cache or SuggestionCache()
    prepared = prepare(request, engine, providers, options, cache)
    if isinstance(prepared, Suggestion):
        return prepared
    stop_check = stop_check_for(prepared.ctx)

    def run(cancel: CancelToken) -> Generation:
        return engine.generate(prepared.prompt.text, prepared.params, cancel, stop_check)

    job = worker.submit(run, key=request.uri, budget_s=prepared.params.budget_s)
    job.future.add_done_callback(lambda done: _log_stop(request.uri, job.cancel, done))
    deadline = job.cancel.deadline
    # Wait until the budget is spent (and a moment for a cut generation to arrive); a prompt
    # still being evaluated then goes on in the background, so the next request finds it in
    # the KV cache.
    wait = None if deadline is None else max(0.0, deadline - time.monotonic()) + _GRACE_S
    try:
        generation = await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(job.future)), wait)
    except TimeoutError:
        log.debug("completion for %s: budget spent on the prompt; it finishes in the background",
                  request.uri)
        return None
    except asyncio.CancelledError:
        # $/cancelRequest: stop the model too, not just this coroutine.
        job.cancel.cancel()
        raise
    if generation is None or generation.stop_reason == "cancelled":
        return None
    return _finish(prepared, generation, cache)


def _log_stop(uri: str, cancel: CancelToken, done: Future[Generation | None]) -> None:
    """Say when a cancelled or superseded request's model work actually stopped."""
    if cancel.cancelled_at is None or done.cancelled() or done.exception() is not None:
        return
    generation = done.result()
    after = (time.monotonic() - cancel.cancelled_at) * 1000
    reason = generation.stop_reason if generation is not None else "not started"
    log.debug("completion for %s cancelled: model stopped (%s) %.0f ms after the cancel",
              uri, reason, after)
