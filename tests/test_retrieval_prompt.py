"""Retrieval reaches the completion prompt: the completion pipeline with the real coder model
(Gemma 3 270M) and the retrieval context provider over a real index of the sample project,
from the request's one cursor analysis; the modules an inline completion's cursor passes are
the ones the README's architecture section names."""

from __future__ import annotations

import asyncio
import re
import shutil
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from lsprotocol import types

import server
from server.completion import cursor, pipeline
from server.completion.context import ContextProvider
from server.completion.cursor import ClassFacts, CursorAnalysis, Sends
from server.completion.lexical import ScanState
from server.completion.pipeline import CompletionOptions, Prepared, complete
from server.completion.providers import ClassContextProvider
from server.completion.types import (
    CompletionRequest,
    CursorContext,
    MethodSpan,
    Prompt,
    Suggestion,
)
from server.engine.registry import RoleSpec, open_context
from server.engine.session import LlamaSession
from server.engine.worker import InferenceWorker
from server.features.inline_completion import InlineCompletion
from server.lsp import FEATURES, create_server
from server.project_model import ProjectModel
from server.retrieval.context import RetrievalContextProvider
from server.retrieval.index import RetrievalIndex
from smalltalk_grammar import parse_path
from smalltalk_grammar.model import Position

SAMPLE = Path(__file__).parent / "fixtures" / "sample" / "tonel"


@dataclass
class Sample:
    root: Path
    project: ProjectModel
    index: RetrievalIndex
    # The two context providers the server uses.
    providers: list[ContextProvider]


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory, minilm_embedder) -> Iterator[Sample]:
    """The sample project with a real index."""
    root = tmp_path_factory.mktemp("sample") / "ws"
    shutil.copytree(SAMPLE, root, ignore=shutil.ignore_patterns(".smalltalk-lsp"))
    project = ProjectModel(parse_path(root))
    index = RetrievalIndex(root, minilm_embedder)
    index.sync_project(project)
    yield Sample(root, project, index, [
        ClassContextProvider(lambda: project),
        RetrievalContextProvider(lambda: project, lambda: index, lambda: 1024),
    ])
    index.close()


def _complete(root: Path, providers: list[ContextProvider], gemma_model: Any,
              gemma_model_path: Path, after: str) -> Suggestion:
    path = root / "StreamingRights-Core" / "SRRight.class.st"
    text = path.read_text()
    offset = text.index("^ licence isActiveOn: aDate") + len(after)
    request = CompletionRequest(uri=path.as_uri(), text=text, offset=offset, path=str(path),
                                source_format="tonel")
    spec = RoleSpec(role="coder", name="gemma3-270m", path=gemma_model_path, n_ctx=2048,
                    n_batch=512, n_threads=2, mmap=True, mlock=False)
    engine = open_context(spec, gemma_model)
    try:
        return complete(request, engine, providers,
                        CompletionOptions(max_generate_ms=20000, max_tokens_line=8))
    finally:
        engine.close()


def test_retrieved_methods_reach_the_prompt(sample, gemma_model, gemma_model_path) -> None:
    suggestion = _complete(sample.root, sample.providers, gemma_model, gemma_model_path,
                           "^ licence isActive")
    assert suggestion.prompt is not None
    prompt = suggestion.prompt.text
    # SRLicence lives in another file: only retrieval can have put its method in the prompt.
    assert '"implementors: SRLicence >> isActiveOn: [testing]"' in prompt
    assert "^ aDate between: startDate and: endDate" in prompt
    assert prompt.index("isActiveOn: aDate\n") < prompt.index("Class {")  # context first
    assert '"similar: ' in prompt or '"lexical: ' in prompt


def test_one_cursor_analysis_per_completion(sample, gemma_model, gemma_model_path) -> None:
    """The context stage analyses the cursor once and both providers (and retrieval's context
    builder) work from that analysis: none of its parts runs a second time."""
    parts = {f.__code__: f.__name__ for f in (
        cursor.analyse_cursor, cursor.find_method, cursor.class_facts, cursor.sends_near,
    )}
    calls: Counter[str] = Counter()

    def count(frame: FrameType, event: str, arg: object) -> None:
        if event == "call" and frame.f_code in parts:
            calls[parts[frame.f_code]] += 1

    sys.setprofile(count)
    try:
        suggestion = _complete(sample.root, sample.providers, gemma_model, gemma_model_path,
                               "^ licence isActiveOn: ")
    finally:
        sys.setprofile(None)
    assert suggestion.prompt is not None and suggestion.source == "model"
    assert '"implementors: SRLicence >> isActiveOn: [testing]"' in suggestion.prompt.text
    assert calls == {"analyse_cursor": 1, "find_method": 1, "class_facts": 1, "sends_near": 1}


# (module, the server module it was entered from or None, function)
Entry = tuple[str, str | None, str]


def _visits(entered: list[Entry]) -> list[str]:
    """The modules the cursor visits, in order: entering a module from another one is a visit.
    Entering it again straight after (nothing else had the cursor in between) is the same
    visit, and so is its own work run from outside the server (the pipeline's context stage on
    its thread), which must belong to a module visited already. Returning to a caller is not a
    visit; a module entered again after another one is a second visit."""
    path: list[str] = []
    for module, caller, name in entered:
        if caller is None and path:
            assert module in path, f"{module}:{name} entered from outside the server"
            continue
        if not path or path[-1] != module:
            path.append(module)
    return path


def test_a_module_entered_again_after_another_is_visited_twice() -> None:
    handler, pipe, cache, ctx = (f"server/{name}.py" for name in (
        "features/inline_completion", "completion/pipeline", "completion/cache",
        "completion/context"))
    once: list[Entry] = [(handler, None, "suggest"), (pipe, handler, "complete_async"),
                         (cache, pipe, "typed_through"), (pipe, None, "assemble"),
                         (ctx, pipe, "build_context"), (ctx, pipe, "build_context")]
    assert _visits(once) == [handler, pipe, cache, ctx]
    twice = once + [(cache, pipe, "prompt_result")]
    assert _visits(twice) == [handler, pipe, cache, ctx, cache]


def _readme_path() -> tuple[int, list[str]]:
    """The README's architecture list: the number of modules it says and the modules named."""
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Architecture", 1)[1].split("\n## ", 1)[0]
    said = re.search(r"passes these (\d+) modules", section)
    assert said is not None
    return int(said.group(1)), re.findall(r"^\d+\. `([^`]+)`", section, re.MULTILINE)


def test_the_cursor_passes_the_modules_the_readme_names(
    sample, gemma_model, gemma_model_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One inline completion from the feature's handler to TextEngine.generate, traced: the
    server modules whose functions get the cursor (its position, the request, the analysis,
    the context, text cut at it, the prompt) are the README's architecture list, in its order,
    and the cursor analysis runs once."""
    ls = create_server(FEATURES)
    ls.project = sample.project
    assert ls.retrieval is not None
    ls.retrieval.index = sample.index
    spec = RoleSpec(role="coder", name="gemma3-270m", path=gemma_model_path, n_ctx=2048,
                    n_batch=512, n_threads=2, mmap=True, mlock=False)
    engine = open_context(spec, gemma_model)
    workers: list[InferenceWorker] = []
    monkeypatch.setattr(ls.models, "engine", lambda role: engine)
    monkeypatch.setattr(ls.models, "worker", lambda role: workers[0])
    feature = InlineCompletion(ls)
    path = sample.root / "StreamingRights-Core" / "SRRight.class.st"
    text = path.read_text()
    offset = text.index("^ licence isActiveOn: aDate") + len("^ licence isActiveOn: ")
    line_start = text.rfind("\n", 0, offset) + 1
    where = types.Position(line=text.count("\n", 0, offset), character=offset - line_start)

    carriers = (CompletionRequest, CursorAnalysis, ClassFacts, Sends, MethodSpan, ScanState,
                CursorContext, Prompt, Prepared, Position, types.Position)
    near = text[:offset].rstrip()[-20:]  # the prompt drops the blanks before the cursor
    source_root = Path(server.__file__).parent.parent

    def carries(value: object) -> bool:
        if isinstance(value, carriers) or (isinstance(value, int) and value == offset):
            return True
        if isinstance(value, str):
            return value != text and near in value
        cells = getattr(value, "__closure__", None) or ()
        return any(isinstance(getattr(c, "cell_contents", None), carriers) for c in cells)

    def module_of(frame: FrameType | None) -> str | None:
        name = Path(frame.f_code.co_filename) if frame is not None else None
        if name is None or not name.is_relative_to(source_root):
            return None
        relative = name.relative_to(source_root)
        return str(relative) if relative.parts[0] in ("server", "smalltalk_grammar") else None

    generate = LlamaSession.generate.__code__
    entered: list[Entry] = []
    started: dict[int, FrameType] = {}
    reached = threading.Event()

    def profile(frame: FrameType, event: str, arg: object) -> None:
        if event != "call" or reached.is_set():
            return
        if frame.f_code.co_flags & 0x3A0:  # a coroutine or generator: its first start only
            if id(frame) in started:
                return
            started[id(frame)] = frame
        module = module_of(frame)
        if module is None or module == module_of(frame.f_back):
            return
        code = frame.f_code
        if code is generate:  # the engine call: where the path ends
            reached.set()
            return
        arguments = code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]
        if any(carries(frame.f_locals.get(name)) for name in arguments):
            entered.append((module, module_of(frame.f_back), code.co_name))

    async def run() -> Suggestion | None:
        threading.setprofile(profile)
        sys.setprofile(profile)
        # The context thread may exist already (started by another test): trace it too.
        await asyncio.get_running_loop().run_in_executor(
            pipeline._CONTEXT_THREAD, sys.setprofile, profile)
        try:
            workers.append(InferenceWorker("coder"))  # its thread starts traced
            return await feature.suggest(path.as_uri(), where)
        finally:
            sys.setprofile(None)
            threading.setprofile(None)  # type: ignore[arg-type]
            await asyncio.get_running_loop().run_in_executor(
                pipeline._CONTEXT_THREAD, sys.setprofile, None)

    try:
        asyncio.run(run())
    finally:
        if workers:
            workers[0].close()
        engine.close()
    assert reached.is_set(), entered
    path = _visits(entered)
    count, named = _readme_path()
    assert len(set(path)) == len(path), f"a module visited twice: {path}"
    assert path == named, entered
    assert count == len(named) <= 10 and len(set(named)) == len(named)
    assert [(m, f) for m, _, f in entered if m == "server/completion/cursor.py"] == [
        ("server/completion/cursor.py", "analyse_cursor")
    ]
