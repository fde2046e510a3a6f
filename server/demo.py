"""A scripted editor session against the real server: what a user sees, printed.

The demo starts `smalltalk-lsp serve` over stdio like an editor does, opens a Tonel file of
the project, and asks for symbols, hover, definition, references, an inline completion
in a new method from the coder and (when a reasoner is configured) an Explain code action from
the reasoner; with nothing configured those are the embedded defaults (Qwen2.5-Coder 0.5B and
1.5B).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from lsprotocol import types
from pygls.lsp.client import LanguageClient

# A method the user starts writing at the end of the demo file; the cursor sits after `^ `.
NEW_METHOD = (
    "\n{ #category : #accessing }\n"
    "SRStore >> rightsCount [\n"
    '\t"Answer how many rights the receiver holds"\n\n'
    "\t^ "
)
# What follows the cursor: the editor closed the bracket already.
AFTER_CURSOR = "\n]\n"


class DemoClient(LanguageClient):
    def __init__(self) -> None:
        super().__init__("smalltalk-lsp-demo", "1")
        self.status: dict[str, Any] = {}
        self.messages: list[str] = []
        self.progress_done: list[str] = []


def _make_client() -> DemoClient:
    client = DemoClient()

    @client.feature("smalltalk/status")
    def on_status(params: Any) -> None:
        client.status = _as_dict(params)

    @client.feature(types.WINDOW_SHOW_MESSAGE)
    def on_message(params: types.ShowMessageParams) -> None:
        client.messages.append(params.message)

    @client.feature(types.WINDOW_LOG_MESSAGE)
    def on_log(params: types.LogMessageParams) -> None:
        pass

    @client.feature(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    def on_diagnostics(params: types.PublishDiagnosticsParams) -> None:
        pass

    @client.feature(types.WINDOW_WORK_DONE_PROGRESS_CREATE)
    def on_progress_create(params: types.WorkDoneProgressCreateParams) -> None:
        return None

    @client.feature(types.PROGRESS)
    def on_progress(params: types.ProgressParams) -> None:
        value = _as_dict(params.value)
        if value.get("kind") == "end":
            client.progress_done.append(str(params.token))

    return client


def _as_dict(value: Any) -> dict[str, Any]:
    """Plain dicts from what pygls hands over for custom notifications (named tuples)."""
    if hasattr(value, "_asdict"):
        value = value._asdict()
    if isinstance(value, dict):
        return {k: _as_dict(v) if hasattr(v, "_asdict") else v for k, v in value.items()}
    return {k: getattr(value, k) for k in dir(value) if not k.startswith("_")}


async def _wait_for(
    check: Callable[[], Any], timeout: float, interval: float = 0.2
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = await check() if asyncio.iscoroutinefunction(check) else check()
        if result:
            return result
        await asyncio.sleep(interval)
    return None


def _show(title: str, body: str) -> None:
    print(f"\n=== {title} ===")
    print(body.rstrip() or "(nothing)")


def _pos(text: str, needle: str, delta: int = 0) -> types.Position:
    offset = text.index(needle) + delta
    line = text.count("\n", 0, offset)
    return types.Position(line=line, character=offset - (text.rfind("\n", 0, offset) + 1))


async def run_demo(project: Path, timeout: float) -> int:
    project = project.resolve()
    demo_file = project / "tonel" / "StreamingRights-Core" / "SRStore.class.st"
    if not demo_file.is_file():
        candidates = sorted(project.rglob("*.class.st"))
        if not candidates:
            print(f"no Tonel class file under {project}", file=sys.stderr)
            return 2
        demo_file = candidates[0]
    text = demo_file.read_text(encoding="utf-8")
    uri = demo_file.as_uri()
    client = _make_client()
    await client.start_io(sys.executable, "-m", "server", "serve")
    started = time.monotonic()
    await client.initialize_async(
        types.InitializeParams(
            capabilities=types.ClientCapabilities(
                window=types.WindowClientCapabilities(work_done_progress=True),
                # As an editor: code actions resolved when chosen.
                text_document=types.TextDocumentClientCapabilities(
                    code_action=types.CodeActionClientCapabilities(
                        code_action_literal_support=types.ClientCodeActionLiteralOptions(
                            code_action_kind=types.ClientCodeActionKindOptions(
                                value_set=["refactor"]
                            )
                        ),
                        data_support=True,
                        resolve_support=types.ClientCodeActionResolveOptions(
                            properties=["edit", "command"]
                        ),
                    )
                ),
            ),
            root_uri=project.as_uri(),
            # The first suggestion processes the whole prompt cold; later keystrokes reuse it.
            initialization_options={
                "completion": {"max_generate_ms": 5000},
                "actions": {"max_tokens": 160, "hover_summaries": False},
            },
            workspace_folders=[types.WorkspaceFolder(uri=project.as_uri(), name=project.name)],
        )
    )
    client.initialized(types.InitializedParams())
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(
                uri=uri, language_id="smalltalk", version=1, text=text
            )
        )
    )
    doc = types.TextDocumentIdentifier(uri=uri)
    print(f"smalltalk-lsp demo on {project}\nopened {demo_file.relative_to(project)}")

    async def hover_on_class() -> str:
        pos = _pos(text, "#name : #SRStore", len("#name : #"))
        hover = await client.text_document_hover_async(
            types.HoverParams(text_document=doc, position=pos)
        )
        return hover.contents.value if hover and hasattr(hover.contents, "value") else ""

    hover_text = await _wait_for(hover_on_class, timeout=60)
    _show(f"hover on SRStore (project ready after {time.monotonic() - started:.1f} s)",
          hover_text or "")

    symbols = await client.text_document_document_symbol_async(
        types.DocumentSymbolParams(text_document=doc)
    )
    lines = []
    for symbol in symbols or []:
        lines.append(_symbol_line(symbol, 0))
    _show("document symbols", "\n".join(lines))

    send_pos = _pos(text, "self rights add:", len("self "))
    definition = await client.text_document_definition_async(
        types.DefinitionParams(text_document=doc, position=send_pos)
    )
    _show("definition of rights in `self rights add:` (implementors, ranked)",
          _locations(definition, project))

    references = await client.text_document_references_async(
        types.ReferenceParams(
            text_document=doc,
            position=_pos(text, "SRStore >> rights [", len("SRStore >> ")),
            context=types.ReferenceContext(include_declaration=False),
        )
    )
    _show("senders of #rights", _locations(references, project))

    await _demo_completion(client, doc, text, timeout)
    await _demo_explain(client, doc, text, project, timeout)

    await client.shutdown_async(None)
    client.exit(None)
    await client.stop()
    for message in client.messages:
        print(f"[server message] {message}")
    return 0


async def _demo_completion(
    client: DemoClient, doc: types.TextDocumentIdentifier, text: str, timeout: float
) -> None:
    edited = text + NEW_METHOD + AFTER_CURSOR
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=doc.uri, version=2),
            content_changes=[types.TextDocumentContentChangeWholeDocument(text=edited)],
        )
    )
    before = text + NEW_METHOD
    cursor = types.Position(line=before.count("\n"), character=len(before.rsplit("\n", 1)[-1]))
    print("\n=== inline completion in a new method ===")
    print(NEW_METHOD.strip("\n") + "█" + AFTER_CURSOR.rstrip())
    await _wait_for(
        lambda: client.status.get("models", {}).get("coder") in ("ready", "failed"), timeout
    )
    print(f"(coder: {_model_line(client, 'coder')})")
    params = types.InlineCompletionParams(
        text_document=doc,
        position=cursor,
        context=types.InlineCompletionContext(
            trigger_kind=types.InlineCompletionTriggerKind.Invoked
        ),
    )
    # The request waits for the suggestion however long the prompt takes (smalltalk/status
    # says the coder is thinking meanwhile).
    started = time.monotonic()
    result = await client.text_document_inline_completion_async(params)
    elapsed = (time.monotonic() - started) * 1000
    items: Any = result.items if isinstance(result, types.InlineCompletionList) else (result or [])
    if not items:
        print(f"(no suggestion; coder status: {client.status.get('models', {}).get('coder')})")
        return
    first = items[0].insert_text
    suggestion = first if isinstance(first, str) else first.value
    print(f"suggestion ({elapsed:.0f} ms): {suggestion!r}")


def _model_line(client: DemoClient, role: str) -> str:
    names = client.status.get("names") or {}
    name = names.get(role, "?") if isinstance(names, dict) else "?"
    return f"{name}, {client.status.get('models', {}).get(role)}"


async def _demo_explain(
    client: DemoClient, doc: types.TextDocumentIdentifier, text: str, project: Path,
    timeout: float,
) -> None:
    """Explain on a method, as the light bulb runs it: the reasoner's note."""
    needle = "SRStore >> rightsFor: aTerritory ["
    print("\n=== Explain SRStore >> rightsFor: (code action, the reasoning model) ===")
    if needle not in text:
        print("(the demo file has no SRStore >> rightsFor:)")
        return
    await _wait_for(
        lambda: client.status.get("models", {}).get("reasoner") in ("ready", "failed", "off"),
        timeout,
    )
    print(f"(reasoner: {_model_line(client, 'reasoner')})")
    if client.status.get("models", {}).get("reasoner") != "ready":
        return
    pos = _pos(text, needle, len("SRStore >> "))
    actions = await client.text_document_code_action_async(
        types.CodeActionParams(
            text_document=doc,
            range=types.Range(start=pos, end=pos),
            context=types.CodeActionContext(diagnostics=[], only=["refactor.smalltalk.explain"]),
        )
    )
    found = [a for a in actions or [] if isinstance(a, types.CodeAction)]
    if not found:
        print("(no Explain offered here)")
        return
    started = time.monotonic()
    resolved = await client.code_action_resolve_async(found[0])
    note_uri = (resolved.command.arguments or [None])[0] if resolved.command else None
    if not isinstance(note_uri, str):
        print("(the explanation gave no note)")
        return
    note = Path(unquote(urlparse(note_uri).path))
    print(f"({time.monotonic() - started:.1f} s; the note is {note.relative_to(project)})")
    print(note.read_text(encoding="utf-8").rstrip())


def _symbol_line(symbol: Any, depth: int) -> str:
    lines = ["  " * depth + f"{symbol.name}" + (f"  ({symbol.detail})" if symbol.detail else "")]
    for child in getattr(symbol, "children", None) or []:
        lines.append(_symbol_line(child, depth + 1))
    return "\n".join(lines)


def _locations(result: Any, root: Path) -> str:
    if result is None:
        return ""
    found = list(result) if isinstance(result, list | tuple) else [result]
    lines = []
    for loc in found:
        if isinstance(loc, types.LocationLink):
            uri, rng = loc.target_uri, loc.target_selection_range
        else:
            uri, rng = loc.uri, loc.range
        path = Path(unquote(urlparse(uri).path))
        shown = path.relative_to(root) if path.is_relative_to(root) else path
        lines.append(f"{shown}:{rng.start.line + 1}")
    return "\n".join(lines)
