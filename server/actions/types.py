"""Inputs, results and the generation helper shared by the actions."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from server.actions.chat import Message, render_chat
from server.actions.formats import CodeEdit
from server.actions.generate import LongGeneration, generate_yielding
from server.actions.models import ActionCancelled, ActionError, ActionModels
from server.actions.targets import ActionKind, Site
from server.config import ActionsConfig, Settings
from server.engine.types import CancelToken, GenerateParams, Role, StopCheck, TextEngine
from server.lora.manager import AdapterSelection
from server.project_model import ProjectModel
from smalltalk_grammar.model import SourceFile

# A method comment is short whatever the code budget.
COMMENT_MAX_TOKENS = 40
# (tokens generated so far in this action, a short status)
Progress = Callable[[int, str], None]
# The LoRA adapters a role's generations apply (chosen for the action's file by the caller).
SelectAdapters = Callable[[Role], AdapterSelection]


def no_adapters(role: Role) -> AdapterSelection:
    return AdapterSelection()


_CONFIG = ActionsConfig()


@dataclass(frozen=True)
class ActionOptions:
    """What an action may generate (the defaults are the `actions` settings' defaults)."""

    # Explanations, designs and plans (the reasoner).
    max_tokens: int = _CONFIG.max_tokens
    # Each piece of code the coder writes.
    code_max_tokens: int = _CONFIG.code_max_tokens
    comment_max_tokens: int = min(COMMENT_MAX_TOKENS, _CONFIG.code_max_tokens)
    summary_max_tokens: int = _CONFIG.summary_max_tokens
    # Explanations and designs may sample; code starts greedy and samples on retries.
    temperature: float = _CONFIG.temperature
    # Tries for code that must parse.
    attempts: int = _CONFIG.attempts

    @classmethod
    def from_settings(cls, settings: Settings) -> ActionOptions:
        config = settings.actions
        return cls(
            max_tokens=config.max_tokens,
            code_max_tokens=config.code_max_tokens,
            comment_max_tokens=min(COMMENT_MAX_TOKENS, config.code_max_tokens),
            summary_max_tokens=config.summary_max_tokens,
            temperature=config.temperature,
            attempts=config.attempts,
        )


@dataclass
class ActionInput:
    kind: ActionKind
    site: Site
    source: SourceFile
    project: ProjectModel
    # Workspace root: notes go under <root>/.smalltalk-lsp/notes/.
    root: Path
    # Retrieved context for the reasoner (rendered), or "".
    context: str = ""
    options: ActionOptions = field(default_factory=ActionOptions)


@dataclass(frozen=True)
class NoteResult:
    kind: ActionKind
    title: str
    path: Path
    markdown: str
    tokens: int = 0
    seconds: float = 0.0
    pauses: int = 0


@dataclass(frozen=True)
class EditResult:
    kind: ActionKind
    title: str
    edit: CodeEdit
    # What was done, for a status message.
    message: str
    tokens: int = 0
    seconds: float = 0.0


ActionResult = NoteResult | EditResult


class Run:
    """One action's access to the models: generation on the caller's thread (the actions'
    worker), pausing for completions, reporting tokens, stopping on cancel."""

    def __init__(
        self,
        models: ActionModels,
        cancel: CancelToken,
        progress: Progress | None = None,
        adapters: SelectAdapters = no_adapters,
    ) -> None:
        self.models = models
        self.cancel = cancel
        self.progress = progress
        self.adapters = adapters
        # The adapters each role generated with, for people ("house-style, idioms×0.5").
        self.adapter_labels: dict[Role, str] = {}
        self.tokens = 0
        self.pauses = 0
        self.generate_ms = 0.0

    def check(self) -> None:
        if self.cancel.cancelled:
            raise ActionCancelled("cancelled")

    def reasoner(self, messages: Sequence[Message], max_tokens: int, temperature: float,
                 seed: int = 0) -> LongGeneration:
        engine = self.models.reasoner(self.cancel)
        prompt = render_chat(engine.model.chat_template(), messages)
        params = self._params("reasoner", max_tokens=max_tokens, temperature=temperature,
                              seed=seed)
        return self.generate(engine, prompt, params, "reasoning model")

    def coder(self, prompt: str, max_tokens: int, temperature: float = 0.0, seed: int = 0,
              stop: tuple[str, ...] = (), stop_check: StopCheck | None = None) -> LongGeneration:
        engine = self.models.coder(self.cancel)
        params = self._params("coder", max_tokens=max_tokens, temperature=temperature, seed=seed,
                              stop=stop)
        return self.generate(engine, prompt, params, "coder model", stop_check)

    def _params(self, role: Role, **values: Any) -> GenerateParams:
        """GenerateParams with the role's adapters; their key keeps a KV prefix computed
        under another adapter set from being reused."""
        selection = self.adapters(role)
        if selection.label:
            self.adapter_labels[role] = selection.label
        return GenerateParams(adapters=selection.pairs, adapter_key=selection.key, **values)

    def generate(self, engine: TextEngine, prompt: str, params: GenerateParams, label: str,
                 stop_check: StopCheck | None = None) -> LongGeneration:
        self.check()
        before = self.tokens

        def on_tokens(n: int, _text: str) -> None:
            if self.progress is not None:
                self.progress(before + n, f"{label}: {before + n} tokens")

        result = generate_yielding(
            engine, prompt, params, self.cancel, self.models.gate, on_tokens, stop_check
        )
        self.tokens = before + result.generation.generated_tokens
        self.pauses += result.pauses
        self.generate_ms += result.generation.generate_ms
        if result.generation.stop_reason == "cancelled":
            raise ActionCancelled("cancelled")
        if result.generation.stop_reason == "error":
            raise ActionError(f"the {label} failed: {result.generation.error or 'unknown error'}")
        return result
