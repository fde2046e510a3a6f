"""The engine's small interface, shared by the in-process llama.cpp engine and any remote one.

Features never touch llama.cpp: they hand a prompt and GenerateParams to a TextEngine on its
worker and get a Generation back.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

StopReason = Literal["eos", "stop", "length", "budget", "cancelled", "error"]
Role = Literal["coder", "reasoner"]
ROLES: tuple[Role, ...] = ("coder", "reasoner")

# Called with the text generated so far; returns an index to cut it at and stop, or None.
StopCheck = Callable[[str], int | None]
# Called while a prompt is evaluated: (prompt tokens in the KV cache so far, prompt tokens).
PromptProgress = Callable[[int, int], None]


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


FirstTokenCheck = Callable[[str], bool]
FIRST_TOKEN_CHOICES = 40


@dataclass(frozen=True)
class GenerateParams:
    max_tokens: int = 64
    # 0 decodes greedily: the same context gives the same suggestion.
    temperature: float = 0.0
    top_p: float = 0.95
    top_k: int = 40
    seed: int = 0
    stop: tuple[str, ...] = ()
    # Longest generation once the prompt is read (llama.vscode's t_max_predict_ms): then it
    # stops with what is there (stop reason "budget"). The prompt itself is never cut by it.
    # None is unlimited. (A CancelToken's own deadline still counts from the request.)
    max_generate_s: float | None = None
    # Identifies the active LoRA adapter set (with scales). Part of every KV-cache key:
    # a prefix computed under another adapter set is never reused.
    adapter_key: str = ""
    # The LoRA adapters to apply, as (name, scale) pairs. Names are resolved to the adapters
    # loaded into the model on the worker, right before the prompt is evaluated (a name not
    # loaded is skipped); the resolved set is part of the context's KV key.
    adapters: tuple[tuple[str, float], ...] = ()
    # Parse special-token texts (FIM markers, chat markers) in the prompt as tokens.
    parse_special: bool = True
    # Whose prompt state this is (a document URI for completions): the engine keeps the KV
    # state of recently used slots, so coming back to one reuses its prompt. "" is shared.
    cache_slot: str = ""
    # How many other slots' prompt states the engine keeps, and their memory cap in bytes;
    # None leaves the engine's own choice.
    warm_slots: int | None = None
    warm_bytes: int | None = None
    # Told how far prompt evaluation got (the editor's "thinking" status).
    on_prompt: PromptProgress | None = field(default=None, compare=False, hash=False)
    # Whether the first generated piece may start the text ("": stopping at once). When the
    # likeliest may not, the engine takes the likeliest of the top FIRST_TOKEN_CHOICES that
    # may (a suggestion that could only be dropped is worth a second choice).
    first_token: FirstTokenCheck | None = field(default=None, compare=False, hash=False)


@dataclass(frozen=True)
class Generation:
    text: str
    stop_reason: StopReason
    prompt_tokens: int = 0
    # Prompt tokens whose KV state was reused from the previous request on this context.
    reused_tokens: int = 0
    # Of those, tokens whose state came back from a kept snapshot (a document used earlier).
    restored_tokens: int = 0
    generated_tokens: int = 0
    # Threads that generated (server.engine.cpu: the free cores, when adaptive).
    generation_threads: int = 0
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

    def limit(self, seconds: float | None) -> None:
        """Stop at most `seconds` from now (an earlier deadline stays)."""
        if seconds is None:
            return
        until = time.monotonic() + seconds
        self.deadline = until if self.deadline is None else min(self.deadline, until)


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
