"""Language server on a generated 10,000-file project: scan, restart, request latency.

    .venv/bin/python bench/bench_lsp.py [--copies 1000] [--requests 500] [--keep DIR]

1. Generates a project by replicating the Tonel sample (10 files) `--copies` times. Each copy
   gets its own classes, packages and selectors (every word of a selector the sample defines
   gets the copy's number), so a project selector has the implementors and senders of one
   copy, as in a real project; selectors the sample only sends (`new`, `ifTrue:`, `add:`...)
   and the overrides of `printOn:`, `=`, `hash` stay shared by all copies.
2. Starts the real server (`python -m server serve`, models off) and measures the cold scan,
   then starts it again for the warm restart from the cache: the scan time the server logs,
   and the wall time from spawning the process to the end of the scan.
3. Opens 50 files and sends `--requests` hover, definition, references and completion requests
   each at random positions, over stdio, and prints p50/p95/max latency. Two position mixes:
   "project" (tokens naming the project's own classes and selectors) and "any" (any word in a
   method body, including sends of `new`, `ifTrue:` and other selectors sent everywhere).
4. Rename of a selector with thousands of senders: the selector sent by the most methods of
   the generated project that the server agrees to rename (the sample's sends counted per
   method, times the copies; kernel selectors are refused), renamed in full (time, `$/progress`
   reports, edits), then again with `$/cancelRequest` sent at its first progress report (time
   from the cancel to the RequestCancelled answer).

    .venv/bin/python bench/bench_lsp.py --rename-only   # only step 4 (after the scan)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from lsprotocol import types
from pygls.uris import from_fs_path
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "tests" / "fixtures" / "sample" / "tonel"
# The static features alone: no model loads (it would share the 2 cores with the requests).
STATIC_ONLY = {
    "models": {"code_generation": "off", "reasoning": "off"},
    "completion": {"enabled": False},
    "retrieval": {"enabled": False},
    "actions": {"hover_summaries": False},
}
# Selector words kept shared by all copies: overrides of methods every class has.
SHARED = {"printOn", "hash"}
_WORD = re.compile(r"[A-Za-z_]\w*")
_PROJECT = re.compile(r"[QC]\d+$")


def _project_words() -> set[str]:
    from smalltalk_grammar import iter_project, parse_file

    words: set[str] = set()
    for path in iter_project(SAMPLE):
        for method in parse_file(path).methods:
            words.update(w for w in method.selector.split(":") if w and w[0].isalpha())
    return words - SHARED


def generate(target: Path, copies: int) -> int:
    """Write `copies` renamed copies of the Tonel sample under `target`; returns files."""
    words = _project_words()
    pattern = re.compile(r"\b(" + "|".join(sorted(words, key=len, reverse=True)) + r")\b")
    sources = [(p.relative_to(SAMPLE), p.read_text()) for p in sorted(SAMPLE.rglob("*.st"))]
    count = 0
    for copy in range(copies):
        suffix = str(copy)
        for rel, text in sources:
            body = text.replace("#name :", "#NAME_KEY :")
            body = pattern.sub(lambda m, s=suffix: m.group(1) + "Q" + s, body)
            body = body.replace("#NAME_KEY :", "#name :")
            body = re.sub(r"\bT?SR[A-Z]\w*", lambda m, s=suffix: m.group(0) + "C" + s, body)
            body = body.replace("StreamingRights", f"StreamingRights{suffix}")
            path = target / str(rel).replace("StreamingRights", f"StreamingRights{suffix}")
            path = path.with_name(
                re.sub(r"^(T?SR[A-Za-z]*)", lambda m, s=suffix: m.group(1) + "C" + s, path.name)
            )
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(body)
            count += 1
    return count


def _capabilities() -> types.ClientCapabilities:
    return client_capabilities("visual-studio-code")


async def start(root: Path) -> tuple[LanguageClient, float, str]:
    """A server initialized on `root`, after its scan; the wall time and the scan log line."""
    began = time.perf_counter()
    config = ClientServerConfig(server_command=[sys.executable, "-m", "server", "serve"])
    client = await config.start()
    client.feature(types.CLIENT_REGISTER_CAPABILITY)(lambda params: None)
    uri = from_fs_path(str(root))
    await client.initialize_session(
        types.InitializeParams(
            capabilities=_capabilities(),
            root_uri=uri,
            workspace_folders=[types.WorkspaceFolder(uri=uri, name="bench")],
            initialization_options=STATIC_ONLY,
        )
    )
    while not any("indexed" in m.message for m in client.log_messages):
        await asyncio.sleep(0.01)
    wall = time.perf_counter() - began
    line = next(m.message for m in client.log_messages if "indexed" in m.message)
    return client, wall, line


async def stop(client: LanguageClient) -> None:
    await client.shutdown_session()
    await client.stop()


def _positions(text: str, mix: str) -> list[types.Position]:
    """Candidate positions in a file: one character into each word of a method body. In the
    "project" mix only words naming the project's own classes (renamed `...C<n>`) and
    selectors (`...Q<n>`)."""
    found = []
    for number, line in enumerate(text.split("\n")):
        if not line.startswith("\t") or line.lstrip().startswith('"'):
            continue  # method bodies only (Tonel indents them), not comments
        for m in _WORD.finditer(line):
            if mix == "project" and not _PROJECT.search(m.group(0)):
                continue
            found.append(types.Position(line=number, character=m.start() + 1))
    return found


async def measure(client: LanguageClient, root: Path, requests: int, mix: str) -> dict:
    rng = random.Random(7)
    files = sorted(root.rglob("*.class.st"))
    opened = rng.sample(files, 50)
    docs = []
    for path in opened:
        text = path.read_text()
        uri = from_fs_path(str(path))
        client.text_document_did_open(
            types.DidOpenTextDocumentParams(
                text_document=types.TextDocumentItem(
                    uri=uri, language_id="smalltalk", version=1, text=text
                )
            )
        )
        spots = _positions(text, mix)
        if spots:
            docs.append((uri, spots))
    await client.workspace_symbol_async(types.WorkspaceSymbolParams(query="x"))  # settle
    results: dict[str, list[float]] = {}
    kinds = {
        "hover": lambda d, p: client.text_document_hover_async(
            types.HoverParams(text_document=d, position=p)
        ),
        "definition": lambda d, p: client.text_document_definition_async(
            types.DefinitionParams(text_document=d, position=p)
        ),
        "references": lambda d, p: client.text_document_references_async(
            types.ReferenceParams(
                text_document=d,
                position=p,
                context=types.ReferenceContext(include_declaration=False),
            )
        ),
        "completion": lambda d, p: client.text_document_completion_async(
            types.CompletionParams(text_document=d, position=p)
        ),
        "call hier.": lambda d, p: _call_hierarchy(client, d, p),
        "type hier.": lambda d, p: _type_hierarchy(client, d, p),
        "highlight": lambda d, p: client.text_document_document_highlight_async(
            types.DocumentHighlightParams(text_document=d, position=p)
        ),
        "selection": lambda d, p: client.text_document_selection_range_async(
            types.SelectionRangeParams(text_document=d, positions=[p])
        ),
        "code lens": lambda d, p: _code_lens(client, d),
    }
    for kind, send in kinds.items():
        times = []
        for _ in range(requests):
            uri, spots = rng.choice(docs)
            pos = rng.choice(spots)
            began = time.perf_counter()
            await send(types.TextDocumentIdentifier(uri=uri), pos)
            times.append((time.perf_counter() - began) * 1000)
        results[kind] = times
    for uri, _ in docs:
        client.text_document_did_close(
            types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri))
        )
    return results


def _rename_candidates() -> list[tuple[str, int]]:
    """Selectors sent by the most methods of the generated project (shared by every copy:
    not the sample's own), with their senders per copy, most first."""
    from smalltalk_grammar import iter_project, parse_file

    words = _project_words()
    counts: dict[str, int] = {}
    for path in iter_project(SAMPLE):
        for method in parse_file(path).methods:
            for sent in set(method.sends):
                if not any(w in words for w in sent.split(":") if w):
                    counts[sent] = counts.get(sent, 0) + 1
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


def _renamed(selector: str) -> str:
    """The new name: each keyword part or the unary selector + "Renamed", a binary one + "~"."""
    if selector[0].isalpha():
        parts = [p for p in selector.split(":") if p]
        return "".join(p + "Renamed" + (":" if selector.endswith(":") else "") for p in parts)
    return selector + "~"


def _send_position(root: Path, selector: str) -> tuple[Path, types.Position] | None:
    """The first send of `selector` in a method body of the generated files."""
    first = re.escape(selector.split(":")[0] + (":" if selector.endswith(":") else ""))
    pattern = re.compile(rf"(?<![\w:]){first}(?![\w:])" if selector[0].isalpha() else
                         rf"\s{first}\s")
    for path in sorted(root.rglob("*.class.st")):
        for number, line in enumerate(path.read_text().split("\n")):
            m = pattern.search(line)
            if m and line.startswith("\t") and not line.lstrip().startswith('"'):
                skip = 0 if selector[0].isalpha() else 1  # the space before a binary selector
                return path, types.Position(line=number, character=m.start() + skip)
    return None


async def measure_rename(client: LanguageClient, root: Path, runs: int) -> None:
    """Step 4: the full rename and the cancelled one, `runs` times each."""
    for selector, per_copy in _rename_candidates():
        found = _send_position(root, selector)
        if found is None:
            continue
        path, pos = found
        uri = from_fs_path(str(path)) or ""
        client.text_document_did_open(
            types.DidOpenTextDocumentParams(
                text_document=types.TextDocumentItem(
                    uri=uri, language_id="smalltalk", version=1, text=path.read_text()
                )
            )
        )
        d = types.TextDocumentIdentifier(uri=uri)
        prepared = await client.text_document_prepare_rename_async(
            types.PrepareRenameParams(text_document=d, position=pos)
        )
        if prepared is None or getattr(prepared, "placeholder", None) != selector:
            continue
        params = types.RenameParams(text_document=d, position=pos, new_name=_renamed(selector))
        probe = await _timed_rename(client, params)
        if probe[1] is None:
            continue  # refused (the server said why): the next selector
        print(f"rename #{selector} -> #{_renamed(selector)} ({per_copy} senders per copy):")
        for run in range(runs):
            took, edit, reports = await _timed_rename(client, params)
            assert edit is not None
            changes = edit.document_changes or []
            edits = sum(len(c.edits) for c in changes if isinstance(c, types.TextDocumentEdit))
            print(f"  full rename {run + 1}: {took:.2f}s, {edits} edits in {len(changes)} files,"
                  f" {reports} $/progress reports")
        for run in range(runs):
            await _cancelled_rename(client, params, run)
        return
    print("rename: no selector of the project could be renamed")


def _rename_tokens(client: LanguageClient, before: set) -> list:
    for token, values in client.progress_reports.items():
        if token not in before and values and isinstance(values[0], types.WorkDoneProgressBegin):
            if values[0].title.startswith("rename"):
                return list(values)
    return []


async def _timed_rename(client: LanguageClient, params: types.RenameParams) -> tuple:
    before = set(client.progress_reports)
    began = time.perf_counter()
    edit = await client.text_document_rename_async(params)
    took = time.perf_counter() - began
    reports = _rename_tokens(client, before)
    return took, edit, sum(isinstance(v, types.WorkDoneProgressReport) for v in reports)


async def _cancelled_rename(client: LanguageClient, params: types.RenameParams, run: int) -> None:
    from pygls.exceptions import JsonRpcException

    before = set(client.progress_reports)
    msg_id = f"bench-rename-{run}"
    began = time.perf_counter()
    future = asyncio.wrap_future(
        client.protocol.send_request(types.TEXT_DOCUMENT_RENAME, params, msg_id=msg_id)
    )
    while not any(isinstance(v, types.WorkDoneProgressReport)
                  for v in _rename_tokens(client, before)):
        if future.done():
            break
        await asyncio.sleep(0.001)
    first = time.perf_counter() - began
    seen = [v.percentage for v in _rename_tokens(client, before)
            if isinstance(v, types.WorkDoneProgressReport)]
    cancelled_at = time.perf_counter()
    client.cancel_request(types.CancelParams(id=msg_id))
    try:
        await future
        outcome = "NOT cancelled: the edit came back"
    except JsonRpcException as err:
        outcome = f"error {err.code} ({'RequestCancelled' if err.code == -32800 else 'other'})"
    answered = time.perf_counter() - cancelled_at
    values = _rename_tokens(client, before)
    done = [v.percentage for v in values if isinstance(v, types.WorkDoneProgressReport)]
    print(f"  cancelled rename {run + 1}: cancel sent {first:.2f}s after the request, on"
          f" seeing the report of {seen[-1] if seen else '?'}%; answered"
          f" {answered * 1000:.0f} ms later: {outcome}; last report {done[-1] if done else '?'}%")


async def _call_hierarchy(
    client: LanguageClient, d: types.TextDocumentIdentifier, p: types.Position
) -> None:
    """prepareCallHierarchy, then the incoming calls of its first item."""
    items = await client.text_document_prepare_call_hierarchy_async(
        types.CallHierarchyPrepareParams(text_document=d, position=p)
    )
    if items:
        await client.call_hierarchy_incoming_calls_async(
            types.CallHierarchyIncomingCallsParams(item=items[0])
        )


async def _type_hierarchy(
    client: LanguageClient, d: types.TextDocumentIdentifier, p: types.Position
) -> None:
    """prepareTypeHierarchy, then the subtypes of its first item."""
    items = await client.text_document_prepare_type_hierarchy_async(
        types.TypeHierarchyPrepareParams(text_document=d, position=p)
    )
    if items:
        await client.type_hierarchy_subtypes_async(types.TypeHierarchySubtypesParams(item=items[0]))


async def _code_lens(client: LanguageClient, d: types.TextDocumentIdentifier) -> None:
    """The document's lenses, then the resolve of the first one (what an editor shows first)."""
    lenses = await client.text_document_code_lens_async(types.CodeLensParams(text_document=d))
    if lenses:
        await client.code_lens_resolve_async(lenses[0])


class _InProcess:
    """Just what the feature functions need of the server, for timing them without
    JSON-RPC (the figures then show the server's own cost apart from the transport)."""

    def __init__(self, root: Path) -> None:
        from server.documents import OpenDocuments
        from server.project_model import ProjectModel
        from server.workspace import WorkspaceIndex

        self.project = ProjectModel()
        began, cpu = time.perf_counter(), time.process_time()
        stats = WorkspaceIndex(self.project, [root]).scan()
        self.scan = (time.perf_counter() - began, time.process_time() - cpu, stats.cached)
        self.documents = OpenDocuments()
        self.texts: dict[str, str] = {}

    def snapshot(self, uri: str):  # type: ignore[no-untyped-def]
        return self.documents.parse(uri, self.texts[uri], 1)[0]

    def document_text(self, uri: str) -> str | None:
        return self.texts.get(uri)


def measure_in_process(root: Path, requests: int, mix: str) -> tuple[tuple, dict]:
    from server.features import common, completion, hover, navigation

    ls = _InProcess(root)
    rng = random.Random(7)
    docs = []
    for path in rng.sample(sorted(root.rglob("*.class.st")), 50):
        uri = from_fs_path(str(path)) or ""
        ls.texts[uri] = path.read_text()
        ls.documents.opened(uri)
        docs.append((uri, _positions(ls.texts[uri], mix)))
    names = completion.NameIndex()
    calls = {
        "hover": lambda ctx: hover.hover_markdown(ls, ctx),  # type: ignore[arg-type]
        "definition": lambda ctx: navigation.definition(ls, ctx),  # type: ignore[arg-type]
        "references": lambda ctx: navigation.references(ls, ctx, False),  # type: ignore[arg-type]
        "completion": lambda ctx: completion.complete(ls, ctx, names),  # type: ignore[arg-type]
    }
    results: dict[str, list[float]] = {}
    for kind, call in calls.items():
        times = []
        for _ in range(requests):
            uri, spots = rng.choice(docs)
            pos = rng.choice(spots)
            began = time.perf_counter()
            ctx = common.context_at(ls, uri, pos)  # type: ignore[arg-type]
            if ctx is not None:
                call(ctx)
            times.append((time.perf_counter() - began) * 1000)
        results[kind] = times
    return ls.scan, results


def _table(title: str, results: dict[str, list[float]]) -> None:
    print(title)
    print(f"  {'request':<11} {'p50':>7} {'p95':>7} {'max':>8}")
    for kind, times in results.items():
        print(
            f"  {kind:<11} {statistics.median(times):7.2f} {_pct(times, 0.95):7.2f}"
            f" {max(times):8.1f}"
        )


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def main_async(args: argparse.Namespace) -> None:
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-lsp-"))
    base = base.absolute()
    root = base / "project"
    try:
        if root.exists() and any(root.iterdir()) and args.keep:
            files = sum(1 for _ in root.rglob("*.st"))
            print(f"project: {files} files in {root} (kept)")
            if not args.warm_only:
                shutil.rmtree(root / ".smalltalk-lsp", ignore_errors=True)
        else:
            began = time.perf_counter()
            files = generate(root, args.copies)
            print(f"project: {files} files generated in {time.perf_counter() - began:.1f}s")
        load = os.getloadavg()[0]
        print(f"cpu: {os.cpu_count()} cores, load average {load:.2f}")

        if not args.warm_only:
            client, wall, line = await start(root)
            print(f"cold start: {wall:.2f}s to scan end ({line})")
            await stop(client)
        client, wall, line = await start(root)
        print(f"warm restart: {wall:.2f}s to scan end, process start included ({line})")
        if args.rename_only:
            await measure_rename(client, root, args.rename_runs)
            await stop(client)
            print(f"load average at the end: {os.getloadavg()[0]:.2f}")
            return
        for mix in ("project", "any"):
            results = await measure(client, root, args.requests, mix)
            _table(f"over stdio, {args.requests} requests each, {mix} tokens (ms):", results)
        await measure_rename(client, root, args.rename_runs)
        await stop(client)
        for mix in ("project", "any"):
            scan, results = measure_in_process(root, args.requests, mix)
            if mix == "project":
                print(
                    f"in process: warm scan {scan[0]:.2f}s wall, {scan[1]:.2f}s CPU"
                    f" ({scan[2]} files from the cache)"
                )
            _table(f"in process, {args.requests} requests each, {mix} tokens (ms):", results)
        print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=1000, help="copies of the 10-file sample")
    parser.add_argument("--requests", type=int, default=500, help="requests of each kind")
    parser.add_argument("--keep", help="generate into (and reuse) this folder")
    parser.add_argument(
        "--warm-only", action="store_true", help="with --keep: skip the cold start, reuse its cache"
    )
    parser.add_argument("--rename-runs", type=int, default=3, help="full and cancelled renames")
    parser.add_argument(
        "--rename-only", action="store_true", help="only the rename measurement (step 4)"
    )
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
