"""Inline completions from the coder model, and the models' life in the server.

Wiring only: models load in the background after `initialized` (with `$/progress` and a
`smalltalk/status` notification on every state change), a failed model gets one
`window/showMessage` naming the file and the problem, and `textDocument/inlineCompletion`
runs the completion pipeline (server.completion.pipeline) with generation on the coder's
worker. Clients without inline completion get the suggestion as a completion item (a
`completion_sources` entry of the static completion feature).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lsprotocol import types

from server.completion.cache import SuggestionCache
from server.completion.context import ContextProvider
from server.completion.pipeline import CompletionOptions, complete_async
from server.completion.providers import ClassContextProvider
from server.completion.types import CompletionRequest, Suggestion
from server.config import Settings
from server.engine.registry import ModelRegistry, State
from server.engine.types import ROLES, Role
from smalltalk_grammar.model import Position
from smalltalk_grammar.text import offset_at

if TYPE_CHECKING:
    from server.features.adapters import AdapterSelection
    from server.lsp import SmalltalkLanguageServer

log = logging.getLogger(__name__)

STATUS_NOTIFICATION = "smalltalk/status"
# At start, models load once the workspace scan is done or after this many seconds.
MODEL_LOAD_SCAN_HEAD_START_S = 3.0
_ATTRIBUTE = "inline_completion_feature"


class ModelFeature:
    """Per-server state: the model registry, the suggestion cache and the context providers."""

    def __init__(self, ls: SmalltalkLanguageServer) -> None:
        self.ls = ls
        self.registry: ModelRegistry | None = None
        self.cache = SuggestionCache(ls.settings.completion.cache_size)
        # Retrieval adds its provider here (see `context_providers`); order is prompt order.
        # While none is added, the class definition and sibling selectors stand in.
        self.providers: list[ContextProvider] = []
        self.default_provider = ClassContextProvider(lambda: ls.project)
        # The active LoRA adapter set, as a key (the adapters feature sets it).
        self.adapter_key = ""
        self.adapters: list[str] = []
        # (role, file path) -> the adapters of a request (server.features.adapters sets it).
        self.select_adapters: Callable[[str, str | None], AdapterSelection] | None = None
        self._reported: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        root = self.ls.roots[0] if self.ls.roots else None
        registry = ModelRegistry(self.ls.settings, root)
        registry.listeners.append(self._state_changed)
        self.registry = registry
        self._load_in_background(ROLES, after_scan=True)

    def _load_in_background(self, roles: tuple[Role, ...], after_scan: bool = False) -> None:
        registry = self.registry
        if registry is None:
            return

        def run() -> None:
            if after_scan:
                # On 2 cores a model load beside the workspace scan slows both; a warm scan
                # ends in about a second, a cold one on a large project does not hold the
                # models back longer than this.
                self.ls.scan_done.wait(MODEL_LOAD_SCAN_HEAD_START_S)
            for role in roles:
                if registry.settings.model_for(role) is None:
                    registry.load(role)  # reports "off"
                    continue
                with self.ls.progress(f"Loading the {role} model") as work:
                    work.report(registry.settings.model_for(role))
                    registry.load(role)

        threading.Thread(target=run, name="model-loader", daemon=True).start()

    def settings_changed(self, settings: Settings) -> None:
        self.cache.size = settings.completion.cache_size
        if self.registry is None:
            return
        changed = self.registry.apply_settings(settings)
        if changed:
            self.cache.clear()
            self._load_in_background(tuple(changed))

    def close(self) -> None:
        if self.registry is not None:
            self.registry.close()

    # --- state reports -------------------------------------------------------------------

    def _state_changed(self, role: Role, state: State, error: str | None) -> None:
        if state == "failed" and error:
            with self._lock:
                fresh = (role, error) not in self._reported
                self._reported.add((role, error))
            if fresh:
                self.ls.show_message(
                    f"smalltalk-lsp: the {role} model is unavailable: {error}. "
                    "Navigation, hover and the other static features keep working.",
                    types.MessageType.Error,
                )
        self.send_status()

    def status(self) -> dict[str, Any]:
        states = dict(self.registry.states) if self.registry is not None else {}
        scan_done = getattr(self.ls, "scan_done", None)
        indexing = None if scan_done is None or scan_done.is_set() else "indexing"
        return {
            "models": {role: states.get(role, "off") for role in ROLES},
            # What each role is configured to run (an embedded name or a path), for the
            # editors' status.
            "names": {role: self.ls.settings.model_for(role) or "off" for role in ROLES},
            "indexing": indexing,
            "adapters": list(self.adapters),
        }

    def send_status(self) -> None:
        self.ls.call_threadsafe(self.ls.protocol.notify, STATUS_NOTIFICATION, self.status())

    # --- completion ----------------------------------------------------------------------

    async def suggest(self, uri: str, position: types.Position) -> Suggestion | None:
        settings = self.ls.settings
        registry = self.registry
        if registry is None or not settings.completion.enabled:
            return None
        engine, worker = registry.engine("coder"), registry.worker("coder")
        if engine is None or worker is None:
            return None
        snap = self.ls.snapshot(uri)
        if snap is None:
            return None
        pos = Position(line=max(0, position.line), character=max(0, position.character))
        request = CompletionRequest(
            uri=uri,
            text=snap.text,
            offset=offset_at(snap.text, pos),
            path=snap.path,
            source_format=snap.source.format,
        )
        selection = self.select_adapters("coder", snap.path) if self.select_adapters else None
        if selection is not None:
            options = CompletionOptions.from_settings(settings, selection.key, selection.pairs)
        else:
            options = CompletionOptions.from_settings(settings, self.adapter_key)
        suggestion = await complete_async(
            request, engine, worker, self.providers or [self.default_provider], options, self.cache
        )
        if suggestion is not None:
            log.debug(
                "suggestion for %s (%s, %s): %r from %r %s",
                uri,
                suggestion.mode,
                suggestion.source,
                suggestion.text,
                suggestion.raw,
                {k: round(v) for k, v in suggestion.timings.items()}
                | _tokens(suggestion),
            )
        return suggestion if suggestion is not None and suggestion.text else None

    async def completion_items(self, params: types.CompletionParams) -> list[types.CompletionItem]:
        """The model's suggestion as a completion item, for clients without inline completion.

        Only for explicitly invoked completion (context.triggerKind = Invoked): the model may
        take its whole time budget, and completion while typing must stay instant.
        """
        kind = params.context.trigger_kind if params.context is not None else None
        invoked = kind == types.CompletionTriggerKind.Invoked
        if not invoked or _client_has_inline_completion(self.ls):
            return []
        suggestion = await self.suggest(params.text_document.uri, params.position)
        if suggestion is None:
            return []
        text = suggestion.text
        label = text.strip().split("\n", 1)[0]
        here = types.Range(start=params.position, end=params.position)
        return [
            types.CompletionItem(
                label=label if len(label) <= 60 else label[:57] + "...",
                kind=types.CompletionItemKind.Snippet,
                detail=self.model_label(params.text_document.uri),
                sort_text="~model",
                filter_text=label,
                insert_text_format=types.InsertTextFormat.PlainText,
                text_edit=types.TextEdit(range=here, new_text=text),
                data={"source": "model"},
            )
        ]

    def model_label(self, uri: str) -> str:
        """"coder model", with the adapters that apply to the document if any."""
        if self.select_adapters is None:
            return "coder model"
        label = self.select_adapters("coder", self.ls.path_of(uri)).label
        return f"coder model + {label}" if label else "coder model"


def _tokens(suggestion: Suggestion) -> dict[str, int]:
    generation = suggestion.generation
    if generation is None:
        return {}
    return {
        "prompt_tokens": generation.prompt_tokens,
        "reused_tokens": generation.reused_tokens,
        "generated_tokens": generation.generated_tokens,
    }


def _client_has_inline_completion(ls: SmalltalkLanguageServer) -> bool:
    try:
        document = ls.client_capabilities.text_document
    except Exception:
        return False
    return document is not None and document.inline_completion is not None


def feature_of(ls: SmalltalkLanguageServer) -> ModelFeature | None:
    """The model feature of a server (code actions and adapters reach the registry here)."""
    found = getattr(ls, _ATTRIBUTE, None)
    return found if isinstance(found, ModelFeature) else None


def context_providers(ls: SmalltalkLanguageServer) -> list[ContextProvider]:
    """The ordered list retrieval appends its context provider to (it then replaces the
    built-in class-and-siblings provider)."""
    feature = feature_of(ls)
    return feature.providers if feature is not None else []


def setup(ls: SmalltalkLanguageServer) -> None:
    feature = ModelFeature(ls)
    setattr(ls, _ATTRIBUTE, feature)
    ls.on_initialized.append(feature.start)
    ls.on_shutdown.append(feature.close)
    ls.on_settings_changed.append(feature.settings_changed)
    ls.completion_sources.append(feature.completion_items)

    @ls.handler(
        types.TEXT_DOCUMENT_INLINE_COMPLETION,
        types.InlineCompletionOptions(),
        empty=lambda: types.InlineCompletionList(items=[]),
    )
    async def on_inline_completion(
        params: types.InlineCompletionParams,
    ) -> types.InlineCompletionList:
        suggestion = await feature.suggest(params.text_document.uri, params.position)
        if suggestion is None:
            return types.InlineCompletionList(items=[])
        cursor = types.Range(start=params.position, end=params.position)
        item = types.InlineCompletionItem(insert_text=suggestion.text, range=cursor)
        return types.InlineCompletionList(items=[item])
