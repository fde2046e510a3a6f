"""Static completion: selectors after an expression (keyword selectors as snippets with all
their parts), and in expression position the locals in scope, instance and class variables,
pseudo-variables and class names. Filtered by the typed prefix, ranked by project usage (and,
for selectors, the receiver's own class first when it is known statically).

Every item carries `data = {"source": "static", "kind": ...}` so other completion sources
(the model engine) can add their items alongside and tell them apart.
"""

from __future__ import annotations

import bisect
import heapq
import re
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lsprotocol import types

from server.features import common
from server.features.analysis import (
    PSEUDO_VARIABLES,
    MethodTree,
    Receiver,
    locals_at,
    static_class,
)
from server.project_model import ProjectModel
from smalltalk_grammar.model import MethodDef

if TYPE_CHECKING:
    from server.core import SmalltalkLanguageServer

LIMIT = 50
TRIGGERS = ["#"]
_WORD = re.compile(r"[A-Za-z0-9_]")


@dataclass
class Candidate:
    label: str
    kind: types.CompletionItemKind
    what: str  # "selector", "variable", "class", "pseudo" (goes into item data)
    detail: str | None = None
    snippet: str | None = None


class NameIndex:
    """Selectors and class names sorted for prefix search, with the best-used names per
    prefix remembered; rebuilt when the project's set of names changes (use counts may go
    slightly stale in between, which only affects ranking)."""

    # Top lists kept per lower-case prefix; short prefixes match thousands of names.
    RANKED = 2 * LIMIT

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._generation = -1
        self.selectors: list[tuple[str, str]] = []
        self.classes: list[tuple[str, str]] = []
        self._ranked: dict[tuple[str, str], list[str]] = {}

    def refresh(self, project: ProjectModel) -> NameIndex:
        with self._lock:
            if self._generation != project.names_generation:
                self._generation = project.names_generation
                self.selectors = sorted((s.lower(), s) for s in project.selectors())
                self.classes = sorted((c.lower(), c) for c in project.class_names())
                self._ranked = {}
        return self

    def ranked(self, project: ProjectModel, kind: str, prefix: str) -> list[str]:
        """Up to RANKED names of `kind` ("selector" or "class") starting with `prefix`
        (ignoring case), most used first."""
        key = (kind, prefix.lower())
        with self._lock:
            found = self._ranked.get(key)
        if found is not None:
            return found
        if kind == "selector":
            names = with_prefix(self.selectors, prefix)
            found = most_used(names, project.send_counts(names), self.RANKED)
        else:
            names = with_prefix(self.classes, prefix)
            found = most_used(names, project.usage_counts(names), self.RANKED)
        with self._lock:
            if len(self._ranked) > 4096:
                self._ranked.clear()
            self._ranked[key] = found
        return found


def with_prefix(names: list[tuple[str, str]], prefix: str) -> list[str]:
    """Names (sorted by lower case) that start with `prefix`, ignoring case."""
    low = prefix.lower()
    start = bisect.bisect_left(names, (low, ""))
    end = bisect.bisect_left(names, (low + "\U0010ffff", ""), start)
    return [name for _, name in names[start:end]]


def most_used(names: list[str], counts: list[int], limit: int) -> list[str]:
    """The `limit` names with the highest counts (ties by name), best first."""
    pairs = zip(counts, names, strict=True)
    return [name for _, name in heapq.nsmallest(limit, pairs, key=lambda p: (-p[0], p[1]))]


def snippet_for(selector: str) -> str | None:
    """`at:put:` -> `at: ${1} put: ${2}`; None for unary and binary selectors."""
    if not selector.endswith(":"):
        return None
    parts = selector[:-1].split(":")
    return " ".join(f"{part}: ${{{i}}}" for i, part in enumerate(parts, 1))


@dataclass
class Site:
    """Where the completion happens: the typed prefix and what kind of word is expected."""

    prefix: str
    start: int
    expects: str  # "selector" | "symbol" | "expression" | "none"
    receiver_end: int | None = None


def completion_site(text: str, offset: int) -> Site:
    start = offset
    while start > 0 and _WORD.match(text[start - 1]):
        start -= 1
    prefix = text[start:offset]
    if start > 0 and text[start - 1] == "#":
        return Site(prefix, start, "symbol")
    j = start
    while j > 0 and text[j - 1] in " \t\r\n":
        j -= 1
    prev = text[j - 1] if j > 0 else ""
    if prev == ";":
        return Site(prefix, start, "selector")
    if prev and (_WORD.match(prev) or prev in ")]}'$"):
        k = j
        while k > 0 and _WORD.match(text[k - 1]):
            k -= 1
        word = text[k:j]
        if word and word[0].isdigit() and not word.isdigit():
            return Site(prefix, start, "expression")
        return Site(prefix, start, "selector", receiver_end=j)
    return Site(prefix, start, "expression")


def _receiver(tree: MethodTree | None, site: Site, project: ProjectModel) -> Receiver | None:
    if tree is None or site.receiver_end is None:
        return None
    char = tree.from_doc(site.receiver_end - 1)
    byte = tree.to_byte(char)
    node = tree.tree.root_node.descendant_for_byte_range(byte, byte)
    # Climb to the largest expression ending here (`(a foo)`, a literal array...).
    while node is not None and node.parent is not None and node.parent.end_byte == node.end_byte:
        if node.parent.type in ("statement", "method_body", "block", "method", "source"):
            break
        if node.parent.type.endswith("message"):
            break
        node = node.parent
    return static_class(tree, node, project) if node is not None else None


def _class_chain_selectors(project: ProjectModel, receiver: Receiver) -> list[str]:
    found: list[str] = []
    for name in [receiver.class_name, *project.superclass_chain(receiver.class_name)]:
        found += project.selectors_of(name, receiver.side)
    return list(dict.fromkeys(found))


def selector_candidates(
    project: ProjectModel, names: NameIndex, prefix: str, receiver: Receiver | None, symbol: bool
) -> list[Candidate]:
    own = _class_chain_selectors(project, receiver) if receiver is not None else []
    rest = names.ranked(project, "selector", prefix)
    low = prefix.lower()
    ordered = [s for s in own if s.lower().startswith(low)]
    seen = set(ordered)
    ordered += [s for s in rest if s not in seen]
    out: list[Candidate] = []
    for selector in ordered[: LIMIT + 1]:
        classes = project.implementor_classes(selector, limit=4)
        detail = ", ".join(classes[:3]) + (" …" if len(classes) > 3 else "")
        out.append(
            Candidate(
                label=selector,
                kind=types.CompletionItemKind.Method,
                what="selector",
                detail=detail or None,
                snippet=None if symbol else snippet_for(selector),
            )
        )
    return out


def expression_candidates(
    project: ProjectModel,
    names: NameIndex,
    prefix: str,
    tree: MethodTree | None,
    offset: int,
    method: MethodDef | None,
) -> list[Candidate]:
    low = prefix.lower()
    out: list[Candidate] = []
    seen: set[str] = set()

    def add(name: str, kind: types.CompletionItemKind, what: str, detail: str) -> None:
        if name not in seen and name.lower().startswith(low):
            seen.add(name)
            out.append(Candidate(name, kind, what, detail))

    if tree is not None:
        for name, scope, _ in locals_at(tree, offset):
            add(name, types.CompletionItemKind.Variable, "variable", scope)
    if method is not None and method.class_name:
        for cls_name in [method.class_name, *project.superclass_chain(method.class_name)]:
            cls = project.class_named(cls_name)
            if cls is None:
                continue
            inst = (
                cls.class_instance_variables if method.side == "class" else cls.instance_variables
            )
            for name in inst:
                add(
                    name,
                    types.CompletionItemKind.Field,
                    "variable",
                    f"instance variable of {cls_name}",
                )
            for name in cls.class_variables:
                add(
                    name,
                    types.CompletionItemKind.Field,
                    "variable",
                    f"class variable of {cls_name}",
                )
    for name in PSEUDO_VARIABLES:
        add(name, types.CompletionItemKind.Keyword, "pseudo", "pseudo-variable")
    for name in names.ranked(project, "class", prefix)[: LIMIT + 1]:
        add(name, types.CompletionItemKind.Class, "class", "class")
    return out


def complete(
    ls: SmalltalkLanguageServer, ctx: common.Context, names: NameIndex
) -> types.CompletionList:
    text = ctx.snap.text
    node = ctx.tree.node_at(ctx.offset) if ctx.tree is not None else None
    if node is not None and node.type in ("comment", "string"):
        start, end = ctx.tree.span(node) if ctx.tree is not None else (0, 0)
        if start < ctx.offset < end or (
            node.type == "comment" and not text[start:end].endswith('"')
        ):
            return types.CompletionList(is_incomplete=False, items=[])
    site = completion_site(text, ctx.offset)
    names.refresh(ls.project)
    if site.expects in ("selector", "symbol"):
        receiver = _receiver(ctx.tree, site, ls.project) if site.expects == "selector" else None
        candidates = selector_candidates(
            ls.project, names, site.prefix, receiver, site.expects == "symbol"
        )
    else:
        candidates = expression_candidates(
            ls.project, names, site.prefix, ctx.tree, ctx.offset, ctx.method
        )
    incomplete = len(candidates) > LIMIT
    rng = common.lsp_range(common.span_range(text, site.start, ctx.offset))
    items = [_item(c, i, rng) for i, c in enumerate(candidates[:LIMIT])]
    return types.CompletionList(is_incomplete=incomplete, items=items)


def _item(candidate: Candidate, rank: int, rng: types.Range) -> types.CompletionItem:
    # Lean items (clients default the filter text to the label, the format to plain text):
    # a completion list is a hundred of these on every keystroke.
    snippet = candidate.snippet
    return types.CompletionItem(
        label=candidate.label,
        kind=candidate.kind,
        detail=candidate.detail,
        sort_text=f"{rank:05d}",
        insert_text_format=types.InsertTextFormat.Snippet if snippet else None,
        text_edit=types.TextEdit(range=rng, new_text=snippet or candidate.label),
        data={"source": "static", "kind": candidate.what},
    )


def setup(ls: SmalltalkLanguageServer) -> None:
    names = NameIndex()

    @ls.handler(
        types.TEXT_DOCUMENT_COMPLETION,
        types.CompletionOptions(trigger_characters=TRIGGERS),
        empty=lambda: types.CompletionList(is_incomplete=False, items=[]),
    )
    async def on_completion(params: types.CompletionParams) -> types.CompletionList:
        ctx = common.context_at(ls, params.text_document.uri, params.position)
        if ctx is None:
            result = types.CompletionList(is_incomplete=False, items=[])
        else:
            result = complete(ls, ctx, names)
        # Other sources (the coder model, for clients without inline completion) add theirs.
        extra = [item for source in ls.completion_sources for item in await source(params)]
        if extra:
            result.items = [*result.items, *extra]
        return result
