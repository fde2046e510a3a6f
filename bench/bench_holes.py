"""The holes benchmark: suggestions of the real server against llama-server `/infill` (the
way llama.vscode asks for them) with the same GGUF, on holes cut out of real code.

    .venv/bin/python bench/bench_holes.py [--holes 200] [--model PATH] [--no-peer]
        [--variant NAME=JSON ...] [--settings JSON] [--json-out FILE]

Holes come from ../shared/corpus/pharo-subset by the fixed rule in bench/holes_corpus.py
(whole method bodies of 1-6 lines, single statements of longer bodies, rests of lines; one per
file; `--holes N` takes the first N of the rule's order). The workspace is a copy of the
corpus with every hole cut out (so the project the server reads never holds an answer), kept
in ~/.cache/smalltalk-lsp-bench and indexed once with `smalltalk-lsp index` (the state of a
project a user has open). For each hole:
- each server variant (`python -m server serve` over stdio, pytest-lsp's client; the default
  settings except `models.code_generation`, plus the variant's settings) gets the holed file
  opened and one `textDocument/inlineCompletion` (triggerKind Invoked) at the hole, then the
  file closed;
- the peer, llama-server (`--llama-server`, `LLAMA_SERVER`, or the one
  ../shared/tools/build-llama-server.sh builds) started
  as llama.vscode's README starts it on 2 threads, gets llama.vscode's `/infill` request:
  input_prefix the 256 lines before the cursor line, prompt the line up to the cursor (empty
  if only indentation), input_suffix the rest of the line and the 64 lines after, n_predict
  128, t_max_predict_ms 500, top_k 40, top_p 0.99, samplers top_k/top_p/infill, n_indent,
  cache_prompt, no input_extra (a fresh editor: one request per file); its answer goes
  through llama.vscode's own post-processing (discard repeats, first line only before text).
The order of the sides rotates from hole to hole, and after each server answer the bench waits
until that server process is idle (work a budget cut goes on in the background must not slow
the next side down). Scores (holes_corpus.score): answered,
parses (the whole file with the suggestion parses with bare tree-sitter-pharo), first line
exact, edit similarity (Levenshtein on indentation-free lines), CrossCodeEval's identifier
exact match and F1, median latency of answered requests.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.uris import from_fs_path
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

sys.path.insert(0, str(Path(__file__).resolve().parent))
from holes_corpus import Hole, build_workspace, score, select_holes  # noqa: E402
from peer import DEFAULT_CODER, default_coder_path, llama_server  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
# ../shared/corpus beside the checkout (/work/main), or beside the worktrees' folder.
CORPUS = next((base / "shared" / "corpus" / "pharo-subset" / "src"
               for base in (ROOT.parent, ROOT.parent.parent)
               if (base / "shared" / "corpus" / "pharo-subset" / "src").is_dir()),
              ROOT.parent / "shared" / "corpus" / "pharo-subset" / "src")
CACHE = Path.home() / ".cache" / "smalltalk-lsp-bench"
N_PREFIX, N_SUFFIX, N_PREDICT, T_MAX_PREDICT_MS = 256, 64, 128, 500
# The server's debug line for a suggestion: `...: 'text' from 'raw' {timings}`.
_RAW = re.compile(r"\): .* from (?P<raw>'.*'|\".*\") (?P<timings>\{[^{}]*\})$", re.DOTALL)
# The server's debug line for a try that came to nothing before the next one (pipeline.generate).
_FAILED_TRY = re.compile(r"^DEBUG [\w.]+: (?P<raw>'.*'|\".*\") came to nothing (?P<why>\(.*?\)): "
                         r"generating again", re.DOTALL)


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(
            out.get(key), dict) else value
    return out


# --- the server over stdio ---------------------------------------------------------------


class ServerSide:
    def __init__(self, name: str, settings: dict[str, Any], workspace: Path,
                 code: Path | None = None) -> None:
        self.name, self.settings, self.workspace = name, settings, workspace
        # Another checkout's server code (e.g. the commit before a change), else this one's.
        self.code = code
        self.client: LanguageClient | None = None
        self.statuses: list[dict[str, Any]] = []
        self.timings: dict[str, Any] = {}  # of the last answer, from the server's log
        self.failed_tries: list[str] = []  # what the last answer's failed tries wrote

    async def start(self) -> None:
        # At debug level the server logs each suggestion's raw model output (see `ask`).
        command = [sys.executable, "-m", "server", "serve", "--log-level", "DEBUG"]
        env = None
        if self.code is not None:
            # -P: not the current folder first on the path, the other checkout instead.
            command = [sys.executable, "-P", *command[1:]]
            env = {**os.environ, "PYTHONPATH": str(self.code)}
        config = ClientServerConfig(server_command=command, server_env=env)
        client = await config.start()
        assert isinstance(client, LanguageClient)
        self.client = client

        @client.feature("smalltalk/status")
        def on_status(params: Any) -> None:
            self.statuses.append({"coder": params.models.coder, "indexing": params.indexing})

        await client.initialize_session(types.InitializeParams(
            capabilities=client_capabilities("visual-studio-code"),
            root_uri=from_fs_path(str(self.workspace)),
            initialization_options=self.settings,
        ))
        deadline = time.monotonic() + 600
        while True:
            last = self.statuses[-1] if self.statuses else {}
            if last.get("coder") == "failed":
                raise RuntimeError(f"{self.name}: the coder failed to load")
            if last.get("coder") == "ready" and last.get("indexing") is None:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: the coder did not load")
            await asyncio.sleep(0.2)
        await asyncio.sleep(3.0)  # the index sync after the scan (nothing left to embed)

    async def ask(self, hole: Hole, workspace: Path) -> tuple[str, float, str | None]:
        """The suggestion, the seconds it took, and the raw model output the server logged
        (its timings and token counts go to `self.timings`)."""
        client = self.client
        assert client is not None
        self.timings, self.failed_tries = {}, []
        seen = len(client.log_messages)
        uri = from_fs_path(str(workspace / "src" / hole.path)) or ""
        client.text_document_did_open(types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=uri, language_id="smalltalk", version=1,
                                                 text=hole.text)))
        started = time.perf_counter()
        result = await client.text_document_inline_completion_async(types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=types.Position(line=hole.line, character=hole.character),
            context=types.InlineCompletionContext(
                trigger_kind=types.InlineCompletionTriggerKind.Invoked),
        ))
        elapsed = time.perf_counter() - started
        client.text_document_did_close(types.DidCloseTextDocumentParams(
            text_document=types.TextDocumentIdentifier(uri=uri)))
        text = ""
        if isinstance(result, types.InlineCompletionList) and result.items:
            insert = result.items[0].insert_text
            text = insert if isinstance(insert, str) else insert.value
        await asyncio.sleep(0.1)  # the log line follows the answer
        raw = None
        for message in client.log_messages[seen:]:
            match = _RAW.search(message.message)
            if match and uri in message.message:
                raw = str(ast.literal_eval(match.group("raw")))
                self.timings = ast.literal_eval(match.group("timings"))
            if failed := _FAILED_TRY.search(message.message):
                self.failed_tries.append(f"{ast.literal_eval(failed.group('raw'))!r} "
                                         f"{failed.group('why')}")
        # The prompts are logged too: drop them, a long run would keep them all.
        del client.log_messages[seen:]
        return text, elapsed, raw

    async def wait_idle(self, limit_s: float = 120.0) -> float:
        """Wait until the server process stops computing (a suggestion cut by the budget goes
        on in the background, which would slow the next side down); answers the seconds
        waited."""
        server = getattr(self.client, "_server", None)
        if server is None:
            return 0.0
        started = time.monotonic()
        last = cpu_seconds(server.pid)
        while time.monotonic() - started < limit_s:
            await asyncio.sleep(0.5)
            now = cpu_seconds(server.pid)
            if now - last < 0.05:  # under a tenth of a core over half a second
                break
            last = now
        return time.monotonic() - started

    async def stop(self) -> None:
        if self.client is not None:
            await self.client.shutdown_session()
            await self.client.stop()


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process and its threads so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- the peer: llama-server /infill as llama.vscode asks -------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PeerSide:
    name = "llama-server /infill (llama.vscode)"

    def __init__(self, binary: str, model: str, threads: int, log: Path) -> None:
        self.port = free_port()
        self.timings: dict[str, Any] = {}  # of the last answer, from llama-server's reply
        # llama.vscode's README command (-ub 1024 -b 1024 --cache-reuse 256), 2 threads, one
        # slot, the server's context size.
        command = [binary, "-m", model, "--host", "127.0.0.1", "--port", str(self.port),
                   "-c", "4096", "-b", "1024", "-ub", "1024", "--cache-reuse", "256",
                   "-t", str(threads), "-tb", str(threads), "-np", "1"]
        self.process = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2):
                    break
            except Exception:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"llama-server did not start (see {log})") from None
                time.sleep(0.5)

    def ask(self, hole: Hole) -> tuple[str, float, str]:
        lines = hole.text.split("\n")
        line = lines[hole.line]
        line_prefix, line_suffix = line[: hole.character], line[hole.character:]
        prefix_lines = lines[max(0, hole.line - N_PREFIX): hole.line]
        suffix_lines = lines[hole.line + 1: hole.line + 1 + N_SUFFIX]
        prompt, spaces = line_prefix, 0
        if not line_prefix.strip(" \t"):
            prompt, spaces = "", len(line_prefix)
        body = {
            "input_prefix": "\n".join(prefix_lines) + "\n",
            "input_suffix": line_suffix + "\n" + "\n".join(suffix_lines) + "\n",
            "input_extra": [],
            "prompt": prompt,
            "n_predict": N_PREDICT,
            "top_k": 40, "top_p": 0.99, "stream": False,
            "samplers": ["top_k", "top_p", "infill"],
            "cache_prompt": True,
            "t_max_prompt_ms": 500,
            "t_max_predict_ms": T_MAX_PREDICT_MS,
        }
        indent = len(line) - len(line.lstrip())
        if indent:
            body["n_indent"] = indent
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/infill", data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"})
        started = time.perf_counter()
        with urllib.request.urlopen(request, timeout=600) as response:
            answer = json.loads(response.read())
        elapsed = time.perf_counter() - started
        content = answer["content"]
        # In the server side's terms, to compare prompt sizes and speeds hole by hole.
        t = answer.get("timings") or {}
        self.timings = {
            "prompt_tokens": t.get("prompt_n", 0),
            "prompt_ms": round(t.get("prompt_ms", 0.0)),
            "generated_tokens": t.get("predicted_n", 0),
            "generate_ms": round(t.get("predicted_ms", 0.0)),
            "cached_tokens": answer.get("tokens_cached", 0),
        }
        return vscode_postprocess(content, lines, hole.line, line_prefix, line_suffix,
                                  spaces), elapsed, content

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


def vscode_postprocess(completion: str, doc: list[str], y: int, line_prefix: str,
                       line_suffix: str, spaces: int) -> str:
    """llama.vscode's completion.ts: discard suggestions that repeat the document, keep only
    the first line when text follows the cursor, take off the indentation already typed."""
    if not completion.strip():
        return ""
    lines = completion.replace("\r\n", "\n").split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    if _discard(lines, doc, y, line_prefix, line_suffix):
        return ""
    if line_suffix.strip():
        if lines[0].endswith(line_suffix):
            text = lines[0][: -len(line_suffix)]
        elif len(lines) > 1:
            text = lines[0]
        else:
            text = "\n".join(lines)
    else:
        text = "\n".join(lines)
    i = 0
    while i < len(text) and ((i < spaces and text[i] == " ") or text[i] == "\t"):
        i += 1
    return text[i:]


def _discard(lines: list[str], doc: list[str], y: int, prefix: str, suffix: str) -> bool:
    if not lines or (len(lines) == 1 and not lines[0].strip()):
        return True
    if y == len(doc) - 1:
        return False
    if len(lines) > 1 and (not lines[0].strip() or lines[0].strip() == suffix.strip()) and all(
        y + 1 + i < len(doc) and value == doc[y + 1 + i] for i, value in enumerate(lines[1:])
    ):
        return True
    if len(lines) == 1 and lines[0] == suffix:
        return True
    first = y + 1
    while first < len(doc) and not doc[first].strip():
        first += 1
    if first >= len(doc):
        return False
    if prefix + lines[0] == doc[first]:
        if len(lines) == 1:
            return True
        if len(lines) == 2 and first + 1 < len(doc) and lines[1] == doc[first + 1][: len(lines[1])]:
            return True
        if len(lines) > 2 and all(first + 1 + i < len(doc) and v == doc[first + 1 + i]
                                  for i, v in enumerate(lines[1:])):
            return True
    return False


# --- the run -------------------------------------------------------------------------------


def ensure_index(workspace: Path) -> None:
    if (workspace / ".smalltalk-lsp" / "index").exists() and (workspace / ".indexed").exists():
        return
    print(f"indexing the workspace once ({workspace}) ...", flush=True)
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "server", "index", str(workspace), "--json"],
                   cwd=ROOT, check=True)
    (workspace / ".indexed").write_text(f"{time.monotonic() - started:.0f} s\n")


async def run(args: argparse.Namespace, holes: list[Hole], workspace: Path,
              rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Asks every side for every hole of one workspace; appends to `rows` (the rows of
    earlier rounds, written with them to --json-out)."""
    base = {"models": {"code_generation": args.model}}
    if args.settings:
        base = deep_merge(base, json.loads(args.settings))
    sides: list[Any] = []
    variants = args.variant or ["server={}"]
    for spec in variants:
        name, _, extra = spec.partition("=")
        name, _, code = name.partition("@")
        sides.append(ServerSide(name, deep_merge(base, json.loads(extra or "{}")), workspace,
                                Path(code).resolve() if code else None))
    for side in sides:
        print(f"starting {side.name}: {json.dumps(side.settings)}", flush=True)
        await side.start()
    peer_wanted = args.peer
    if peer_wanted and not peer_binary(args):
        print("no llama-server binary (LLAMA_SERVER, or ../shared/tools/build-llama-server.sh): "
              "the run goes on without the peer", flush=True)
    try:
        for number, hole in enumerate(holes):
            if peer_wanted and (binary := peer_binary(args)):
                peer_wanted = False
                print(f"starting the peer {binary} at hole {number + 1}", flush=True)
                sides.append(PeerSide(binary, args.model, args.threads,
                                      Path(tempfile.gettempdir()) / "bench-holes-llama-server.log"))
            order = sides[number % len(sides):] + sides[: number % len(sides)]
            row: dict[str, Any] = {"id": hole.id, "kind": hole.kind, "expected": hole.expected,
                                   "sides": {}}
            for side in order:
                raw: str | None = None
                if isinstance(side, PeerSide):
                    text, elapsed, raw = await asyncio.to_thread(side.ask, hole)
                else:
                    text, elapsed, raw = await side.ask(hole, workspace)
                    row.setdefault("idle_wait", {})[side.name] = await side.wait_idle()
                row["sides"][side.name] = {"suggestion": text, "raw": raw, "seconds": elapsed,
                                           "timings": getattr(side, "timings", {}),
                                           "failed_tries": getattr(side, "failed_tries", []),
                                           **score(hole, text)}
            rows.append(row)
            if args.json_out:  # after every hole: a run cut short still reports
                args.json_out.write_text(json.dumps(
                    {"names": [s.name for s in sides], "rows": rows, "command": sys.argv,
                     "load_start": args.load_start}, indent=1))
            summary = ", ".join(f"{name}: {r['edit_similarity']:.2f}/{r['seconds']:.1f}s"
                                for name, r in row["sides"].items())
            print(f"  {number + 1}/{len(holes)} {hole.id}: {summary}", flush=True)
    finally:
        for side in sides:
            if isinstance(side, PeerSide):
                side.stop()
            else:
                await side.stop()
    return {"names": [s.name for s in sides], "rows": rows}


def peer_binary(args: argparse.Namespace) -> str:
    if not args.llama_server:
        found = llama_server()
        args.llama_server = str(found) if found is not None else ""
    binary = args.llama_server
    return binary if binary and Path(binary).exists() else ""


def table(result: dict[str, Any], kinds: tuple[str, ...] | None = None) -> list[str]:
    """Scores over the holes every side was asked (a peer may join a run late)."""
    rows = [r for r in result["rows"] if (kinds is None or r["kind"] in kinds)
            and all(name in r["sides"] for name in result["names"])]
    n = len(rows)
    out = ["| | answered | parses | first line exact | edit similarity | identifier EM | "
           "identifier F1 | median latency |", "|---|---|---|---|---|---|---|---|"]
    if n == 0:
        return [*out, "| (no holes of this kind) | | | | | | | |"]
    for name in result["names"]:
        got = [r["sides"][name] for r in rows]
        answered = [g for g in got if g["answered"]]
        latency = statistics.median(g["seconds"] for g in answered) if answered else 0.0
        out.append(
            f"| {name} | {len(answered)}/{n} | {sum(g['parses'] for g in got)} | "
            f"{sum(g['first_line_exact'] for g in got)} | "
            f"{statistics.mean(g['edit_similarity'] for g in got):.2f} | "
            f"{sum(g['identifier_em'] for g in got)} | "
            f"{statistics.mean(g['identifier_f1'] for g in got):.2f} | {latency:.2f} s |"
        )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--holes", type=int, default=200)
    parser.add_argument("--skip", type=int, default=0,
                        help="leave out the first N holes of the rule's order (to continue a "
                             "cut run)")
    parser.add_argument("--model", default=DEFAULT_CODER, help="GGUF path or embedded name")
    parser.add_argument("--peer", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--llama-server", default=None, help="llama-server binary")
    parser.add_argument("--threads", type=int, default=2, help="the peer's threads")
    parser.add_argument("--settings", default="", help="JSON settings for every server variant")
    parser.add_argument("--variant", action="append", default=[],
                        help="NAME[@CHECKOUT]=JSON: a server with these extra settings, "
                             "optionally the server code of another checkout (repeatable; "
                             "default one variant 'server' with none)")
    parser.add_argument("--json-out", type=Path, default=None, help="per-hole results")
    parser.add_argument("--report", type=Path, default=None,
                        help="print the tables of a --json-out file (of a whole or cut run)")
    parser.add_argument("--index", action=argparse.BooleanOptionalAction, default=True,
                        help="build the workspace's retrieval index before the run (once)")
    parser.add_argument("--corpus", type=Path, default=CORPUS, help="a folder of Tonel sources")
    parser.add_argument("--rounds", type=int, default=1,
                        help="apply the hole rule with R salts, each round in a workspace of "
                             "its own (more holes from a project with few files)")
    parser.add_argument("--ids", type=Path, default=None,
                        help="a file of hole ids, one a line: run only those (in the rule's "
                             "order; for holes a change can only affect, such as a saved run's "
                             "unanswered ones)")
    args = parser.parse_args()
    if args.report:
        result = json.loads(args.report.read_text())
        print(f"{len(result['rows'])} holes; command: {' '.join(result.get('command', []))}; "
              f"load at the start {result.get('load_start')}")
        report(result)
        return 0
    corpus: Path = args.corpus
    if not corpus.is_dir():
        print(f"no corpus at {corpus}: the holes benchmark needs ../shared/corpus/pharo-subset")
        return 0
    if args.model == DEFAULT_CODER:
        args.model = str(default_coder_path())  # the peer needs the file itself
    if not args.model.endswith(".gguf"):
        if args.peer:
            print(f"the peer needs a GGUF with FIM tokens, {args.model} is a name: peer skipped")
        args.peer = False
    all_holes = select_holes(corpus, args.rounds)
    chosen = all_holes
    if args.ids:  # the workspace still has every hole of the rule cut out
        wanted = set(args.ids.read_text(encoding="utf-8").split())
        chosen = [h for h in all_holes if h.id in wanted]
        if unknown := wanted - {h.id for h in chosen}:
            print(f"not holes of this rule and corpus: {', '.join(sorted(unknown))}")
            return 2
    holes = chosen[args.skip : args.skip + args.holes]
    if not holes:
        print(f"no holes to run: {len(chosen)} chosen, --skip {args.skip} --holes {args.holes}")
        return 2
    workspaces = {}
    for round_ in sorted({h.round for h in holes}):
        workspaces[round_] = build_workspace(corpus, [h for h in all_holes if h.round == round_],
                                             CACHE)
        if args.index:
            ensure_index(workspaces[round_])
    load = os.getloadavg()
    args.load_start = " ".join(f"{x:.2f}" for x in load)
    print(f"machine: {os.cpu_count()} cores, load average {args.load_start}; "
          f"{len(holes)} holes of {len(all_holes)}; model {args.model}", flush=True)
    rows: list[dict[str, Any]] = []
    for round_, workspace in workspaces.items():
        if len(workspaces) > 1:
            print(f"round {round_}: workspace {workspace}", flush=True)
        result = asyncio.run(run(args, [h for h in holes if h.round == round_], workspace,
                                 rows))
    load = os.getloadavg()
    print(f"\nload average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    report(result)
    if args.json_out:
        print(f"\nper-hole results in {args.json_out}")
    return 0


def sizes_and_pairs(result: dict[str, Any]) -> list[str]:
    """Each side's median prompt tokens, and the per-hole median of the first side's latency
    over each other side's (holes both answered): the prompt size behind the latency."""
    rows = [r for r in result["rows"] if all(n in r["sides"] for n in result["names"])]
    out = []
    for name in result["names"]:
        tokens = [r["sides"][name]["timings"]["prompt_tokens"] for r in rows
                  if (r["sides"][name].get("timings") or {}).get("prompt_tokens")]
        if tokens:
            out.append(f"{name}: median prompt {statistics.median(tokens):.0f} tokens")
    first, *others = result["names"]
    for name in others:
        ratios = [r["sides"][first]["seconds"] / r["sides"][name]["seconds"] for r in rows
                  if r["sides"][first]["answered"] and r["sides"][name]["answered"]
                  and r["sides"][name]["seconds"] > 0]
        if ratios:
            out.append(f"{first} over {name}, per-hole median latency: "
                       f"{statistics.median(ratios):.2f}x ({len(ratios)} holes)")
    return out


def report(result: dict[str, Any]) -> None:
    print("\n".join(table(result)))
    print("\n".join(sizes_and_pairs(result)))
    for kind in ("body", "statement", "line"):
        print(f"\n{kind} holes:")
        print("\n".join(table(result, (kind,))))


if __name__ == "__main__":
    sys.exit(main())
