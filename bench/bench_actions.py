"""Code actions: the time to resolve Explain with the embedded reasoner and its tokens/s, and
completion latency while an explanation runs, against idle.

    .venv/bin/python bench/bench_actions.py [--max-tokens 256] [--rounds 5]

Starts the real server (`python -m server serve`) on a copy of the Tonel sample with the
small embedded models (Gemma 3 270M coder, SmolLM2-135M reasoner), over stdio:

1. Explain on `SRStore >> rightsFor:`: resolve time, tokens, tokens/s while generating;
2. `--rounds` pairs of inline completions (at most 16 tokens each, at the end of a new empty
   method: a new prompt every time, so no cache answers, with a stable front, as when
   typing): one with the server idle, one issued while an Explain generates (which is then
   cancelled). Pairs close in time cancel out the drifting load of a shared machine;
3. step 2 again on a second server whose actions do not give way to completions
   (SMALLTALK_LSP_ACTIONS_NO_YIELD=1), for comparison.

The completion budget is raised to 10 minutes so that latencies are measured, not cut.
Target: a completion during an explanation within 1.5x of its idle latency.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.uris import from_fs_path
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "tests" / "fixtures" / "sample" / "tonel"
STORE = "StreamingRights-Core/SRStore.class.st"


def options(max_tokens: int) -> dict[str, Any]:
    return {
        # The models of the figures in BENCHMARKS.md (the defaults before Qwen2.5-Coder).
        "models": {"code_generation": "gemma3-270m", "reasoning": "smollm2-135m"},
        "cpu_settings": {"context_length": 2048},
        "retrieval": {"enabled": False},
        # Short suggestions: a completion's latency is then mostly the prompt, as when typing.
        "completion": {"max_generate_ms": 600_000, "max_tokens_line": 16, "max_tokens_block": 16},
        "actions": {"max_tokens": max_tokens, "temperature": 0.0, "hover_summaries": False},
    }


@dataclass
class Session:
    client: LanguageClient
    uri: str
    text: str
    version: int = 1
    counter: int = 0
    # (monotonic time, tokens) of every progress report that counted tokens.
    ticks: list[tuple[float, int]] = field(default_factory=list)


async def start(root: Path, max_tokens: int, no_yield: bool) -> Session:
    env = dict(os.environ)
    if no_yield:
        env["SMALLTALK_LSP_ACTIONS_NO_YIELD"] = "1"
    else:
        env.pop("SMALLTALK_LSP_ACTIONS_NO_YIELD", None)
    config = ClientServerConfig(
        server_command=[sys.executable, "-m", "server", "serve", "--log-level", "DEBUG"],
        server_env=env,
    )
    client = await config.start()
    client.feature(types.CLIENT_REGISTER_CAPABILITY)(lambda params: None)
    states: list[Any] = []
    client.feature("smalltalk/status")(lambda params: states.append(params.models))
    uri = from_fs_path(str(root)) or ""
    await client.initialize_session(
        types.InitializeParams(
            capabilities=client_capabilities("visual-studio-code"),
            root_uri=uri,
            workspace_folders=[types.WorkspaceFolder(uri=uri, name="bench")],
            initialization_options=options(max_tokens),
        )
    )
    while not (states and states[-1].coder == "ready" and states[-1].reasoner == "ready"):
        if states and "failed" in (states[-1].coder, states[-1].reasoner):
            raise SystemExit(f"a model failed to load: {states[-1]}")
        await asyncio.sleep(0.05)
    path = root / STORE
    text = path.read_text()
    doc_uri = from_fs_path(str(path)) or ""
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(
                uri=doc_uri, language_id="smalltalk", version=1, text=text
            )
        )
    )
    return Session(client, doc_uri, text)


async def stop(session: Session) -> None:
    await session.client.shutdown_session()
    await session.client.stop()


async def complete(session: Session) -> float:
    """One inline completion at the end of a new empty method; its latency in seconds."""
    session.counter += 1
    session.version += 1
    # Same length every time: the prompt's window (the text before the cursor) keeps its
    # front, so the coder's KV prefix is reused, as between keystrokes.
    stub = f"\n{{ #category : #accessing }}\nSRStore >> benchCount{session.counter:04d} [\n\t"
    text = session.text + stub
    session.client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(
                uri=session.uri, version=session.version
            ),
            content_changes=[types.TextDocumentContentChangeWholeDocument(text=text)],
        )
    )
    lines = text.split("\n")
    at = types.Position(line=len(lines) - 1, character=len(lines[-1]))
    params = types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=session.uri),
        position=at,
        context=types.InlineCompletionContext(
            trigger_kind=types.InlineCompletionTriggerKind.Automatic
        ),
    )
    began = time.perf_counter()
    result = await session.client.text_document_inline_completion_async(params)
    took = time.perf_counter() - began
    items = result.items if isinstance(result, types.InlineCompletionList) else result or []
    suggestion = items[0].insert_text if items else ""
    print(f"  completion {session.counter}: {took * 1000:.0f} ms {suggestion!r:.40}", flush=True)
    return took


async def explain_action(session: Session) -> types.CodeAction:
    offset = session.text.index("SRStore >> rightsFor:") + 12
    line = session.text.count("\n", 0, offset)
    pos = types.Position(line=line, character=offset - session.text.rfind("\n", 0, offset) - 1)
    actions = await session.client.text_document_code_action_async(
        types.CodeActionParams(
            text_document=types.TextDocumentIdentifier(uri=session.uri),
            range=types.Range(start=pos, end=pos),
            context=types.CodeActionContext(
                diagnostics=[], only=["refactor.smalltalk.explain"]  # type: ignore[list-item]
            ),
        )
    )
    found = [a for a in actions or [] if isinstance(a, types.CodeAction)]
    if not found:
        raise SystemExit("no Explain action offered")
    return found[0]


async def watch_tokens(session: Session, stop_event: asyncio.Event) -> None:
    """Timestamp progress reports as they arrive (pytest-lsp keeps them without times)."""
    seen: set[int] = set()
    while not stop_event.is_set():
        for values in list(session.client.progress_reports.values()):
            for value in values:
                if id(value) in seen or not isinstance(value, types.WorkDoneProgressReport):
                    continue
                seen.add(id(value))
                found = re.search(r"(\d+) tokens", value.message or "")
                if found:
                    session.ticks.append((time.monotonic(), int(found.group(1))))
        await asyncio.sleep(0.01)


def tokens_of(note_markdown: str) -> tuple[int, float]:
    found = re.search(r"in ([\d.]+) s, (\d+) tokens", note_markdown)
    return (int(found.group(2)), float(found.group(1))) if found else (0, 0.0)


async def explain(session: Session) -> dict[str, Any]:
    """Resolve Explain alone: wall time, tokens, tokens/s while generating."""
    action = await explain_action(session)
    stop_event = asyncio.Event()
    watcher = asyncio.ensure_future(watch_tokens(session, stop_event))
    session.ticks.clear()
    began = time.perf_counter()
    resolved = await session.client.code_action_resolve_async(action)
    wall = time.perf_counter() - began
    stop_event.set()
    await watcher
    print(f"  explain resolved in {wall:.1f} s", flush=True)
    command = resolved.command
    note = Path(command.arguments[0].removeprefix("file://")) if command else None
    tokens, _ = tokens_of(note.read_text()) if note else (0, 0.0)
    rate = 0.0
    if len(session.ticks) >= 2:
        (t0, n0), (t1, n1) = session.ticks[0], session.ticks[-1]
        rate = (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0
    return {"wall": wall, "tokens": tokens, "rate": rate}


async def completion_during_explain(session: Session, round_no: int) -> float:
    """Start Explain, issue a completion once it generates, then cancel the explanation."""
    action = await explain_action(session)
    stop_event = asyncio.Event()
    watcher = asyncio.ensure_future(watch_tokens(session, stop_event))
    session.ticks.clear()
    msg_id = f"bench-explain-{round_no}"
    future = session.client.protocol.send_request(types.CODE_ACTION_RESOLVE, action,
                                                  msg_id=msg_id)
    while not session.ticks or session.ticks[-1][1] < 8:
        if future.done():
            raise SystemExit("the explanation ended before a completion could be issued")
        await asyncio.sleep(0.02)
    latency = await complete(session)
    session.client.cancel_request(types.CancelParams(id=msg_id))
    try:
        await asyncio.wrap_future(future)
    except Exception:  # cancelled, as asked
        pass
    stop_event.set()
    await watcher
    return latency


async def run_server(root: Path, args: argparse.Namespace, no_yield: bool) -> dict[str, Any]:
    """Pairs of completions, one idle and one during an explanation, close together in time:
    the machine is shared and its load drifts, which pairing cancels out."""
    print(f"server {'without' if no_yield else 'with'} yielding:", flush=True)
    session = await start(root, args.max_tokens, no_yield)
    try:
        for _ in range(2):  # warm-up: the first prompt is evaluated in full, pages fault in
            await complete(session)
        alone = None if no_yield else await explain(session)
        idle: list[float] = []
        during: list[float] = []
        for round_no in range(args.rounds):
            idle.append(await complete(session))
            during.append(await completion_during_explain(session, round_no))
        return {"idle": idle, "during": during, "alone": alone}
    finally:
        await stop(session)


def ms(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values) * 1000:.0f} ms (median of {len(values)})"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-actions-") as tmp:
        root = Path(tmp) / "tonel"
        shutil.copytree(SAMPLE, root)
        with_yield = await run_server(root, args, no_yield=False)
        shutil.rmtree(root / ".smalltalk-lsp", ignore_errors=True)
        without = await run_server(root, args, no_yield=True)
    alone = with_yield["alone"]
    print(f"load average: {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end "
          f"({os.cpu_count()} cores)")
    print()
    print(f"Explain SRStore >> rightsFor: (reasoner SmolLM2-135M, max {args.max_tokens} tokens)")
    print(f"  resolve: {alone['wall']:.2f} s, {alone['tokens']} tokens, "
          f"{alone['rate']:.1f} tokens/s while generating")
    print()
    print("Inline completion (coder Gemma 3 270M, 16 tokens), new empty method in SRStore;")
    print("pairs of one idle completion and one issued while Explain generates:")
    print("| server | idle | during Explain | ratio (median of pairs) |")
    print("|---|---|---|---|")
    for label, result in (("yielding (default)", with_yield), ("not yielding", without)):
        ratios = [d / i for i, d in zip(result["idle"], result["during"], strict=True)]
        print(f"| {label} | {ms(result['idle'])} | {ms(result['during'])} | "
              f"{statistics.median(ratios):.2f}x |")
    ratios = [d / i for i, d in zip(with_yield["idle"], with_yield["during"], strict=True)]
    ratio = statistics.median(ratios)
    verdict = "met" if ratio <= 1.5 else "NOT met"
    print(f"\ntarget: a completion during Explain within 1.5x of idle: {verdict} ({ratio:.2f}x)")


if __name__ == "__main__":
    asyncio.run(main())
