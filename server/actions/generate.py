"""Long generations that give way to completions.

Explanations run for many seconds; completions must never wait behind them. The machine has
few cores, so running both at once would slow the completion down as much as waiting. A long
generation therefore pauses whenever the gate says a completion is queued or running: its
CancelToken reports "stop" (between tokens, or through llama.cpp's abort callback in the middle
of prompt processing), the text so far is kept, and once the gate is clear generation resumes
with the prompt plus that text. The context's KV-prefix reuse makes resuming cost a few tokens.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from server.engine.types import CancelToken, GenerateParams, Generation, StopCheck, TextEngine

# True while something more urgent (a completion) waits for or uses the CPU.
Gate = Callable[[], bool]
# Called with the number of tokens generated so far and the text so far.
OnTokens = Callable[[int, str], None]

_GATE_POLL_S = 0.01


def never_busy() -> bool:
    return False


class YieldingToken(CancelToken):
    """Stops the engine when the real token stops or the gate closes."""

    def __init__(self, outer: CancelToken, gate: Gate) -> None:
        super().__init__()
        self.outer = outer
        self.gate = gate

    def cancel(self) -> None:
        self.outer.cancel()

    @property
    def cancelled(self) -> bool:
        return self.outer.cancelled

    def should_stop(self) -> bool:
        return self.outer.should_stop() or self.gate()


@dataclass(frozen=True)
class LongGeneration:
    generation: Generation
    # How many times a completion made this generation pause.
    pauses: int = 0
    seconds: float = 0.0

    @property
    def tokens_per_second(self) -> float:
        ms = self.generation.generate_ms
        return self.generation.generated_tokens * 1000 / ms if ms > 0 else 0.0


def generate_yielding(
    engine: TextEngine,
    prompt: str,
    params: GenerateParams,
    cancel: CancelToken,
    gate: Gate = never_busy,
    on_tokens: OnTokens | None = None,
    stop_check: StopCheck | None = None,
) -> LongGeneration:
    """Generate up to `params.max_tokens`, pausing while `gate()` is true. Stop strings and
    `stop_check` see the whole text, across pauses."""
    started = time.monotonic()
    text = ""
    tokens = 0
    pauses = 0
    prompt_tokens = 0
    prompt_ms = generate_ms = 0.0
    stops = params.stop
    base = replace(params, stop=())

    cut_at: int | None = None

    def check(local: str) -> int | None:
        nonlocal tokens, cut_at
        tokens += 1
        whole = text + local
        if on_tokens is not None:
            on_tokens(tokens, whole)
        # A stop string may straddle a pause: search from a little before the seam.
        cuts = [i for s in stops if s and (i := whole.find(s, max(0, len(text) - len(s)))) >= 0]
        if stop_check is not None and (cut := stop_check(whole)) is not None:
            cuts.append(cut)
        if not cuts:
            return None
        cut_at = min(cuts)
        return max(0, cut_at - len(text))

    while True:
        while gate() and not cancel.should_stop():
            time.sleep(_GATE_POLL_S)
        if cancel.should_stop():
            reason = "cancelled" if cancel.cancelled else "budget"
            return _done(
                text, reason, tokens, prompt_tokens, prompt_ms, generate_ms, pauses, started
            )
        before = tokens
        g = engine.generate(
            prompt + text,
            replace(base, max_tokens=max(1, params.max_tokens - tokens)),
            YieldingToken(cancel, gate),
            check,
        )
        # `tokens` counted every sampled token; the engine's count is the truth.
        tokens = before + g.generated_tokens
        text = (text + g.text)[:cut_at] if cut_at is not None else text + g.text
        prompt_tokens = prompt_tokens or g.prompt_tokens
        prompt_ms += g.prompt_ms
        generate_ms += g.generate_ms
        paused = g.stop_reason in ("cancelled", "budget") and not cancel.should_stop()
        if paused and tokens < params.max_tokens:
            pauses += 1
            continue
        reason = g.stop_reason
        if paused:
            reason = "length"
        return _done(
            text, reason, tokens, prompt_tokens, prompt_ms, generate_ms, pauses, started, g.error
        )


def _done(
    text: str,
    reason: str,
    tokens: int,
    prompt_tokens: int,
    prompt_ms: float,
    generate_ms: float,
    pauses: int,
    started: float,
    error: str | None = None,
) -> LongGeneration:
    generation = Generation(
        text,
        reason,  # type: ignore[arg-type]
        prompt_tokens=prompt_tokens,
        generated_tokens=tokens,
        prompt_ms=prompt_ms,
        generate_ms=generate_ms,
        error=error,
    )
    return LongGeneration(generation, pauses, time.monotonic() - started)
