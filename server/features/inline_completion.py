"""Inline completions from the coder model, and the models' life in the server.

Wiring only: models load in the background after `initialized` (with `$/progress` and a
`smalltalk/status` notification on every state change), a failed model gets one
`window/showMessage` naming the file and the problem, and `textDocument/inlineCompletion`
runs the completion pipeline (server.completion.pipeline) with generation on the coder's
worker. Clients without inline completion get the suggestion as a completion item (a
`completion_sources` entry of the static completion feature).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from dataclasses import replace
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
from server.features import arrival
from smalltalk_grammar.model import Position
from smalltalk_grammar.text import offset_at, position_at

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
        # What the coder is doing for each request, in `smalltalk/status` (features.arrival).
        self.activity = arrival.CompletionActivity(self.send_status)
        # The last suggestion answered per document, to see it accepted (features.arrival).
        self.shown: dict[str, arrival.Shown] = {}
        self.prefetches = 0
        self._tasks: set[asyncio.Task[None]] = set()

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
            "indexing": indexing,
            "adapters": list(self.adapters),
            "completion": self.activity.status(),
        }

    def send_status(self) -> None:
        self.ls.call_threadsafe(self.ls.protocol.notify, STATUS_NOTIFICATION, self.status())

    # --- completion ----------------------------------------------------------------------

    def document_changed(self, uri: str) -> None:
        """A suggestion accepted whole: compute the next one now, in the background (as
        llama.vim does), so the request that follows finds it ready or joins it."""
        shown = self.shown.pop(uri, None)
        text = self.ls.document_text(uri) if shown is not None else None
        at = arrival.accepted_at(shown, text) if shown is not None and text is not None else None
        if at is None or text is None:
            return
        self.prefetches += 1
        pos = position_at(text, at)
        log.debug("suggestion accepted in %s: computing the next one at %s", uri, pos)
        where = types.Position(line=pos.line, character=pos.character)

        async def run() -> None:
            try:
                await self.suggest(uri, where)
            except Exception:
                log.exception("the suggestion after an accepted one failed")

        task = asyncio.ensure_future(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _compute_ahead(self, request: CompletionRequest, options: CompletionOptions) -> None:
        """The suggestion that follows accepting the one just shown, computed while the user
        reads it (as llama.vim does): any request cancels it unless it asks for exactly this."""
        registry = self.registry
        engine = registry.engine("coder") if registry is not None else None
        worker = registry.worker("coder") if registry is not None else None
        if engine is None or worker is None:
            return
        providers = self.providers or [self.default_provider]
        if options.max_generate_ms != self.ls.settings.completion.max_generate_ms:
            options = replace(options, max_generate_ms=self.ls.settings.completion.max_generate_ms)

        async def run() -> None:
            try:
                await complete_async(
                    request, engine, worker, providers, options, self.cache, ahead=True
                )
            except Exception:
                log.exception("computing the next suggestion ahead failed")

        task = asyncio.ensure_future(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def document_closed(self, uri: str) -> None:
        """Closing a document ends its suggestion in progress."""
        self.shown.pop(uri, None)
        worker = self.registry.worker("coder") if self.registry is not None else None
        if worker is not None:
            worker.cancel(uri)
        self.activity.closed(uri)

    async def suggest(
        self, uri: str, position: types.Position, invoked: bool = False
    ) -> Suggestion | None:
        """The coder's suggestion at a position, however long it takes; None when there is
        none, or when a newer request for the document, a cancel or closing it ended this one.
        `invoked`: the user asked explicitly (a longer generation cap)."""
        settings = self.ls.settings
        registry = self.registry
        if registry is None or not settings.completion.enabled:
            return None
        if settings.model_for("coder") is None:
            return None
        activity = self.activity
        ticket = activity.begin(uri)
        suggestion: Suggestion | None = None
        why = "cancelled"
        try:
            if registry.engine("coder") is None:
                activity.set_state(uri, ticket, "waiting-for-model")
                ready = await arrival.wait_for_model(
                    registry.states, "coder", lambda: activity.is_current(uri, ticket)
                )
                if not ready:
                    why = registry.errors.get("coder", "superseded")
                    return None
            engine, worker = registry.engine("coder"), registry.worker("coder")
            snap = self.ls.snapshot(uri)
            if engine is None or worker is None or snap is None:
                why = "no model" if snap is not None else "no document"
                return None
            activity.set_state(uri, ticket, "queued" if worker.busy else "thinking")
            pos = Position(line=max(0, position.line), character=max(0, position.character))
            request = CompletionRequest(
                uri=uri,
                text=snap.text,
                offset=offset_at(snap.text, pos),
                path=snap.path,
                source_format=snap.source.format,
            )
            selection = self.select_adapters("coder", snap.path) if self.select_adapters else None
            key, pairs = (selection.key, selection.pairs) if selection else (self.adapter_key, ())
            options = CompletionOptions.from_settings(settings, key, pairs, invoked=invoked)
            suggestion = await complete_async(
                request, engine, worker, self.providers or [self.default_provider], options,
                self.cache, on_prompt=activity.prompt_progress(uri, ticket),
            )
            why = "" if suggestion is not None else "superseded"
        finally:
            activity.end(uri, ticket, suggestion, why)
        if suggestion is not None and suggestion.text:
            self.shown[uri] = arrival.Shown(request.text, request.offset, suggestion.text)
            self._compute_ahead(arrival.after_accepting(request, suggestion.text), options)
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
        take as long as it needs, and completion while typing must stay instant.
        """
        kind = params.context.trigger_kind if params.context is not None else None
        invoked = kind == types.CompletionTriggerKind.Invoked
        if not invoked or _client_has_inline_completion(self.ls):
            return []
        suggestion = await self.suggest(params.text_document.uri, params.position, invoked=True)
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
        "restored_tokens": generation.restored_tokens,
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
    ls.on_document_closed.append(feature.document_closed)
    ls.on_document_changed.append(feature.document_changed)

    @ls.handler(
        types.TEXT_DOCUMENT_INLINE_COMPLETION,
        types.InlineCompletionOptions(),
        empty=lambda: types.InlineCompletionList(items=[]),
    )
    async def on_inline_completion(
        params: types.InlineCompletionParams,
    ) -> types.InlineCompletionList:
        invoked = params.context.trigger_kind == types.InlineCompletionTriggerKind.Invoked
        suggestion = await feature.suggest(params.text_document.uri, params.position, invoked)
        if suggestion is None:
            return types.InlineCompletionList(items=[])
        cursor = types.Range(start=params.position, end=params.position)
        item = types.InlineCompletionItem(insert_text=suggestion.text, range=cursor)
        return types.InlineCompletionList(items=[item])
