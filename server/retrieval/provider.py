"""The retrieval context builder as a completion context provider (server.completion.context).

The completion prompt keeps its front stable between keystrokes so llama.cpp reuses its KV
cache: while the cursor stays in one method the provider answers the same snippets, and only
builds anew when the cursor moves to another method or the index has just become ready.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING

from server.completion.cursor import CursorAnalysis
from server.completion.types import CompletionRequest, ContextSnippet
from server.config import CompletionConfig
from server.project_model import ProjectModel
from server.retrieval.context import build_context
from smalltalk_grammar.model import MethodDef

if TYPE_CHECKING:
    from server.retrieval.index import RetrievalIndex



class RetrievalContextProvider:
    def __init__(
        self,
        project: Callable[[], ProjectModel | None],
        index: Callable[[], RetrievalIndex | None],
        budget_tokens: Callable[[], int],
        recent: Callable[[], Sequence[MethodDef]] = lambda: (),
        sources: Callable[[], Collection[str]] = lambda: CompletionConfig().context_sources,
    ) -> None:
        self._project = project
        self._index = index
        self._budget = budget_tokens
        self._recent = recent
        self._sources = sources
        self._cache: dict[str, tuple[tuple[object, ...], tuple[ContextSnippet, ...]]] = {}
        self._lock = threading.Lock()

    def snippets(
        self, request: CompletionRequest, cursor: CursorAnalysis
    ) -> Sequence[ContextSnippet]:
        project, method = self._project(), cursor.method
        if project is None:
            return ()
        index = self._index()
        ready = index is not None and len(index) > 0
        where = (method.class_name, method.side, method.selector) if method else None
        sources = tuple(self._sources())
        key = (where, ready, self._budget(), sources)
        with self._lock:
            cached = self._cache.get(request.uri)
        if cached is not None and cached[0] == key:
            return cached[1]
        # A new method's query is embedded now (20-30 ms on an idle core) rather than in the
        # background: a suggestion waits for its prompt anyway, and a first answer without the
        # similarity ranking would change the prompt's front for the next request in the method,
        # throwing away the whole KV cache of the first (seconds, not milliseconds).
        context = build_context(
            project, request.path or request.uri, request.text, request.offset,
            self._budget(), index, list(self._recent()), wait_for_embedding=True, cursor=cursor,
        )
        snippets = tuple(
            ContextSnippet(text=f'"{item.source}: {item.title}"\n{item.text}',
                           origin=item.source, path=item.path, code=item.code)
            for item in context.items if item.source in sources
        )
        # Without the similarity ranking yet (a new method's query vector is being embedded),
        # the next request builds again instead of keeping this answer for the whole method.
        complete = context.similarity or index is None or index.embedder is None
        with self._lock:
            if complete:
                self._cache[request.uri] = (key, snippets)
            else:
                self._cache.pop(request.uri, None)
            while len(self._cache) > 32:
                self._cache.pop(next(iter(self._cache)))
        return snippets
