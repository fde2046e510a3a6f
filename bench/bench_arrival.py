"""Suggestions that arrive, across files: our server through its LSP against llama-server.

    .venv/bin/python bench/bench_arrival.py [--model GGUF] [--llama-server BIN] [--threads 2]

The peer is llama-server (the engine behind llama.vim and llama.vscode) run as its users run
it: `/infill`, `-np 4` slots, `--cache-reuse 256`, `-b 1024 -ub 1024` (llama.vim's README), 256
lines before and 64 after the cursor, the same model and thread count, `t_max_predict_ms`
equal to our generation cap. Each side runs alone (the other's process is not running), on the
same places, one after the other (`--peer-first` swaps the order):

  cold             the first request in an emptied method of file A
  one char         the first character of the method's real body typed, asked again
  another file     the same in file B
  back to first    back to A, one more character of the real body typed
  accept+continue  A's last suggestion read for --read-s, accepted whole, the next asked at
                   once (latency from the accept)

Places (fixed rule, no hand picking): the Tonel `*.class.st` files of the corpus between 30
and 100 KB with at least 20 methods, sorted by path; A is the first, B the middle one; in each,
the method in the middle of the file whose body has at least two non-empty lines is emptied.

Targets: cold <= peer; one char <= 0.5x peer; back to first <= 0.5x peer; accept+continue <=
0.2x the peer's cold. Prints the load (`uptime`) before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.uris import from_fs_path
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peer import default_coder_path, llama_server  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
STEPS = ("cold", "one char", "another file", "back to first", "accept+continue")
_HEADER = re.compile(r"^[A-Za-z0-9_]+( class)? >> .*\[\s*$")
INDEX_READY = ("retrieval index: ", "without similar-code search")


# --- places ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Place:
    path: Path
    text: str  # the file with the chosen method's body emptied
    offset: int  # the cursor: the start of the emptied body
    body: str  # the real body, stripped (its first characters are what gets typed)

    def typed(self, n: int) -> tuple[str, int]:
        """The document after typing the body's first n characters, and the cursor."""
        head = self.body[:n]
        return self.text[: self.offset] + head + self.text[self.offset :], self.offset + n


def methods_of(text: str) -> list[tuple[int, int]]:
    """(body start, body end) of each Tonel method: after the header line, before its `]`."""
    spans = []
    lines = text.split("\n")
    pos = 0
    start = None
    for line in lines:
        if start is None and _HEADER.match(line):
            start = pos + len(line) + 1
        elif start is not None and line == "]":
            spans.append((start, pos))
            start = None
        pos += len(line) + 1
    return spans


def choose_places(corpus: Path) -> list[Place]:
    files = []
    for path in sorted(corpus.rglob("*.class.st")):
        size = path.stat().st_size
        if 30_000 <= size <= 100_000:
            text = path.read_text(encoding="utf-8", errors="replace").replace("\r\n", "\n")
            if len(methods_of(text)) >= 20:
                files.append((path, text))
    if len(files) < 2:
        raise SystemExit(f"{corpus}: fewer than two Tonel files fit the rule")
    places = []
    for path, text in (files[0], files[len(files) // 2]):
        spans = [s for s in methods_of(text) if len([x for x in text[s[0] : s[1]].split("\n")
                                                     if x.strip()]) >= 2]
        start, end = spans[len(spans) // 2]
        body = text[start:end].strip()
        emptied = text[:start] + "\t\n" + text[end:]  # `[`, a tab (the cursor), `]` below
        places.append(Place(path, emptied, start + 1, body))
    return places


def position_of(text: str, offset: int) -> types.Position:
    line = text.count("\n", 0, offset)
    return types.Position(line=line, character=offset - (text.rfind("\n", 0, offset) + 1))


# --- our server through its LSP --------------------------------------------------------------


class Ours:
    def __init__(self, model: Path, threads: int, work: Path) -> None:
        self.model, self.threads, self.work = model, threads, work
        self.versions: dict[str, int] = {}
        self.client: LanguageClient | None = None
        self.last: list[dict[str, Any]] = []

    async def start(self, places: list[Place]) -> None:
        root = self.work / "ours"
        for place in places:
            target = root / place.path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(place.path, target)
        config = ClientServerConfig(server_command=[sys.executable, "-m", "server", "serve"])
        client = await config.start()
        assert isinstance(client, LanguageClient)
        self.client = client
        states: list[str] = []

        @client.feature("smalltalk/status")
        def on_status(params):  # type: ignore[no-untyped-def]
            states.append(params.models.coder)
            last = getattr(params.completion, "last", None)
            if last is not None:
                self.last.append(last._asdict())

        options = {
            "models": {"code_generation": str(self.model), "reasoning": "off"},
            # Generation on the server's default (half the threads): two generation threads
            # on a loaded 2-core machine gave 2 tokens in 5 s.
            "cpu_settings": {"threads": self.threads},
        }
        await client.initialize_session(
            types.InitializeParams(
                capabilities=client_capabilities("visual-studio-code"),
                root_uri=from_fs_path(str(root)),
                initialization_options=options,
            )
        )
        await _until(lambda: "ready" in states or "failed" in states, 600, "the coder")
        if "failed" in states:
            raise RuntimeError("our coder failed to load")
        await _until(
            lambda: any(any(n in m.message for n in INDEX_READY) for m in client.log_messages),
            600, "the retrieval index",
        )
        self.root = root

    def uri(self, place: Place) -> str:
        return from_fs_path(str(self.root / place.path.name)) or ""

    def show(self, place: Place, text: str) -> None:
        assert self.client is not None
        uri = self.uri(place)
        version = self.versions.get(uri, 0) + 1
        self.versions[uri] = version
        if version == 1:
            self.client.text_document_did_open(
                types.DidOpenTextDocumentParams(
                    text_document=types.TextDocumentItem(
                        uri=uri, language_id="smalltalk", version=1, text=text
                    )
                )
            )
            return
        self.client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
                content_changes=[types.TextDocumentContentChangeWholeDocument(text=text)],
            )
        )

    async def ask(self, place: Place, text: str, offset: int) -> tuple[str, dict[str, Any]]:
        assert self.client is not None
        seen = self.last[-1]["n"] if self.last else 0
        result = await self.client.text_document_inline_completion_async(
            types.InlineCompletionParams(
                text_document=types.TextDocumentIdentifier(uri=self.uri(place)),
                position=position_of(text, offset),
                context=types.InlineCompletionContext(
                    trigger_kind=types.InlineCompletionTriggerKind.Automatic
                ),
            )
        )
        await _until(lambda: bool(self.last) and self.last[-1]["n"] > seen, 10, "the report")
        info = self.last[-1]
        figures = {k: info.get(k) for k in ("prompt_tokens", "reused_tokens", "restored_tokens",
                                              "source")}
        if not isinstance(result, types.InlineCompletionList) or not result.items:
            return "", figures
        item = result.items[0].insert_text
        return (item if isinstance(item, str) else item.value), figures

    async def stop(self) -> None:
        if self.client is not None:
            await self.client.shutdown_session()
            await self.client.stop()


# --- the peer: llama-server /infill ----------------------------------------------------------


class Peer:
    def __init__(self, binary: Path, model: Path, threads: int, max_generate_ms: int) -> None:
        self.binary, self.model, self.threads = binary, model, threads
        self.max_generate_ms = max_generate_ms
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self, places: list[Place]) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.proc = subprocess.Popen(
            [str(self.binary), "-m", str(self.model), "--port", str(self.port),
             "--host", "127.0.0.1", "-np", "4", "--cache-reuse", "256", "-t", str(self.threads),
             # llama.vim's recommended batch (its README): /infill keeps the prompt to one
             # batch, 3/4 of it before the cursor.
             "-c", "16384", "-b", "1024", "-ub", "1024"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 300
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("llama-server did not start")
            await asyncio.sleep(0.5)

    def show(self, place: Place, text: str) -> None:
        pass  # llama-server sees a document only in a request

    async def ask(self, place: Place, text: str, offset: int) -> tuple[str, dict[str, Any]]:
        # llama.vim's request: 256 lines before the cursor's line, its text up to the cursor
        # as `prompt`, the rest of it and 64 lines after as the suffix.
        lines = text.split("\n")
        row = text.count("\n", 0, offset)
        col = offset - (text.rfind("\n", 0, offset) + 1)
        current = lines[row]
        body = {
            "input_prefix": "\n".join(lines[max(0, row - 256) : row]) + "\n",
            "prompt": current[:col],
            "input_suffix": current[col:] + "\n" + "\n".join(lines[row + 1 : row + 1 + 64]) + "\n",
            "input_extra": [],
            "n_predict": 128,
            "top_k": 40,
            "top_p": 0.99,
            "samplers": ["top_k", "top_p", "infill"],
            "stream": False,
            "cache_prompt": True,
            "t_max_predict_ms": self.max_generate_ms,
        }
        data = json.dumps(body).encode("utf-8")

        def post() -> dict[str, Any]:
            request = urllib.request.Request(
                f"http://127.0.0.1:{self.port}/infill", data,
                {"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=600) as r:
                return dict(json.loads(r.read()))

        answer = await asyncio.to_thread(post)
        timings = answer.get("timings", {})
        return str(answer.get("content", "")), {
            "prompt_tokens": timings.get("prompt_n"),
            "cached": answer.get("tokens_cached"),
        }

    async def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(30)


# --- one side's run --------------------------------------------------------------------------


async def run_side(side: Any, places: list[Place], read_s: float) -> dict[str, Any]:
    first, second = places
    rows: dict[str, Any] = {}

    async def step(name: str, place: Place, text: str, offset: int) -> str:
        side.show(place, text)
        started = time.perf_counter()
        suggestion, figures = await side.ask(place, text, offset)
        rows[name] = {"ms": (time.perf_counter() - started) * 1000, "suggestion": suggestion,
                      **figures}
        return suggestion

    await step("cold", first, first.text, first.offset)
    text, offset = first.typed(1)
    await step("one char", first, text, offset)
    await step("another file", second, second.text, second.offset)
    text, offset = first.typed(2)
    shown = await step("back to first", first, text, offset)
    if shown:
        await asyncio.sleep(read_s)  # the user reads the suggestion, then accepts it
        accepted = text[:offset] + shown + text[offset:]
        await step("accept+continue", first, accepted, offset + len(shown))
    return rows


def snapshot_costs(model_path: Path, threads: int, places: list[Place]) -> None:
    """What keeping a document's prompt state costs: the copy out and back in (llama_state_seq_
    get_data / set_data) against evaluating the same prompt again, in process."""
    from server.engine.llama_model import load_model
    from server.engine.session import LlamaSession
    from server.engine.types import CancelToken, GenerateParams

    model = load_model(model_path)
    session = LlamaSession(model, n_ctx=4096, n_batch=512, n_threads=threads)
    try:
        texts = [p.text[max(0, p.offset - 3000) : p.offset] for p in places]
        line = GenerateParams(max_tokens=1, warm_slots=4)
        cold = session.generate(texts[0], replace(line, cache_slot="a"), CancelToken())
        snapshots = session.adapters.snapshots
        started = time.perf_counter()
        session.generate(texts[1], replace(line, cache_slot="b"), CancelToken())
        switch_ms = (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        back = session.generate(texts[0], replace(line, cache_slot="a"), CancelToken())
        back_ms = (time.perf_counter() - started) * 1000
        print(f"snapshots: {cold.prompt_tokens} tokens evaluated cold in {cold.prompt_ms:.0f} ms; "
              f"kept {snapshots.bytes / 2**20:.1f} MiB; back to the first: "
              f"{back.restored_tokens} tokens restored, {back_ms:.0f} ms in all "
              f"(switching to the other file, cold, took {switch_ms:.0f} ms)")
    finally:
        session.close()
        model.close()


async def main_async(args: argparse.Namespace) -> None:
    places = choose_places(args.corpus)
    if args.snapshots:
        print(f"load: {_uptime()}")
        snapshot_costs(args.model, args.threads, places)
        return
    load_before = _uptime()
    print(f"load before: {load_before}")
    for place in places:
        print(f"place: {place.path.relative_to(args.corpus)} offset {place.offset} "
              f"(body starts {place.body[:24]!r})")
    results: dict[str, dict[str, Any]] = {}
    work = Path(tempfile.mkdtemp(prefix="bench-arrival-"))
    try:
        sides = [("ours", Ours(args.model, args.threads, work)),
                 ("peer", Peer(args.llama_server, args.model, args.threads, args.max_generate_ms))]
        if args.peer_first:
            sides.reverse()
        for name, side in sides:
            try:
                await side.start(places)
                results[name] = await run_side(side, places, args.read_s)
            finally:
                await side.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"load after: {_uptime()}")
    report(results)


def report(results: dict[str, dict[str, Any]]) -> None:
    ours, peer = results["ours"], results["peer"]
    targets = {"cold": ("cold", 1.0), "one char": ("one char", 0.5),
               "back to first": ("back to first", 0.5), "accept+continue": ("cold", 0.2)}
    print("\n| step | llama-server -np 4 (ms) | smalltalk-lsp (ms) | ratio | target |")
    print("|---|---|---|---|---|")
    for step in STEPS:
        o, p = ours.get(step), peer.get(step)
        if o is None or p is None:
            print(f"| {step} | {_ms(p)} | {_ms(o)} | n/a | |")
            continue
        against, limit = targets.get(step, (step, None))  # type: ignore[arg-type]
        base = peer[against]["ms"]
        ratio = o["ms"] / base
        target = "" if limit is None else (
            f"<= {limit}x peer {'cold' if against != step else ''}".strip()
            + (" ok" if ratio <= limit else " MISSED")
        )
        print(f"| {step} | {p['ms']:.0f} ({p.get('prompt_tokens')} prompt tokens) | "
              f"{o['ms']:.0f} ({o.get('prompt_tokens')} prompt, {o.get('reused_tokens')} reused, "
              f"{o.get('restored_tokens')} restored, {o.get('source')}) | {ratio:.2f} | {target} |")
    print("\nsuggestions (ours | peer):")
    for step in STEPS:
        o, p = ours.get(step, {}), peer.get(step, {})
        print(f"  {step}: {o.get('suggestion', '')[:60]!r} | {p.get('suggestion', '')[:60]!r}")


def _ms(row: dict[str, Any] | None) -> str:
    return "n/a" if row is None else f"{row['ms']:.0f}"


async def _until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def default_corpus() -> Path:
    for base in (ROOT.parent, ROOT.parent.parent, Path("/work")):
        candidate = base / "shared" / "corpus" / "pharo-subset"
        if candidate.is_dir():
            return candidate
    return ROOT.parent / "shared" / "corpus" / "pharo-subset"


def default_llama_server() -> Path:
    return llama_server() or Path("llama-server")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=None,
                        help="GGUF (default: the embedded default coder)")
    parser.add_argument("--llama-server", type=Path, default=default_llama_server())
    parser.add_argument("--corpus", type=Path, default=default_corpus())
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--read-s", type=float, default=1.5,
                        help="how long the user reads a suggestion before accepting it")
    parser.add_argument("--peer-first", action="store_true",
                        help="run the peer's column first (the load drifts over a run)")
    parser.add_argument("--snapshots", action="store_true",
                        help="only measure what keeping a document's prompt state costs")
    parser.add_argument("--max-generate-ms", type=int, default=5000,
                        help="the peer's t_max_predict_ms (our default cap)")
    args = parser.parse_args()
    if args.model is None:
        args.model = default_coder_path()
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
