"""Code actions: the time to resolve Explain with the embedded reasoner and its tokens/s, and
completion latency while an explanation runs, against idle.

    .venv/bin/python bench/bench_actions.py [--max-tokens 256] [--rounds 3]

Starts the real server (`python -m server serve`) on a copy of the Tonel sample with the
embedded default models (Gemma 3 270M coder, SmolLM2-135M reasoner), over stdio:

1. idle: `--rounds` inline completions, each at the end of a new empty method (a new prompt
   every time, so no cache answers; the prompt's front is stable, as when typing);
2. Explain on `SRStore >> rightsFor:` alone: resolve time, tokens, tokens/s;
3. the same Explain again, with a completion issued every second once it is generating;
4. steps 1 and 3 on a second server whose actions do not give way to completions
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
        "cpu_settings": {"context_length": 2048},
        "retrieval": {"enabled": False},
        "completion": {"budget_ms": 600_000},
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
        server_command=[sys.executable, "-m", "server", "serve"], server_env=env
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
    stub = f"\n{{ #category : #accessing }}\nSRStore >> benchCount{session.counter} [\n\t"
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
    await session.client.text_document_inline_completion_async(params)
    return time.perf_counter() - began


async def explain_action(session: Session) -> types.CodeAction:
    offset = session.text.index("SRStore >> rightsFor:") + 12
    line = session.text.count("\n", 0, offset)
    pos = types.Position(line=line, character=offset - session.text.rfind("\n", 0, offset) - 1)
    actions = await session.client.text_document_code_action_async(
        types.CodeActionParams(
            text_document=types.TextDocumentIdentifier(uri=session.uri),
            range=types.Range(start=pos, end=pos),
            context=types.CodeActionContext(
                diagnostics=[], only=[types.CodeActionKind("refactor.smalltalk.explain")]
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


async def explain(session: Session, completions: bool) -> dict[str, Any]:
    """Resolve Explain; with `completions`, issue one every second while it generates."""
    action = await explain_action(session)
    stop_event = asyncio.Event()
    watcher = asyncio.ensure_future(watch_tokens(session, stop_event))
    session.ticks.clear()
    began = time.perf_counter()
    task = asyncio.ensure_future(session.client.code_action_resolve_async(action))
    latencies: list[float] = []
    if completions:
        while not task.done():
            if session.ticks and session.ticks[-1][1] >= 8:
                latencies.append(await complete(session))
                await asyncio.sleep(1.0)
            else:
                await asyncio.sleep(0.02)
    resolved = await task
    wall = time.perf_counter() - began
    stop_event.set()
    await watcher
    command = resolved.command
    note = Path(command.arguments[0].removeprefix("file://")) if command else None
    tokens, seconds = tokens_of(note.read_text()) if note else (0, 0.0)
    rate = 0.0
    if len(session.ticks) >= 2:
        (t0, n0), (t1, n1) = session.ticks[0], session.ticks[-1]
        rate = (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0
    return {"wall": wall, "tokens": tokens, "rate": rate, "latencies": latencies}


async def run_server(root: Path, args: argparse.Namespace, no_yield: bool) -> dict[str, Any]:
    session = await start(root, args.max_tokens, no_yield)
    try:
        await complete(session)  # warm-up: the first prompt is evaluated in full
        idle = [await complete(session) for _ in range(args.rounds)]
        alone = None if no_yield else await explain(session, completions=False)
        during = await explain(session, completions=True)
        return {"idle": idle, "alone": alone, "during": during}
    finally:
        await stop(session)


def ms(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values) * 1000:.0f} ms (median of {len(values)})"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-actions-") as tmp:
        root = Path(tmp) / "tonel"
        shutil.copytree(SAMPLE, root)
        with_yield = await run_server(root, args, no_yield=False)
        shutil.rmtree(root / ".smalltalk-lsp", ignore_errors=True)
        without = await run_server(root, args, no_yield=True)
    alone = with_yield["alone"]
    during = with_yield["during"]
    idle = statistics.median(with_yield["idle"])
    print(f"load average at the end: {os.getloadavg()[0]:.1f} (2-core machine)")
    print()
    print(f"Explain SRStore >> rightsFor: (reasoner SmolLM2-135M, max {args.max_tokens} tokens)")
    print(f"  resolve, alone:                {alone['wall']:.2f} s, {alone['tokens']} tokens, "
          f"{alone['rate']:.1f} tokens/s while generating")
    print(f"  resolve, with {len(during['latencies'])} completions:    {during['wall']:.2f} s")
    print()
    print("Inline completion (coder Gemma 3 270M), new empty method at the end of SRStore:")
    print(f"  idle:                          {ms(with_yield['idle'])}")
    print(f"  during Explain (yielding):     {ms(during['latencies'])}"
          f"  -> {statistics.median(during['latencies']) / idle:.2f}x idle"
          if during["latencies"] else "  during Explain: no completion was issued")
    idle2 = statistics.median(without["idle"])
    lat2 = without["during"]["latencies"]
    print(f"  idle (second server):          {ms(without['idle'])}")
    print(f"  during Explain (no yielding):  {ms(lat2)}"
          f"  -> {statistics.median(lat2) / idle2:.2f}x idle" if lat2 else "  (none issued)")
    if during["latencies"]:
        ratio = statistics.median(during["latencies"]) / idle
        verdict = "met" if ratio <= 1.5 else "NOT met"
        print(f"\ntarget: completion during Explain <= 1.5x idle: {verdict} ({ratio:.2f}x)")


if __name__ == "__main__":
    asyncio.run(main())
