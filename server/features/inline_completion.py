"""Inline completions from the coder model.

Wiring only: `textDocument/inlineCompletion` runs the completion pipeline
(server.completion.pipeline) on the coder's engine and worker, both from the server's models
(server.models), with the adapters the models pick for the file. Clients without inline
completion get the suggestion as a completion item (a `completion_sources` entry of the
static completion feature). A completion reads the document's text and format; it does not
wait for the document to be parsed.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import TYPE_CHECKING

from lsprotocol import types

from server.completion import arrival
from server.completion.cache import SuggestionCache
from server.completion.cursor import analyse_cursor
from server.completion.pipeline import CompletionOptions, complete_async
from server.completion.providers import ClassContextProvider
from server.completion.types import CompletionRequest, Suggestion
from server.config import Settings
from server.engine.types import Role
from smalltalk_grammar import format_of
from smalltalk_grammar.model import Position
from smalltalk_grammar.text import offset_at, position_at

if TYPE_CHECKING:
    from server.core import SmalltalkLanguageServer

log = logging.getLogger(__name__)


class InlineCompletion:
    """Per-server state: the suggestion cache; the models and the context providers are the
    server's (`ls.models`, `ls.context_providers`)."""

    def __init__(self, ls: SmalltalkLanguageServer) -> None:
        self.ls = ls
        self.cache = SuggestionCache(ls.settings.completion.cache_size)
        # While no provider is added (retrieval adds one), the class definition and sibling
        # selectors stand in.
        self.default_provider = ClassContextProvider(lambda: ls.project)
        # The last suggestion answered per document, to see it accepted (completion.arrival).
        self.shown: dict[str, arrival.Shown] = {}
        # Per document, the method (start, text) whose suggestion the cursor warmed last.
        self.warmed: dict[str, tuple[int, int]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def settings_changed(self, settings: Settings) -> None:
        self.cache.size = settings.completion.cache_size

    def models_reloaded(self, roles: list[Role]) -> None:
        self.cache.clear()

    def document_changed(self, uri: str) -> None:
        """A suggestion accepted whole: compute the next one now, in the background (as
        llama.vim does), so the request that follows finds it ready or joins it."""
        shown = self.shown.pop(uri, None)
        text = self.ls.document_text(uri) if shown is not None else None
        at = arrival.accepted_at(shown, text) if shown is not None and text is not None else None
        if at is None or text is None:
            return
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
        engine, worker = self.ls.models.engine("coder"), self.ls.models.worker("coder")
        if engine is None or worker is None:
            return
        providers = self.ls.context_providers or [self.default_provider]
        if options.max_generate_ms != self.ls.settings.completion.max_generate_ms:
            options = replace(options, max_generate_ms=self.ls.settings.completion.max_generate_ms)

        async def run() -> None:
            try:
                suggestion = await complete_async(
                    request, engine, worker, providers, options, self.cache, ahead=True
                )
                if suggestion is not None:
                    log.debug("suggestion for %s computed ahead: %r", request.uri, suggestion.text)
            except Exception:
                log.exception("computing the next suggestion ahead failed")

        task = asyncio.ensure_future(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def cursor_seen(self, uri: str, position: types.Position) -> None:
        """The cursor came to rest in a method: compute its suggestion now, in the background
        (as llama.vim warms its cache on cursor moves), so a request there finds it ready or
        joins it, and one after a keystroke reuses the evaluated prompt. Once per method and
        text; never while a completion or a code action runs (on few cores it would slow them)."""
        models, text = self.ls.models, self.ls.document_text(uri)
        reasoner = models.worker("reasoner")
        if (
            text is None
            or not self.ls.settings.completion.enabled
            or not self.ls.settings.completion.warm_on_cursor
            or models.completion_in_flight()
            or (reasoner is not None and reasoner.busy)
        ):
            return
        path = self.ls.path_of(uri)
        offset = offset_at(text, Position(line=position.line, character=position.character))
        source_format = format_of(text, path)
        method = analyse_cursor(text, offset, source_format, path).method
        mark = (method.start, hash(text)) if method is not None else None
        if mark is None or self.warmed.get(uri) == mark:
            return
        self.warmed[uri] = mark
        log.debug("cursor in %s at %s: computing its suggestion ahead", uri, position)
        request = CompletionRequest(
            uri=uri, text=text, offset=offset, path=path, source_format=source_format
        )
        self._compute_ahead(request, self._options(path, invoked=False))

    def _options(self, path: str | None, invoked: bool) -> CompletionOptions:
        selection = self.ls.models.select_adapters("coder", path)
        return CompletionOptions.from_settings(
            self.ls.settings, selection.key, selection.pairs, invoked=invoked
        )

    def document_closed(self, uri: str) -> None:
        """Closing a document ends its suggestion in progress."""
        self.shown.pop(uri, None)
        self.warmed.pop(uri, None)
        worker = self.ls.models.worker("coder")
        if worker is not None:
            worker.cancel(uri)
        self.ls.models.completion_activity.closed(uri)

    async def suggest(
        self, uri: str, position: types.Position, invoked: bool = False
    ) -> Suggestion | None:
        """The coder's suggestion at a position, however long it takes; None when there is
        none, or when a newer request for the document, a cancel or closing it ended this one.
        `invoked`: the user asked explicitly (a longer generation cap)."""
        settings = self.ls.settings
        models = self.ls.models
        if not settings.completion.enabled or settings.model_for("coder") is None:
            return None
        activity = models.completion_activity
        ticket = activity.begin(uri)
        suggestion: Suggestion | None = None
        why = "cancelled"
        try:
            if models.engine("coder") is None:
                activity.set_state(uri, ticket, "waiting-for-model")
                ready = await arrival.wait_for_model(
                    lambda: models.state("coder"), lambda: activity.is_current(uri, ticket)
                )
                if not ready:
                    why = models.error("coder") or "superseded"
                    return None
            engine, worker = models.engine("coder"), models.worker("coder")
            text = self.ls.document_text(uri)
            if engine is None or worker is None or text is None:
                why = "no model" if text is not None else "no document"
                return None
            activity.set_state(uri, ticket, "queued" if worker.busy else "thinking")
            path = self.ls.path_of(uri)
            pos = Position(line=max(0, position.line), character=max(0, position.character))
            request = CompletionRequest(
                uri=uri,
                text=text,
                offset=offset_at(text, pos),
                path=path,
                source_format=format_of(text, path),
            )
            options = self._options(path, invoked)
            suggestion = await complete_async(
                request, engine, worker, self.ls.context_providers or [self.default_provider],
                options, self.cache, on_prompt=activity.prompt_progress(uri, ticket),
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
                detail=self.ls.models.label("coder", self.ls.path_of(params.text_document.uri)),
                sort_text="~model",
                filter_text=label,
                insert_text_format=types.InsertTextFormat.PlainText,
                text_edit=types.TextEdit(range=here, new_text=text),
                data={"source": "model"},
            )
        ]

def _tokens(suggestion: Suggestion) -> dict[str, int | str]:
    generation = suggestion.generation
    if generation is None:
        return {}
    return {
        "stop_reason": generation.stop_reason,
        "prompt_tokens": generation.prompt_tokens,
        "reused_tokens": generation.reused_tokens,
        "restored_tokens": generation.restored_tokens,
        "generated_tokens": generation.generated_tokens,
        "generation_threads": generation.generation_threads,
    }


def _client_has_inline_completion(ls: SmalltalkLanguageServer) -> bool:
    try:
        document = ls.client_capabilities.text_document
    except Exception:
        return False
    return document is not None and document.inline_completion is not None


def setup(ls: SmalltalkLanguageServer) -> None:
    feature = InlineCompletion(ls)
    ls.events.settings_changed.subscribe(feature.settings_changed)
    ls.models.reloaded.subscribe(feature.models_reloaded)
    ls.completion_sources.append(feature.completion_items)
    ls.events.document_closed.subscribe(feature.document_closed)
    ls.events.document_changed.subscribe(feature.document_changed)
    ls.events.cursor_seen.subscribe(feature.cursor_seen)

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
