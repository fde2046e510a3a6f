"""Call hierarchy: incoming calls are the senders of a method's selector (method by method,
with the ranges of the sends and `#symbol` literals), outgoing calls the selectors a method
sends, each resolved to its implementors ranked as definition ranks them (the receiver's
class, then its superclasses).

An item's `data` is `{"path", "class", "side", "selector"}` of the method it stands for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lsprotocol import types

from server.features import common
from server.features.analysis import method_tree, ranked_implementor_refs, target_at
from server.features.navigation import _method_occurrences, ref_location
from server.project_model import MethodRef
from smalltalk_grammar import MethodDef, offset_at

if TYPE_CHECKING:
    from server.core import SmalltalkLanguageServer

# Outgoing calls list this many implementors of each sent selector, at most.
IMPLEMENTORS_PER_SEND = 3
# A selector implemented everywhere (`printOn:`) prepares this many items, best ranked first.
PREPARE_LIMIT = 20
# Beyond this many senders, a call's range is the sender's selector (its file is not read).
EXACT_LIMIT = 100


def item(path: str, method: MethodDef) -> types.CallHierarchyItem:
    side = " class" if method.side == "class" else ""
    owner = method.class_name or "(method)"
    return types.CallHierarchyItem(
        name=f"{owner}{side} >> {method.selector}",
        kind=types.SymbolKind.Method,
        uri=common.uri_of(path),
        range=common.lsp_range(method.range),
        selection_range=common.lsp_range(method.selector_range),
        detail=method.category,
        data={
            "path": path,
            "class": method.class_name,
            "side": method.side,
            "selector": method.selector,
        },
    )


def _loaded(ls: SmalltalkLanguageServer, refs: list[MethodRef]) -> list[tuple[str, MethodDef]]:
    found = []
    for ref in refs:
        method = ls.project.method(ref)
        if method is not None:
            found.append((ref.path, method))
    return found


def prepare(ls: SmalltalkLanguageServer, ctx: common.Context) -> list[types.CallHierarchyItem]:
    target = ctx.target
    if target is not None and target.kind == "selector":
        if target.definition and ctx.method is not None:
            return [item(ctx.snap.path, ctx.method)]
        refs = ranked_implementor_refs(ls.project, target.name, target.receiver)
        return [item(path, m) for path, m in _loaded(ls, refs[:PREPARE_LIMIT])]
    if ctx.method is not None:
        return [item(ctx.snap.path, ctx.method)]
    return []


def _method_of(ls: SmalltalkLanguageServer, data: Any) -> tuple[str, MethodDef] | None:
    if not isinstance(data, dict) or not isinstance(data.get("path"), str):
        return None
    source = ls.project.file(data["path"])
    for method in source.methods if source is not None else []:
        key = (method.class_name, method.side, method.selector)
        if key == (data.get("class"), data.get("side"), data.get("selector")):
            return data["path"], method
    return None


def _ranges(text: str, spans: list[tuple[int, int]]) -> list[types.Range]:
    return [common.lsp_range(common.span_range(text, s, e)) for s, e in spans]


def incoming(
    ls: SmalltalkLanguageServer, data: Any
) -> list[types.CallHierarchyIncomingCall]:
    if not isinstance(data, dict) or not isinstance(data.get("selector"), str):
        return []
    selector = data["selector"]
    calls = []
    for count, ref in enumerate(ls.project.sender_refs(selector)):
        if count >= EXACT_LIMIT:
            calls.append(_summary_call(ref, selector))
            continue
        method = ls.project.method(ref)
        if method is None:
            continue
        path = ref.path
        text = common.file_text(ls, path)
        spans = _method_occurrences(ls, path, text, method, "selector", selector) if text else []
        ranges = _ranges(text or "", spans) or [common.lsp_range(method.selector_range)]
        calls.append(types.CallHierarchyIncomingCall(from_=item(path, method), from_ranges=ranges))
    return calls


def _summary_call(ref: MethodRef, selector: str) -> types.CallHierarchyIncomingCall:
    """A sender known from the summaries only: its selector range stands for the method."""
    location = ref_location(ref)
    side = " class" if ref.side == "class" else ""
    sender = types.CallHierarchyItem(
        name=f"{ref.class_name}{side} >> (sends {selector})",
        kind=types.SymbolKind.Method,
        uri=location.uri,
        range=location.range,
        selection_range=location.range,
    )
    return types.CallHierarchyIncomingCall(from_=sender, from_ranges=[location.range])


def outgoing(
    ls: SmalltalkLanguageServer, data: Any
) -> list[types.CallHierarchyOutgoingCall]:
    found = _method_of(ls, data)
    if found is None:
        return []
    path, method = found
    text = common.file_text(ls, path)
    if not text:
        return []
    base = offset_at(text, method.selector_range.start)
    tree = method_tree(text, common.file_format(ls, path), method, base)
    calls = []
    for selector in dict.fromkeys(method.sends):
        spans = _method_occurrences(ls, path, text, method, "selector", selector)
        target = target_at(tree, spans[0][0], ls.project) if spans else None
        receiver = target.receiver if target is not None else None
        refs = ranked_implementor_refs(ls.project, selector, receiver)[:IMPLEMENTORS_PER_SEND]
        ranges = _ranges(text, spans) or [common.lsp_range(method.selector_range)]
        for impl_path, impl in _loaded(ls, refs):
            calls.append(
                types.CallHierarchyOutgoingCall(to=item(impl_path, impl), from_ranges=ranges)
            )
    return calls


def setup(ls: SmalltalkLanguageServer) -> None:
    @ls.handler(types.TEXT_DOCUMENT_PREPARE_CALL_HIERARCHY, empty=list)
    def on_prepare(params: types.CallHierarchyPrepareParams) -> list[types.CallHierarchyItem]:
        ctx = common.context_at(ls, params.text_document.uri, params.position)
        return prepare(ls, ctx) if ctx is not None else []

    @ls.handler(types.CALL_HIERARCHY_INCOMING_CALLS, empty=list)
    def on_incoming(
        params: types.CallHierarchyIncomingCallsParams,
    ) -> list[types.CallHierarchyIncomingCall]:
        return incoming(ls, params.item.data)

    @ls.handler(types.CALL_HIERARCHY_OUTGOING_CALLS, empty=list)
    def on_outgoing(
        params: types.CallHierarchyOutgoingCallsParams,
    ) -> list[types.CallHierarchyOutgoingCall]:
        return outgoing(ls, params.item.data)
