"""In-process models against one shared remote server, side by side on the same model.

    .venv/bin/python bench/bench_remote.py [--requests 8] [--editors 8] [--per-editor 2]
                                           [--max-tokens 16] [--threads 1] [--shared-front]
                                           [--no-local-team]

Starts one `llama_cpp.server` (llama-cpp-python's server extra) on loopback with the embedded
coder (Gemma 3 270M Q4_K_M, flash attention as in process, interrupt_requests off), then
drives real language servers (`python -m server serve`) over stdio, each on its own copy of
the Tonel sample:

1. One editor: `--requests` inline completions, each in a new empty method of SRStore (the
   prompt's front stays the same, its end differs: no suggestion cache hit, prefix reuse as
   while typing), once with the coder in process and once through the server. Client-side
   latency p50/p95 (the first request of each, a warm-up, is left out).
2. `--editors` editors at once (8 language-server processes), each issuing `--per-editor`
   completions one after another, all editors together: with the coder in process in every
   editor and with every editor on the one server. Each editor's document starts with its own
   line, so no editor's prompt shares a front with another's (a server that keeps one
   context, as llama_cpp.server does, evaluates each prompt whole; `--shared-front` leaves
   that line out, the best case for such a server). Throughput (completions
   per second of the burst), latency p50/p95 under that load, and memory (proportional set
   size, so weights mapped by several processes count once).

Retrieval, the reasoner and hover summaries are off; completions have a budget of 5 minutes,
so nothing is cut short and the figures are about time. `--threads` defaults to 1: on a
2-core machine shared with other jobs, two llama.cpp threads wait for each other at every
step and generate several times slower than one; the in-process editors and the server get
the same number, so the comparison is fair either way.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
from lsprotocol import types
from pygls.uris import from_fs_path
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from remote_support import plain_server, remote_options  # noqa: E402

from server.engine.embedded import resolve_model_path  # noqa: E402

SAMPLE = ROOT / "tests" / "fixtures" / "sample" / "tonel"
STORE = "StreamingRights-Core/SRStore.class.st"


def options(max_tokens: int, server: str | None, threads: int) -> dict[str, Any]:
    base = remote_options(server) if server else {"models": {"reasoning": "off"}}
    return {
        **base,
        "cpu_settings": {"threads": threads, "context_length": 2048},
        "retrieval": {"enabled": False},
        "actions": {"hover_summaries": False},
        "completion": {"max_generate_ms": 300_000, "max_tokens_line": max_tokens,
                       "max_tokens_block": max_tokens},
    }


class Editor:
    """One language server with one open document, as one developer's editor."""

    def __init__(self, client: LanguageClient, root: Path, own_front: bool = True) -> None:
        self.client = client
        self.root = root
        self.front = f'"{root.name}"\n' if own_front else ""
        self.path = root / STORE
        self.uri = from_fs_path(str(self.path)) or ""
        self.version = 1
        self.states: list[str] = []

    @property
    def pid(self) -> int:
        return int(self.client._server.pid)  # type: ignore[union-attr]

    async def complete(self, number: int) -> tuple[float, str]:
        """An inline completion in a new empty method; (milliseconds, suggestion)."""
        method = f"\n{{ #category : #testing }}\nSRStore >> probe{number} [\n\n\t"
        # Each editor's own first line: prompts differ from the front, as when developers
        # work on different files (no prefix one editor's request leaves for another's).
        text = self.front + self.path.read_text() + method
        self.version += 1
        self.client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(
                    uri=self.uri, version=self.version
                ),
                content_changes=[types.TextDocumentContentChangeWholeDocument(text=text + "\n]\n")],
            )
        )
        at = types.Position(line=text.count("\n"), character=1)
        began = time.perf_counter()
        result = await self.client.text_document_inline_completion_async(
            types.InlineCompletionParams(
                text_document=types.TextDocumentIdentifier(uri=self.uri),
                position=at,
                context=types.InlineCompletionContext(
                    trigger_kind=types.InlineCompletionTriggerKind.Invoked
                ),
            )
        )
        ms = (time.perf_counter() - began) * 1000
        items = result.items if isinstance(result, types.InlineCompletionList) else []
        insert = items[0].insert_text if items else ""
        return ms, insert if isinstance(insert, str) else insert.value


async def open_editor(
    base: Path, name: str, settings: dict[str, Any], own_front: bool = True
) -> Editor:
    root = base / name
    shutil.copytree(SAMPLE, root, ignore=shutil.ignore_patterns(".smalltalk-lsp"))
    config = ClientServerConfig(
        server_command=[sys.executable, "-m", "server", "serve", "--log-level", "WARNING"]
    )
    client = await config.start()
    client.feature(types.CLIENT_REGISTER_CAPABILITY)(lambda params: None)
    editor = Editor(client, root, own_front)
    client.feature("smalltalk/status")(lambda p: editor.states.append(p.models.coder))
    uri = from_fs_path(str(root))
    await client.initialize_session(
        types.InitializeParams(
            capabilities=client_capabilities("visual-studio-code"),
            root_uri=uri,
            workspace_folders=[types.WorkspaceFolder(uri=uri, name=name)],
            initialization_options=settings,
        )
    )
    deadline = time.monotonic() + 600
    while not editor.states or editor.states[-1] != "ready":
        if editor.states and editor.states[-1] == "failed" or time.monotonic() > deadline:
            raise SystemExit(f"{name}: the coder did not load: {editor.states}")
        await asyncio.sleep(0.05)
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(
                uri=editor.uri, language_id="smalltalk", version=1, text=editor.path.read_text()
            )
        )
    )
    return editor


async def close(editors: list[Editor]) -> None:
    for editor in editors:
        await editor.client.shutdown_session()
        await editor.client.stop()


def pss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            total += psutil.Process(pid).memory_full_info().pss
        except (psutil.Error, AttributeError):
            total += psutil.Process(pid).memory_info().rss
    return total / 2**20


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def one_editor(base: Path, name: str, settings: dict[str, Any], n: int) -> list[float]:
    editor = await open_editor(base, name, settings)
    try:
        await editor.complete(0)  # warm-up: the first prompt is evaluated whole
        times = []
        for number in range(1, n + 1):
            ms, suggestion = await editor.complete(number)
            if not suggestion.strip():
                print(f"  ({name}: empty suggestion for probe{number})")
            times.append(ms)
        return times
    finally:
        await close([editor])


async def team(
    base: Path, name: str, settings: dict[str, Any], editors: int, per_editor: int,
    server_pid: int | None, own_front: bool,
) -> dict[str, float]:
    opened = await asyncio.gather(
        *(open_editor(base, f"{name}-{i}", settings, own_front) for i in range(editors))
    )
    try:
        await asyncio.gather(*(e.complete(0) for e in opened))  # warm-up, as one editor
        pids = [e.pid for e in opened] + ([server_pid] if server_pid else [])
        times: list[float] = []

        async def run(editor: Editor) -> None:
            for number in range(1, per_editor + 1):
                ms, _ = await editor.complete(number)
                times.append(ms)

        began = time.perf_counter()
        await asyncio.gather(*(run(e) for e in opened))
        wall = time.perf_counter() - began
        return {
            "wall_s": wall,
            "throughput": len(times) / wall,
            "p50": statistics.median(times),
            "p95": pct(times, 0.95),
            "pss_mb": pss_mb(pids),
        }
    finally:
        await close(list(opened))


async def main_async(args: argparse.Namespace) -> None:
    base = Path(tempfile.mkdtemp(prefix="bench-remote-"))
    server = plain_server(
        base, resolve_model_path("gemma3-270m"), "gemma3-270m", threads=args.threads
    )
    try:
        print(f"cpu: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
        started = time.perf_counter()
        server.start()
        pid = server.process.pid if server.process else None
        print(f"llama_cpp.server up in {time.perf_counter() - started:.1f}s ({server.url})")
        local = options(args.max_tokens, None, threads=args.threads)
        remote = options(args.max_tokens, server.url, threads=args.threads)

        print(f"\none editor, {args.requests} completions of <= {args.max_tokens} tokens (ms):")
        here = await one_editor(base, "single-local", local, args.requests)
        there = await one_editor(base, "single-remote", remote, args.requests)
        print(f"  {'':<12} {'p50':>8} {'p95':>8}")
        print(f"  {'in process':<12} {statistics.median(here):8.0f} {pct(here, 0.95):8.0f}")
        print(f"  {'remote':<12} {statistics.median(there):8.0f} {pct(there, 0.95):8.0f}")
        p50 = statistics.median(there) / statistics.median(here)
        p95 = pct(there, 0.95) / pct(here, 0.95)
        print(f"  remote / in process: p50 x{p50:.2f}, p95 x{p95:.2f}")
        print(f"  load average {os.getloadavg()[0]:.2f}")

        n = args.editors * args.per_editor
        fronts = "one shared prompt front" if args.shared_front else "own prompt fronts"
        print(f"\n{args.editors} editors at once, {args.per_editor} completions each ({n}), "
              f"{fronts}:")
        rows = []
        if not args.no_local_team:
            rows.append(("in process", await team(
                base, "team-local", local,
                args.editors, args.per_editor, None, not args.shared_front)))
        rows.append(("remote", await team(
            base, "team-remote", remote, args.editors, args.per_editor, pid,
            not args.shared_front)))
        print(f"  {'':<12} {'wall s':>7} {'compl/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'PSS MB':>8}")
        for label, row in rows:
            print(f"  {label:<12} {row['wall_s']:7.1f} {row['throughput']:8.2f} {row['p50']:8.0f}"
                  f" {row['p95']:8.0f} {row['pss_mb']:8.0f}")
        if len(rows) == 2:
            a, b = rows[0][1], rows[1][1]
            print(f"  remote / in process: throughput x{b['throughput'] / a['throughput']:.2f}, "
                  f"memory x{b['pss_mb'] / a['pss_mb']:.2f}")
        print(f"  load average {os.getloadavg()[0]:.2f}")
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=8, help="completions of one editor")
    parser.add_argument("--editors", type=int, default=8, help="editors at once")
    parser.add_argument("--per-editor", type=int, default=2, help="completions of each editor")
    parser.add_argument("--max-tokens", type=int, default=16, help="tokens per completion")
    parser.add_argument("--threads", type=int, default=1,
                        help="llama.cpp threads of the server and of an in-process editor")
    parser.add_argument("--shared-front", action="store_true",
                        help="the editors' documents begin alike (the server reuses a prefix)")
    parser.add_argument("--no-local-team", action="store_true",
                        help="skip the editors with in-process models")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
