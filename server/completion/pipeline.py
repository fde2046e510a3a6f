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
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace

from server.completion.cache import CacheKey, SuggestionCache
from server.completion.context import ContextProvider, build_context
from server.completion.filters import (
    apply_filters,
    broken_at_cursor,
    came_to_nothing,
    closed_answer,
    dropped_for_syntax,
    keep_balanced,
)
from server.completion.lexical import CLOSERS, Scanner
from server.completion.prompt import build_prompt
from server.completion.types import CompletionRequest, CursorContext, Prompt, Suggestion
from server.config import CompletionConfig, RetrievalConfig, Settings
from server.engine.types import (
    CancelToken,
    FirstTokenCheck,
    GenerateParams,
    Generation,
    PromptProgress,
    StopCheck,
    TextEngine,
)
from server.engine.warm import MB
from server.engine.worker import InferenceWorker, Remembered

log = logging.getLogger(__name__)
PROMPT_MARK = "<<<prompt>>>"
# Where the event loop builds contexts: never on the loop itself, which must go on answering
# hovers and definitions while a retrieval query is embedded.
_CONTEXT_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="completion-context")


_CONFIG = CompletionConfig()  # the defaults below are the `completion` settings' defaults
# Project context takes about 4 characters a token: the character cap of the retrieval budget.
CONTEXT_CHARS_PER_TOKEN = 4


@dataclass(frozen=True)
class CompletionOptions:
    # Cap on generation once the prompt is read (None: unlimited); never on the prompt.
    max_generate_ms: int | None = _CONFIG.max_generate_ms
    max_tokens_line: int = _CONFIG.max_tokens_line
    max_tokens_block: int = _CONFIG.max_tokens_block
    temperature: float = _CONFIG.temperature
    prefix_chars: int = 3000
    suffix_chars: int = 600
    # The retrieval budget in characters, as from_settings makes it.
    context_chars: int = RetrievalConfig().context_tokens * CONTEXT_CHARS_PER_TOKEN
    repository_layout: bool = True
    # Suggestions kept for typing through, and generations kept for repeated prompts.
    cache_size: int = _CONFIG.cache_size
    # The active LoRA adapter set; part of every cache key.
    adapter_key: str = ""
    # That set as (name, scale) pairs, applied to the context for this request.
    adapters: tuple[tuple[str, float], ...] = ()
    # Prompt states of other documents the engine keeps (None: the engine's own choice).
    warm_documents: int | None = None
    warm_bytes: int | None = None

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        adapter_key: str = "",
        adapters: tuple[tuple[str, float], ...] = (),
        invoked: bool = False,
    ) -> CompletionOptions:
        """The options of a request; `invoked` (the user asked explicitly) allows a longer
        generation than an automatic trigger."""
        c = settings.completion
        return cls(
            max_generate_ms=c.max_generate_ms_invoked if invoked else c.max_generate_ms,
            warm_documents=c.warm_documents,
            warm_bytes=c.warm_memory_mb * MB,
            max_tokens_line=c.max_tokens_line,
            max_tokens_block=c.max_tokens_block,
            temperature=c.temperature,
            prefix_chars=c.prefix_chars,
            suffix_chars=c.suffix_chars,
            context_chars=settings.retrieval.context_tokens * CONTEXT_CHARS_PER_TOKEN,
            repository_layout=c.repository_layout,
            cache_size=c.cache_size,
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
    ahead: bool = False,
) -> Prepared | Suggestion:
    """Context and prompt stages; a Suggestion straight away when the user types through the
    last one, or when there is no method to complete. `ahead`: for a suggestion computed
    before anyone asks (said in the prompt's log record)."""
    started = time.monotonic()
    typed = typed_through(request, engine, options, cache, started)
    if typed is not None:
        return typed
    return assemble(request, engine, providers, options, started, ahead)


def typed_through(
    request: CompletionRequest,
    engine: TextEngine,
    options: CompletionOptions,
    cache: SuggestionCache,
    started: float,
) -> Suggestion | None:
    """The rest of a shown suggestion the user is typing through, or None."""
    key = CacheKey(request.uri, engine.model_id, options.adapter_key)
    rest = cache.typed_through(key, request.text, request.offset)
    if rest is None:
        return None
    cache.remember(key, request.text, request.offset, rest)
    return Suggestion(rest, "line", source="typed-through", timings=_since(started))


def assemble(
    request: CompletionRequest,
    engine: TextEngine,
    providers: Sequence[ContextProvider],
    options: CompletionOptions,
    started: float,
    ahead: bool = False,
) -> Prepared | Suggestion:
    """The context and the prompt: reads the project and may embed a retrieval query (seconds
    on a busy CPU), so the event loop runs it on a thread. Touches no cache."""
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
        max_generate_s=None if options.max_generate_ms is None else options.max_generate_ms / 1000,
        adapter_key=options.adapter_key,
        adapters=options.adapters,
        cache_slot=request.uri,
        warm_slots=options.warm_documents,
        warm_bytes=options.warm_bytes,
        first_token=first_token_check_for(ctx, prompt.stop),
    )
    key = CacheKey(request.uri, engine.model_id, options.adapter_key)
    # The whole prompt, for debugging suggestions (and for bench_completion, which sends the
    # very same prompt to llama-cpp-python).
    log.debug("prompt for %s (%s mode%s):\n%s%s", request.uri, prompt.mode,
              ", computed ahead" if ahead else "", PROMPT_MARK, prompt.text)
    return Prepared(ctx, prompt, params, key, started)


def work_tag(engine: TextEngine, prepared: Prepared) -> tuple[object, ...]:
    """What decides the generated text: the model, the prompt and the settings, not the
    generation cap nor whose prompt state the engine keeps (the worker's `job` tag)."""
    params = replace(prepared.params, max_generate_s=None, cache_slot="", warm_slots=None,
                     warm_bytes=None)
    return (engine.model_id, prepared.prompt.text, params)


def reuse_count(options: CompletionOptions) -> int:
    """How many finished generations to keep for repeated prompts: greedy decoding only (the
    same prompt then gives the same text)."""
    return options.cache_size if options.temperature == 0 else 0


# How many answers one request may generate: the first, and others from other first pieces
# while every earlier one came to nothing (each costs only its generation: the prompt's KV
# state stays).
TRIES = 3


def generate(
    engine: TextEngine, prompt: str, params: GenerateParams, cancel: CancelToken,
    ctx: CursorContext,
) -> Generation:
    """The engine call, and again from another first piece while the answer comes to nothing
    where something is wanted (`worth_another_try`): the model's likeliest start led nowhere
    that parses (a keyword where an argument goes, a comment closed before its end), or only
    to whitespace on a line that needs code. Every try bans the starts of the tries before it,
    within what is left of the generation cap. When none comes to anything, the likeliest try
    that parses with its open brackets closed is the answer (`_closed_try`)."""
    first = engine.generate(prompt, params, cancel, stop_check_for(ctx))
    if first.stop_reason in ("cancelled", "error"):
        return first
    may_start = params.first_token
    failed: list[str] = []
    result = first
    generated, generate_ms = first.generated_tokens, first.generate_ms
    cap = params.max_generate_s
    while len(failed) + 1 < TRIES and worth_another_try(result.text, ctx):
        left = None if cap is None else cap - generate_ms / 1000
        if left is not None and left <= 0:
            break
        failed.append(result.text)
        log.debug("%r came to nothing (%s after %d tokens): generating again from another "
                  "first piece", result.text, result.stop_reason, result.generated_tokens)
        again = engine.generate(
            prompt, replace(params, first_token=_another_start(failed, may_start),
                            max_generate_s=left),
            cancel, stop_check_for(ctx),
        )
        if again.stop_reason in ("cancelled", "error"):
            break
        result = again
        generated += again.generated_tokens
        generate_ms += again.generate_ms + again.prompt_ms
    if worth_another_try(result.text, ctx):
        result = _closed_try([*failed, result.text], result, ctx)
    if result is first:
        return first
    return replace(
        result,
        prompt_tokens=first.prompt_tokens,
        reused_tokens=first.reused_tokens,
        restored_tokens=first.restored_tokens,
        generated_tokens=generated,
        prompt_ms=first.prompt_ms,
        generate_ms=generate_ms,
    )


def _closed_try(tries: Sequence[str], last: Generation, ctx: CursorContext) -> Generation:
    """After the last try, the likeliest one (the earliest) that parses once the brackets it
    left open are closed (filters.closed_answer): the model began the right keyword part and
    ended the line after its `[`. Else the last try as it is."""
    for text in tries:
        closed = closed_answer(text, ctx)
        if closed is not None:
            log.debug("no try parses: %r with its brackets closed, %r", text, closed)
            return replace(last, text=closed)
    return last


def worth_another_try(text: str, ctx: CursorContext) -> bool:
    """Whether an answer that the filters drop whole should be generated again: when only its
    syntax failed (filters.dropped_for_syntax), or when it came to nothing (whitespace, a
    closer of the method) where code is wanted (`code_wanted`: a blank line, a space typed
    after code, a method broken at the cursor). Not outside a method, and not for an answer
    that repeats the text after the cursor: there nothing may be the right answer."""
    if ctx.method is None or (apply_filters(text, ctx) or "").strip():
        return False
    return dropped_for_syntax(text, ctx) or (came_to_nothing(text, ctx) and code_wanted(ctx))


def _another_start(failed: Sequence[str], may_start: FirstTokenCheck | None) -> FirstTokenCheck:
    """A first-piece check that refuses the start of every failed answer, with or without the
    whitespace before it; after one that began with whitespace, any whitespace alone (the
    model otherwise only changes the indentation: 13 spaces, then 16, before the same
    `ifAbsentPut: [`). A piece that is a whole failed answer with other whitespace around it
    is refused too (`"` then `"\n`: the same lone comment quote three times)."""

    def check(piece: str) -> bool:
        word = piece.lstrip()
        for text in failed:
            if (word and text.lstrip().startswith(word)) or (piece and text.startswith(piece)):
                return False
            if word and word.rstrip() == text.strip():
                return False
            if piece and not word and text[:1].isspace():
                return False
            if not piece and not text:  # stopping at once failed already
                return False
        return may_start is None or may_start(piece)

    return check


def stop_check_for(ctx: CursorContext) -> StopCheck:
    """Stop generating as soon as the filters would cut anyway: at the method's end and at a
    chunk's `!` (line ends are a plain stop string)."""
    scanners: list[Scanner] = []  # made on the engine's thread, at the first token

    def check(text: str) -> int | None:
        if not scanners:
            scanners.append(Scanner(ctx.scan))
        scanner = scanners[0]
        # The scanner counts offsets over everything fed so far, which is `text` itself.
        for event in scanner.feed(text[scanner.offset :]):
            if event.kind == "bad-close" or (event.kind == "bang" and ctx.in_chunk_file):
                return event.offset
        return None

    return check


def first_token_check_for(ctx: CursorContext, stop: Sequence[str] = ()) -> FirstTokenCheck:
    """Which first pieces of a generation could lead to a suggestion (the engine takes the
    likeliest of those): not a closer the filters would cut (the model closing the block on
    an empty line), and not stopping at once where code is wanted (a blank line, a method
    broken at the cursor: something is missing there, or a space typed after code at the
    line's end: the user goes on), whether by the end of generation or
    by a piece that reaches a `stop` string with nothing before it (the line end in line
    mode); and not a colon where an argument goes. Worked out on the engine's thread."""
    wanted: list[bool] = []

    def may_start(piece: str) -> bool:
        cuts = [at for s in stop if s and (at := piece.find(s)) >= 0]
        if cuts and not piece[: min(cuts)].strip():
            piece = ""
        if not piece:
            if not wanted:
                wanted.append(code_wanted(ctx))
            return not wanted[0]
        start = piece.lstrip()[:1]
        if start in CLOSERS:
            return bool((keep_balanced(piece, ctx) or "").strip())
        # After a keyword part or `:=` comes an argument, never a colon (the model repeating
        # the colon of a prompt that ends in "with: ").
        return not (start == ":" and ctx.line_prefix.rstrip().endswith(":"))

    return may_start


def code_wanted(ctx: CursorContext) -> bool:
    """Whether stopping at once is no answer at the cursor: a blank line, a space typed after
    code at the line's end, or a method broken where the cursor is (something is missing)."""
    blank = not (ctx.line_prefix + ctx.line_suffix).strip()
    return blank or _space_typed_after_code(ctx) or broken_at_cursor(ctx)


def _space_typed_after_code(ctx: CursorContext) -> bool:
    """The line so far is code followed by a space (or tab) and nothing comes after the
    cursor on the line: whoever typed that space means to write more."""
    typed = ctx.line_prefix
    return typed[-1:] in (" ", "\t") and bool(typed.strip()) and not ctx.line_suffix.strip()


def _finish(
    prepared: Prepared,
    generation: Generation,
    cache: SuggestionCache,
    reused: bool = False,
    remember: bool = True,
) -> Suggestion:
    """Filters, then (`remember`) the suggestion shown, for typing through it. `reused`: the
    generation is a remembered one of the same prompt (source "cache": nothing ran now)."""
    ctx, prompt = prepared.ctx, prepared.prompt
    if reused:
        generation = Generation(generation.text, generation.stop_reason)
    text = apply_filters(generation.text, ctx) or ""
    if text:
        text = ctx.lead + text
    if text and remember:
        cache.remember(prepared.key, *ctx.document, text)
    timings = _since(prepared.started)
    timings.update(prompt_ms=generation.prompt_ms, generate_ms=generation.generate_ms)
    return Suggestion(
        text,
        prompt.mode,
        raw=generation.text,
        source="cache" if reused else "model",
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
    remembered: Remembered | None = None,
) -> Suggestion:
    """The whole pipeline in the calling thread (blocks while the model generates);
    `remembered` answers a repeated prompt as the worker's jobs do (greedy decoding only)."""
    options = options or CompletionOptions()
    cache = cache or SuggestionCache()
    prepared = prepare(request, engine, providers, options, cache)
    if isinstance(prepared, Suggestion):
        return prepared
    tag, reuse = work_tag(engine, prepared), reuse_count(options)
    found = remembered.get(tag) if remembered is not None and reuse else None
    if found is not None:
        return _finish(prepared, found, cache, reused=True)
    cancel = cancel or CancelToken()
    generation = generate(engine, prepared.prompt.text, prepared.params, cancel, prepared.ctx)
    if remembered is not None and reuse:
        remembered.keep(tag, generation)
    return _finish(prepared, generation, cache)


async def complete_async(
    request: CompletionRequest,
    engine: TextEngine,
    worker: InferenceWorker,
    providers: Sequence[ContextProvider] = (),
    options: CompletionOptions | None = None,
    cache: SuggestionCache | None = None,
    on_prompt: PromptProgress | None = None,
    ahead: bool = False,
) -> Suggestion | None:
    """The pipeline for the event loop: generation on the worker, keyed by document.

    It waits as long as the suggestion takes: only a newer request for the same document
    (None), `$/cancelRequest` (CancelledError) or closing the document (None) end it early.
    A request whose prompt is already being worked on for the document (a prefetch after an
    accepted suggestion, a repeated request) joins that work instead of starting it again,
    and one whose prompt was answered before gets that answer (the worker's `job`).
    `ahead`: a suggestion computed before anyone asks (after the one just shown, as if it were
    accepted): any other work cancels it, and its answer is only remembered for the prompt."""
    options = options or CompletionOptions()
    cache = cache or SuggestionCache()
    started = time.monotonic()
    typed = typed_through(request, engine, options, cache, started)
    if typed is not None:
        return typed
    # One thread, first come first served: an older request of a document finishes its
    # context before a newer one, so the newer one's job is the one that supersedes.
    assembled = await asyncio.get_running_loop().run_in_executor(
        _CONTEXT_THREAD, assemble, request, engine, providers, options, started, ahead
    )
    if isinstance(assembled, Suggestion):
        return assembled
    prepared = assembled
    params = replace(prepared.params, on_prompt=on_prompt)

    def run(cancel: CancelToken) -> Generation:
        return generate(engine, prepared.prompt.text, params, cancel, prepared.ctx)

    job = worker.job(run, request.uri, work_tag(engine, prepared), background=ahead,
                     reuse=reuse_count(options))
    if job.fn is run and not job.reused:  # submitted now, not joined or remembered
        job.future.add_done_callback(lambda done: _log_stop(request.uri, job.cancel, done))
    try:
        generation = await asyncio.shield(asyncio.wrap_future(job.future))
    except asyncio.CancelledError:
        # $/cancelRequest: stop the model too, not just this coroutine.
        job.cancel.cancel()
        raise
    if generation is None or generation.stop_reason == "cancelled":
        return None
    return _finish(prepared, generation, cache, reused=job.reused, remember=not ahead)


def _log_stop(uri: str, cancel: CancelToken, done: Future[Generation | None]) -> None:
    """Say when a cancelled or superseded request's model work actually stopped."""
    if cancel.cancelled_at is None or done.cancelled() or done.exception() is not None:
        return
    generation = done.result()
    after = (time.monotonic() - cancel.cancelled_at) * 1000
    reason = generation.stop_reason if generation is not None else "not started"
    log.debug("completion for %s cancelled: model stopped (%s) %.0f ms after the cancel",
              uri, reason, after)
