"""The engine's small interface, shared by the in-process llama.cpp engine and any remote one.

Features never touch llama.cpp: they hand a prompt and GenerateParams to a TextEngine on its
worker and get a Generation back.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

StopReason = Literal["eos", "stop", "length", "budget", "cancelled", "error"]
Role = Literal["coder", "reasoner"]
ROLES: tuple[Role, ...] = ("coder", "reasoner")

# Called with the text generated so far; returns an index to cut it at and stop, or None.
StopCheck = Callable[[str], int | None]


@dataclass(frozen=True)
class FimTokens:
    """The texts of a model's own fill-in-the-middle tokens."""

    prefix: str
    suffix: str
    middle: str
    # Repository-level context tokens (Qwen2.5-Coder `<|repo_name|>`, `<|file_sep|>`;
    # StarCoder `<reponame>`, `<file_sep>`); "" when the model has none.
    repo_name: str = ""
    file_sep: str = ""


@dataclass(frozen=True)
class GenerateParams:
    max_tokens: int = 64
    # 0 decodes greedily: the same context gives the same suggestion.
    temperature: float = 0.0
    top_p: float = 0.95
    top_k: int = 40
    seed: int = 0
    stop: tuple[str, ...] = ()
    # Wall-clock budget for prompt processing and generation together; None is unlimited.
    budget_s: float | None = None
    # Identifies the active LoRA adapter set (with scales). Part of every KV-cache key:
    # a prefix computed under another adapter set is never reused.
    adapter_key: str = ""
    # The LoRA adapters to apply, as (name, scale) pairs. Names are resolved to the adapters
    # loaded into the model on the worker, right before the prompt is evaluated (a name not
    # loaded is skipped); the resolved set is part of the context's KV key.
    adapters: tuple[tuple[str, float], ...] = ()
    # Parse special-token texts (FIM markers, chat markers) in the prompt as tokens.
    parse_special: bool = True
    # When the budget runs out during prompt processing, finish the prompt anyway (and then
    # stop): the KV cache is warm for the next request. Completions want this; the caller
    # stops waiting at the budget. A cancel still stops the prompt mid-batch.
    warm_past_budget: bool = False


@dataclass(frozen=True)
class Generation:
    text: str
    stop_reason: StopReason
    prompt_tokens: int = 0
    # Prompt tokens whose KV state was reused from the previous request on this context.
    reused_tokens: int = 0
    generated_tokens: int = 0
    prompt_ms: float = 0.0
    generate_ms: float = 0.0
    error: str | None = None


class CancelToken:
    """A cooperative stop flag with an optional deadline, checked by the decode loop between
    tokens and by llama.cpp's abort callback in the middle of prompt processing."""

    def __init__(self, budget_s: float | None = None) -> None:
        self._event = threading.Event()
        self.deadline = time.monotonic() + budget_s if budget_s is not None else None
        self.cancelled_at: float | None = None

    def cancel(self) -> None:
        if not self._event.is_set():
            self.cancelled_at = time.monotonic()
            self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    @property
    def expired(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def should_stop(self) -> bool:
        return self._event.is_set() or self.expired

    def set_budget(self, budget_s: float | None) -> None:
        self.deadline = time.monotonic() + budget_s if budget_s is not None else None


class TextEngine(Protocol):
    """A model that turns a prompt into text. `generate` blocks: run it on a worker."""

    @property
    def model_id(self) -> str: ...

    @property
    def fim(self) -> FimTokens | None: ...

    def generate(
        self,
        prompt: str,
        params: GenerateParams,
        cancel: CancelToken,
        stop_check: StopCheck | None = None,
    ) -> Generation: ...
