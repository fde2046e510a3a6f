"""The context builder: the parts of the project that matter for the code at a cursor.

One plain function serves completions, code actions and hover. Items come labelled with where
they came from, best first, without duplicates, within a token budget:
  class        the current class definition (superclass chain, variables, comment)
  siblings     signatures and first lines of the other methods in the same class and protocol
  implementors methods implementing the selector being typed and those sent near the cursor
  similar      nearest units by embedding of the code around the cursor (fused with lexical)
  lexical      methods whose selectors share words with the ones at the cursor
  recent       recently edited methods

Completion reaches it through `RetrievalContextProvider` (a server.completion.context
provider). The completion prompt keeps its front stable between keystrokes so llama.cpp reuses
its KV cache: while the cursor stays in one method the provider answers the same snippets, and
builds anew only when the cursor moves to another method or the index has just become ready.
"""

from __future__ import annotations

import bisect
import math
import threading
import weakref
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict

from server.class_render import render_class
from server.completion.cursor import ClassFacts, CursorAnalysis, Sends, analyse_cursor
from server.completion.types import CompletionRequest, ContextSnippet
from server.config import CompletionConfig
from server.project_model import ProjectModel
from server.retrieval.units import method_header, method_key
from smalltalk_grammar import format_of
from smalltalk_grammar.model import ClassDef, MethodDef

if TYPE_CHECKING:  # numpy and faiss load with the index, not with the server
    from server.retrieval.index import RetrievalIndex
    from server.retrieval.store import UnitRecord

ContextSource = Literal["class", "siblings", "implementors", "similar", "lexical", "recent"]
TokenCounter = Callable[[str], int]

SOURCE_ORDER: tuple[ContextSource, ...] = (
    "class", "siblings", "implementors", "similar", "lexical", "recent",
)
# Similar and lexical items come from one fused ranking and share one part of the budget.
_GROUP = {"class": "class", "siblings": "siblings", "implementors": "implementors",
          "similar": "retrieved", "lexical": "retrieved", "recent": "recent"}
_GROUP_ORDER = ("class", "siblings", "implementors", "retrieved", "recent")
# Share of the budget each group may take before the leftovers are handed out in order.
_SHARES = {"class": 0.25, "siblings": 0.15, "implementors": 0.3, "retrieved": 0.3,
           "recent": 0.15}
MAX_METHOD_CHARS = 900
MAX_CLASS_CHARS = 1500
MAX_SIBLINGS = 16
IMPLEMENTORS_PER_SELECTOR = 3
SEARCH_K = 10
LEXICAL_SELECTORS = 5
# Retrieved items resolved against the project model; more would never fit the budget.
MAX_RETRIEVED = 10
RRF_K = 60


class ContextItem(BaseModel):
    model_config = ConfigDict(frozen=True)

    source: ContextSource
    # `SRStore >> rightsFor:`, `class SRStore`: what the item is, for people and prompts.
    title: str
    text: str
    path: str | None = None
    tokens: int
    # The item as its file writes it (a Tonel method with its header), for prompts that lay
    # context out as repository files; "" when only `text` exists.
    code: str = ""


class Context(BaseModel):
    items: list[ContextItem]
    budget_tokens: int
    tokens: int
    # What the cursor analysis found, for logs and for prompt headers.
    class_name: str | None = None
    selector: str | None = None
    # Whether the embedding ranking took part (False until a new method's query vector is
    # ready, and always without an embedding model).
    similarity: bool = False

    def render(self) -> str:
        """The items as Smalltalk comments and code, ready to put in front of a prompt."""
        return "\n\n".join(f'"{item.source}: {item.title}"\n{item.text}' for item in self.items)

    def by_source(self, source: ContextSource) -> list[ContextItem]:
        return [item for item in self.items if item.source == source]


def approximate_tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 4].rstrip() + "\n..."


def class_summary(project: ProjectModel, cls: ClassDef) -> str:
    chain = project.superclass_chain(cls.name)
    inherited = []
    for name in chain:
        parent = project.class_named(name)
        if parent is not None:
            inherited += parent.instance_variables
    text = render_class(cls, "summary", superclasses=chain, inherited=inherited)
    return _clip(text, MAX_CLASS_CHARS)


def _first_lines(source: str, count: int = 2) -> str:
    lines = [line.rstrip() for line in source.strip().splitlines() if line.strip()]
    return "\n".join(lines[:count])


def _method_id(method: MethodDef) -> tuple[str, str, str, str]:
    return ("method", method.class_name, method.side, method.selector)


def _method_text(method: MethodDef) -> str:
    """The source alone: the item's title already names class, side and category."""
    return _clip(method.source.strip(), MAX_METHOD_CHARS)


def method_code(method: MethodDef, source_format: str | None) -> str:
    """A method as its file writes it: in Tonel with its `Class >> pattern [` header, in a
    chunk file as a `methodsFor:` chunk, else its bare source. A long method keeps its first
    lines (whole lines, so the text stays Smalltalk). Tonel's `{ #category : ... }` line is
    left out: Tonel reads a method without it, and in prompts it cost tokens (Roassal3: 5% of
    the prompt) without raising the holes benchmark's score."""
    source = method.source.strip()
    if len(source) > MAX_METHOD_CHARS:
        source = source[:MAX_METHOD_CHARS].rsplit("\n", 1)[0]
    side = " class" if method.side == "class" else ""
    if source_format == "tonel":
        pattern, _, body = source.partition("\n")
        return f"{method.class_name}{side} >> {pattern} [\n{body}\n]"
    if source_format == "chunk":
        category = method.category or "as yet unclassified"
        return f"!{method.class_name}{side} methodsFor: '{category}'!\n{source}! !"
    return source


def class_code(cls: ClassDef, source_format: str | None) -> str:
    """A class definition as a Tonel file writes it ("" in other formats)."""
    if source_format != "tonel" or cls.kind not in ("class", "trait"):
        return ""
    fields = [f"\t#name : '{cls.name}'"]
    if cls.kind == "class":
        fields.append(f"\t#superclass : '{cls.superclass or 'Object'}'")
    if cls.instance_variables:
        names = ",\n".join(f"\t\t'{v}'" for v in cls.instance_variables)
        fields.append(f"\t#instVars : [\n{names}\n\t]")
    if cls.class_variables:
        names = ",\n".join(f"\t\t'{v}'" for v in cls.class_variables)
        fields.append(f"\t#classVars : [\n{names}\n\t]")
    if cls.category:
        fields.append(f"\t#category : '{cls.category}'")
    comment = ""
    if cls.comment and cls.comment.strip():
        comment = '"\n' + _clip(cls.comment.strip(), 600).replace('"', '""') + '\n"\n'

    keyword = "Class" if cls.kind == "class" else "Trait"
    return comment + keyword + " {\n" + ",\n".join(fields) + "\n}"


def _find_method(project: ProjectModel, record: UnitRecord,
                 index: RetrievalIndex) -> tuple[str, MethodDef] | None:
    """The method of an index record in the current project model (None if it is gone)."""
    path = index.absolute(record.path)
    source = project.file(path)
    for method in source.methods if source is not None else ():
        if (method.selector, method.class_name, method.side) == (
            record.selector, record.class_name, record.side,
        ):
            return path, method
    for other, method in project.methods_of(record.class_name, record.side):
        if method.selector == record.selector:
            return other, method
    return None


class _Collector:
    """Candidates per group, in rank order, with method identities for de-duplication."""

    def __init__(self, count: TokenCounter) -> None:
        self.count = count
        self.candidates: dict[str, list[tuple[tuple[str, ...], ContextItem]]] = {
            g: [] for g in _GROUP_ORDER
        }

    def add(self, source: ContextSource, identity: tuple[str, ...], title: str, text: str,
            path: str | None, code: str = "") -> None:
        tokens = max(self.count(f'"{source}: {title}"\n{text}'), self.count(code) if code else 0)
        item = ContextItem(source=source, title=title, text=text, path=path, tokens=tokens,
                           code=code)
        self.candidates[_GROUP[source]].append((identity, item))

    def select(self, budget: int, exclude: set[tuple[str, ...]]) -> list[ContextItem]:
        """Fill each group up to its share, then hand out what is left in group order.
        The first occurrence of a method or class wins; later ones are duplicates."""
        chosen: dict[tuple[str, ...], tuple[int, int, ContextItem]] = {}
        seen: set[tuple[str, ...]] = set(exclude)
        used = 0
        for shares_pass in (True, False):
            for group_no, group in enumerate(_GROUP_ORDER):
                spent = sum(i.tokens for _, _, i in chosen.values() if _GROUP[i.source] == group)
                cap = int(budget * _SHARES[group]) if shares_pass else budget
                for rank, (identity, item) in enumerate(self.candidates[group]):
                    if identity in chosen or (identity in seen and shares_pass):
                        continue
                    if not shares_pass and identity in exclude:
                        continue
                    seen.add(identity)
                    if used + item.tokens > budget or spent + item.tokens > cap:
                        continue
                    chosen[identity] = (group_no, rank, item)
                    used += item.tokens
                    spent += item.tokens
        return [item for _, _, item in sorted(chosen.values(), key=lambda c: (c[0], c[1]))]


def build_context(
    project: ProjectModel,
    path: str,
    text: str,
    offset: int,
    budget_tokens: int,
    index: RetrievalIndex | None = None,
    recent: Sequence[MethodDef] = (),
    count_tokens: TokenCounter | None = None,
    wait_for_embedding: bool = False,
    cursor: CursorAnalysis | None = None,
) -> Context:
    """Context for the cursor at `offset` in `text` (the live buffer of `path`); `cursor` is
    the one cursor analysis there if the caller has it already (a completion's context stage
    has), else it is made here.

    Without an index (retrieval disabled, or the embedding model failed to load) the class,
    siblings, implementors and recent items still come from the project model. The model
    never runs here unless `wait_for_embedding`: a cursor in an indexed method queries with
    that method's stored vector, one in a new method with a vector embedded in the
    background for the next call."""
    count = count_tokens or approximate_tokens
    if cursor is None:
        cursor = analyse_cursor(text, offset, format_of(text, path), path)
    facts = cursor.facts
    collector = _Collector(count)
    exclude: set[tuple[str, ...]] = set()
    if facts.class_name and facts.selector:
        exclude.add(("method", facts.class_name, facts.side, facts.selector))

    current = _current_method(project, facts)
    _add_class(collector, project, facts)
    _add_siblings(collector, project, facts, current)
    selectors = _add_implementors(collector, project, facts, cursor.sends, current)
    similarity = False
    if index is not None:
        similarity = _add_retrieved(collector, project, path, facts, cursor.sends.window,
                                    index, selectors, wait_for_embedding)
    for method in recent[:8]:
        where = _path_of(project, method)
        collector.add("recent", _method_id(method), method_header(method),
                      _method_text(method), where, _code(project, where, method))

    items = collector.select(budget_tokens, exclude)
    return Context(items=items, budget_tokens=budget_tokens,
                   tokens=sum(i.tokens for i in items),
                   class_name=facts.class_name, selector=facts.selector,
                   similarity=similarity)


def _format(project: ProjectModel, path: str | None) -> str | None:
    source = project.file(path) if path else None
    return source.format if source is not None else None


def _code(project: ProjectModel, path: str | None, item: MethodDef | ClassDef) -> str:
    """The item in its file's own form (see method_code, class_code)."""
    if isinstance(item, ClassDef):
        return class_code(item, _format(project, path))
    return method_code(item, _format(project, path))


def _path_of(project: ProjectModel, method: MethodDef) -> str | None:
    for path, other in project.methods_of(method.class_name, method.side):
        if other.selector == method.selector:
            return path
    return None


def _current_method(project: ProjectModel, facts: ClassFacts) -> MethodDef | None:
    if not facts.class_name or not facts.selector:
        return None
    for _, method in project.methods_of(facts.class_name, facts.side):
        if method.selector == facts.selector:
            return method
    return None


def _add_class(collector: _Collector, project: ProjectModel, facts: ClassFacts) -> None:
    if not facts.class_name:
        return
    for path, cls in project.class_definitions(facts.class_name):
        if cls.kind != "extension":
            collector.add("class", ("class", cls.name), f"class {cls.name}",
                          class_summary(project, cls), path, _code(project, path, cls))
            return


def _add_siblings(collector: _Collector, project: ProjectModel, facts: ClassFacts,
                  current: MethodDef | None) -> None:
    if not facts.class_name:
        return
    category = facts.category or (current.category if current else None)
    methods = project.methods_of(facts.class_name, facts.side)
    others = [(p, m) for p, m in methods if m.selector != facts.selector]
    same = [(p, m) for p, m in others if category and m.category == category]
    # A protocol of its own (or an unknown one) shows the rest of the class side instead.
    siblings = same or others
    for path, method in siblings[:MAX_SIBLINGS]:
        collector.add("siblings", _method_id(method), method_header(method),
                      _first_lines(method.source), path, _code(project, path, method))


def _add_implementors(collector: _Collector, project: ProjectModel, facts: ClassFacts,
                      sends: Sends, current: MethodDef | None) -> list[str]:
    """Implementors of the selector being typed, then of the selectors sent nearest the
    cursor; answers all the selectors considered (for lexical search)."""
    index_of_selectors = _known_selectors(project)
    known = index_of_selectors.known
    selectors: list[str] = []
    typed = sends.typed
    if typed and typed not in ("self", "super") and len(typed) >= 2:
        if typed in known:
            selectors.append(typed)
        else:
            selectors += index_of_selectors.starting_with(typed, 3)
    selectors += [s for s in sent_selectors(sends, known) if s not in selectors]
    if current is not None:
        selectors += [s for s in current.sends if s not in selectors and s in known]
    chain = [facts.class_name, *project.superclass_chain(facts.class_name)] \
        if facts.class_name else []
    for selector in selectors:
        implementors = project.implementors(selector)
        if len(implementors) > IMPLEMENTORS_PER_SELECTOR:
            # A selector many classes implement (`new`, `ifNil:`, `=`) says nothing about
            # this code, except where the class itself or its superclasses implement it.
            implementors = [pm for pm in implementors if pm[1].class_name in chain]
        implementors.sort(key=lambda pm: (
            chain.index(pm[1].class_name) if pm[1].class_name in chain else len(chain),
            pm[1].class_name, pm[1].side,
        ))
        for path, method in implementors[:IMPLEMENTORS_PER_SELECTOR]:
            collector.add("implementors", _method_id(method), method_header(method),
                          _method_text(method), path, _code(project, path, method))
    return selectors


def sent_selectors(sends: Sends, known: set[str] | None = None, limit: int = 12) -> list[str]:
    """Selectors sent near the cursor, nearest first. Keyword parts in a row are joined
    (`at:` `put:` -> `at:put:`) when `known` says such a selector exists; code before the
    cursor counts as nearer than code after it."""

    def distance(position: int) -> int:
        return -position if position < 0 else 2 * position

    candidates: dict[str, int] = {}
    parts = sends.keywords
    for i, (word, position) in enumerate(parts):
        joined = word
        for j in range(i, min(i + 4, len(parts))):
            if j > i:
                joined += parts[j][0]
            if known is None and j > i:
                break
            if known is None or joined in known:
                d = distance(position)
                candidates[joined] = min(candidates.get(joined, d), d)
    for word, position in sends.unary:
        if known is None or word in known:
            d = distance(position)
            candidates[word] = min(candidates.get(word, d), d)
    # At the same distance the longer (joined) selector is the more specific one.
    ranked = sorted(candidates, key=lambda s: (candidates[s], -len(s), s))
    return ranked[:limit]


class _Selectors:
    """Every implemented selector, as a set and sorted (prefix lookups by bisection)."""

    def __init__(self, selectors: list[str]) -> None:
        self.known = set(selectors)
        self.ordered = sorted(self.known)

    def starting_with(self, prefix: str, limit: int) -> list[str]:
        start = bisect.bisect_left(self.ordered, prefix)
        found = []
        for selector in self.ordered[start:start + limit]:
            if not selector.startswith(prefix):
                break
            found.append(selector)
        return found


_SELECTOR_CACHE: weakref.WeakKeyDictionary[ProjectModel, tuple[int, _Selectors]] = (
    weakref.WeakKeyDictionary()
)


def _known_selectors(project: ProjectModel) -> _Selectors:
    """Cached per project generation: a large project has tens of thousands of selectors."""
    generation = getattr(project, "generation", None)
    cached = _SELECTOR_CACHE.get(project)
    if generation is not None and cached is not None and cached[0] == generation:
        return cached[1]
    selectors = _Selectors(project.selectors())
    if generation is not None:
        _SELECTOR_CACHE[project] = (generation, selectors)
    return selectors


def _add_retrieved(collector: _Collector, project: ProjectModel, path: str, facts: ClassFacts,
                   window: str, index: RetrievalIndex, selectors: list[str],
                   wait: bool) -> bool:
    """Hybrid search: reciprocal-rank fusion of the embedding and the lexical rankings.
    Answers whether the embedding ranking took part."""
    similar: list[tuple[UnitRecord, float]] = []
    # The stored vector of the method being edited is a query that needs no embedding: the
    # method changes a little per keystroke, its meaning hardly. A new method embeds its
    # pattern and the code before the cursor (`window`, about 50 tokens), one forward
    # pass of the model: 20-30 ms on an idle core, far more on a busy one.
    # Completions never wait for the model: the first request in a new method goes without
    # the similarity ranking while its query is embedded in the background (unless `wait`).
    key = method_key(index.relative(path), facts.class_name or "", facts.side,
                     facts.selector or "")
    vector = index.stored_vector(key) if facts.class_name and facts.selector else None
    if vector is None and window.strip():
        vector = index.query_vector(window) if wait else index.query_vector_soon(key, window)
    if vector is not None:
        similar = index.search_vector(vector, SEARCH_K)
    # The selector being typed, the nearest sends and the method's own selector: a focused
    # lexical query (every send of a long method would match half the project).
    words = [*selectors[:LEXICAL_SELECTORS], *([facts.selector] if facts.selector else [])]
    lexical = index.search_lexical(words, SEARCH_K) if words else []
    fused: dict[str, float] = {}
    records: dict[str, UnitRecord] = {}
    from_embedding: set[str] = set()
    for ranking, is_embedding in ((similar, True), (lexical, False)):
        for rank, (record, _) in enumerate(ranking):
            fused[record.key] = fused.get(record.key, 0.0) + 1.0 / (RRF_K + rank + 1)
            records[record.key] = record
            if is_embedding:
                from_embedding.add(record.key)
    added = 0
    for key in sorted(fused, key=lambda k: (-fused[k], k)):
        if added >= MAX_RETRIEVED:
            break
        added += 1
        record = records[key]
        source: ContextSource = "similar" if key in from_embedding else "lexical"
        if record.kind == "class":
            cls = project.class_named(record.class_name)
            if cls is not None:
                definitions = project.class_definitions(cls.name)
                where = definitions[0][0] if definitions else None
                collector.add(source, ("class", cls.name), f"class {cls.name}",
                              class_summary(project, cls), where, _code(project, where, cls))
            continue
        found = _find_method(project, record, index)
        if found is not None:
            method_path, method = found
            collector.add(source, _method_id(method), method_header(method),
                          _method_text(method), method_path,
                          _code(project, method_path, method))
    return vector is not None


# --- the completion context provider -------------------------------------------------------


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
