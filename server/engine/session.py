"""One persistent llama.cpp context over a (shared) model: KV-prefix reuse and cancellation.

The context remembers which tokens its KV cache holds; a new prompt only evaluates what
follows the longest common prefix, so prompts whose front stays stable between keystrokes
cost a few tokens. A CancelToken stops generation between tokens and, through llama.cpp's
abort callback, in the middle of prompt processing. The adapter key is part of the KV key:
a prefix computed under another LoRA set is never reused.
"""

from __future__ import annotations

import codecs
import logging
import threading
import time
from typing import Any

import numpy as np

from server.engine import cpu, warm
from server.engine.llama_model import LoadedModel, llama
from server.engine.lora import ContextAdapters
from server.engine.types import (
    FIRST_TOKEN_CHOICES,
    CancelToken,
    FimTokens,
    FirstTokenCheck,
    GenerateParams,
    Generation,
    PromptProgress,
    StopCheck,
    StopReason,
)

log = logging.getLogger(__name__)

_ABORTED = 2  # llama_decode's return code when the abort callback stopped it


class LlamaSession:
    """The in-process TextEngine (server.engine.types): one context over a model."""

    def __init__(
        self,
        model: LoadedModel,
        n_ctx: int,
        n_batch: int,
        n_threads: int,
        swa_full: bool = True,
        n_threads_batch: int | None = None,
        adaptive_threads: bool = False,
    ) -> None:
        lib = llama()
        self.model = model
        params = lib.llama_context_default_params()
        params.n_ctx = n_ctx
        params.n_batch = n_batch
        # One ubatch per decode call: an aborted call then leaves exactly the tokens of the
        # earlier calls in the KV cache.
        params.n_ubatch = n_batch
        # Generation (one token at a time) and prompt processing (batches) may use different
        # thread counts; see CpuSettings.generation_threads.
        params.n_threads = n_threads
        params.n_threads_batch = n_threads_batch or n_threads
        # `adaptive_threads`: generate on the cores the rest of the machine leaves free, between
        # n_threads and n_threads_batch (server.engine.cpu), chosen once the prompt is read.
        self.n_threads, self.n_threads_batch = n_threads, params.n_threads_batch
        self._threads_now = n_threads
        self._meter = cpu.CpuMeter() if adaptive_threads else None
        # A full-size sliding-window cache lets a prefix be kept while the rest is replaced
        # (Gemma 3); without it, reuse of partial prefixes fails on SWA models.
        params.swa_full = swa_full
        # Only the last token's logits are ever read. The default (one output per batch
        # token) reserves n_batch x n_vocab floats: 512 MiB for Gemma's 262k vocabulary.
        params.n_outputs_max = 1
        params.no_perf = True
        ctx = lib.llama_init_from_model(model.ptr, params)
        if not ctx:
            raise RuntimeError(f"{model.path}: llama.cpp could not create a context ({n_ctx=})")
        self.ctx = ctx
        self.n_ctx = lib.llama_n_ctx(ctx)
        self.n_batch = n_batch
        self.memory = lib.llama_get_memory(ctx)
        self.batch = lib.llama_batch_init(n_batch, 0, 1)
        # Tokens held by the KV cache for sequence 0, and the adapter key they were computed under.
        self.tokens: list[int] = []
        self.kv_key = ""
        self._cancel: CancelToken | None = None
        self._lock = threading.Lock()
        # Applies each request's LoRA set and keeps per-set KV snapshots (server.engine.lora).
        self.adapters = ContextAdapters(self, model.adapters, self._lock)

        def _should_abort(_data: Any) -> bool:
            cancel = self._cancel
            if cancel is None:
                return False
            return cancel.should_stop()

        self._abort = lib.ggml_abort_callback(_should_abort)
        lib.llama_set_abort_callback(ctx, self._abort, None)

    @property
    def model_id(self) -> str:
        return self.model.model_id

    @property
    def fim(self) -> FimTokens | None:
        return self.model.fim

    # --- KV cache ----------------------------------------------------------------------

    def reset(self) -> None:
        llama().llama_memory_clear(self.memory, True)
        self.tokens = []

    def _keep_prefix(self, n: int) -> int:
        """Drop KV entries from position n on; returns how many tokens remain."""
        if n >= len(self.tokens):
            return len(self.tokens)
        if n > 0 and llama().llama_memory_seq_rm(self.memory, 0, n, -1):
            del self.tokens[n:]
            return n
        self.reset()
        return 0

    def _decode(self, tokens: list[int], progress: PromptProgress | None = None) -> int:
        """Decode tokens at the end of the KV cache, one batch per call; 0 on success.
        `progress` hears (tokens in the cache, tokens when done) before each batch."""
        lib = llama()
        batch = self.batch
        total = len(self.tokens) + len(tokens)
        for start in range(0, len(tokens), self.n_batch):
            if progress is not None:
                progress(len(self.tokens), total)
            part = tokens[start : start + self.n_batch]
            pos0 = len(self.tokens)
            batch.n_tokens = len(part)
            for i, token in enumerate(part):
                batch.token[i] = token
                batch.pos[i] = pos0 + i
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = 0
                batch.logits[i] = False
            batch.logits[len(part) - 1] = True
            rc = lib.llama_decode(self.ctx, batch)
            if rc != 0:
                # llama.cpp removed the failed ubatch's positions; make sure, and forget them.
                lib.llama_memory_seq_rm(self.memory, 0, pos0, -1)
                return int(rc)
            self.tokens.extend(part)
        return 0

    # --- generation --------------------------------------------------------------------

    def generate(
        self,
        prompt: str,
        params: GenerateParams,
        cancel: CancelToken,
        stop_check: StopCheck | None = None,
    ) -> Generation:
        with self._lock:
            self._cancel = cancel
            try:
                with cpu.Active():
                    return self._generate(prompt, params, cancel, stop_check)
            finally:
                self._cancel = None

    def _prepare(self, prompt: str, params: GenerateParams) -> tuple[list[int], int, int]:
        """The prompt's tokens, how many of them the KV cache already holds, and how many of
        those came back from a kept snapshot."""
        tokens = self.model.tokenize(prompt, self.model.add_bos, params.parse_special)
        if not tokens:
            return [], 0, 0
        room = max(self.n_ctx - params.max_tokens - 1, 1)
        if len(tokens) > room:
            # Keep the end of the prompt (the text at the cursor); keep BOS if there is one.
            head = tokens[:1] if self.model.add_bos else []
            tokens = head + tokens[len(tokens) - room + len(head) :]
        # Sets the adapters and resets (or restores) the KV cache when the set or the slot
        # changed: prompt states are kept per (slot, adapter set) (server.engine.warm).
        snapshots = self.adapters.snapshots
        warm.configure(snapshots, params.warm_slots, params.warm_bytes)
        restores = snapshots.restores
        self.adapters.prepare(params.adapters, warm.kv_key(params.cache_slot, params.adapter_key))
        restored = len(self.tokens) if snapshots.restores != restores else 0
        common = 0
        for cached, new in zip(self.tokens, tokens, strict=False):
            if cached != new:
                break
            common += 1
        # At least one prompt token must be decoded again for fresh logits.
        reused = self._keep_prefix(min(common, len(tokens) - 1))
        return tokens, reused, min(restored, reused)

    def _generate(
        self,
        prompt: str,
        params: GenerateParams,
        cancel: CancelToken,
        stop_check: StopCheck | None,
    ) -> Generation:
        started = time.monotonic()
        if self._meter is not None:
            self._meter.others_busy()  # the window over the prompt starts here
        tokens, reused, restored = self._prepare(prompt, params)

        def result(
            reason: StopReason, text: str = "", n: int = 0, error: str | None = None
        ) -> Generation:
            prompt_ms = ((prompt_done or time.monotonic()) - started) * 1000
            return Generation(
                text,
                reason,
                prompt_tokens=len(tokens),
                reused_tokens=reused,
                restored_tokens=restored,
                generated_tokens=n,
                generation_threads=self._threads_now if n else 0,
                prompt_ms=prompt_ms,
                generate_ms=(time.monotonic() - prompt_done) * 1000 if prompt_done else 0.0,
                error=error,
            )

        prompt_done = 0.0
        if not tokens:
            return result("error", error="empty prompt")
        if cancel.should_stop():
            return result(_why(cancel))
        rc = self._decode(tokens[reused:], params.on_prompt)
        if params.on_prompt is not None and rc == 0:
            params.on_prompt(len(tokens), len(tokens))
        if rc == _ABORTED:
            return result(_why(cancel))
        if cancel.should_stop():
            return result(_why(cancel))  # the prompt is in the cache
        if rc != 0:
            self.reset()
            return result("error", error=f"llama_decode returned {rc}")
        prompt_done = time.monotonic()
        self._choose_threads()
        # The generation cap counts from here: the wait for the prompt is never cut by it.
        cancel.limit(params.max_generate_s)
        text, n_generated, reason = self._sample_loop(params, cancel, stop_check)
        return result(reason, text, n_generated)

    def _choose_threads(self) -> None:
        """Before each token: the free cores now (a reasoner's long generation must drop to
        the floor as soon as the coder starts beside it: two threads each on 2 cores made
        tokens take seconds)."""
        if self._meter is None:
            return
        n = cpu.generation_threads(self.n_threads, self.n_threads_batch, self._meter.others_busy())
        if n != self._threads_now:
            llama().llama_set_n_threads(self.ctx, n, self.n_threads_batch)
            self._threads_now = n

    def _first_token(self, token: int, may_start: FirstTokenCheck) -> int:
        """`token`, or the likeliest of the top choices that `may_start` accepts."""
        if may_start(self._piece_text(token)):
            return token
        logits = llama().llama_get_logits_ith(self.ctx, -1)
        scores = np.ctypeslib.as_array(logits, shape=(self.model.n_vocab,))
        for choice in np.argsort(-scores)[:FIRST_TOKEN_CHOICES]:
            if may_start(self._piece_text(int(choice))):
                return int(choice)
        return token

    def _piece_text(self, token: int) -> str:
        if self.model.is_eog(token):
            return ""
        return self.model.piece(token).decode("utf-8", errors="replace")

    def _sample_loop(
        self, params: GenerateParams, cancel: CancelToken, stop_check: StopCheck | None
    ) -> tuple[str, int, StopReason]:
        lib = llama()
        sampler = _make_sampler(params)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        text = ""
        n_generated = 0
        try:
            while n_generated < params.max_tokens:
                if cancel.should_stop():
                    return text, n_generated, _why(cancel)
                self._choose_threads()
                token = lib.llama_sampler_sample(sampler, self.ctx, -1)
                if n_generated == 0 and params.first_token is not None:
                    token = self._first_token(token, params.first_token)
                if self.model.is_eog(token):
                    return text, n_generated, "eos"
                n_generated += 1
                text += decoder.decode(self.model.piece(token))
                cut = _stop_index(text, params.stop, stop_check)
                if cut is not None:
                    return text[:cut], n_generated, "stop"
                if len(self.tokens) >= self.n_ctx:
                    return text, n_generated, "length"
                if n_generated < params.max_tokens:
                    rc = self._decode([token])
                    if rc == _ABORTED:
                        return text, n_generated, _why(cancel)
                    if rc != 0:
                        self.reset()
                        return text, n_generated, "error"
            return text, n_generated, "length"
        finally:
            lib.llama_sampler_free(sampler)

    def close(self) -> None:
        with self._lock:
            if self.ctx is not None:
                self.adapters.close()
                lib = llama()
                lib.llama_batch_free(self.batch)
                lib.llama_free(self.ctx)
                self.ctx = None


def _why(cancel: CancelToken) -> StopReason:
    return "cancelled" if cancel.cancelled else "budget"


def _stop_index(text: str, stop: tuple[str, ...], stop_check: StopCheck | None) -> int | None:
    found = [index for s in stop if s and (index := text.find(s)) >= 0]
    if stop_check is not None:
        checked = stop_check(text)
        if checked is not None:
            found.append(checked)
    return min(found) if found else None


def _make_sampler(params: GenerateParams) -> Any:
    lib = llama()
    chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
    if params.temperature <= 0:
        lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_greedy())
    else:
        lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_top_k(params.top_k))
        lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_top_p(params.top_p, 1))
        lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_temp(params.temperature))
        lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_dist(params.seed))
    return chain
