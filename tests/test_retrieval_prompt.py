"""Retrieval reaches the completion prompt: the completion pipeline with the real coder model
(Gemma 3 270M) and the retrieval context provider over a real index of the sample project,
from the request's one cursor analysis."""

from __future__ import annotations

import shutil
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from server.completion import cursor
from server.completion.context import ContextProvider
from server.completion.pipeline import CompletionOptions, complete
from server.completion.providers import ClassContextProvider
from server.completion.types import CompletionRequest, Suggestion
from server.engine.registry import RoleSpec, open_context
from server.project_model import ProjectModel
from server.retrieval.index import RetrievalIndex
from server.retrieval.provider import RetrievalContextProvider
from smalltalk_grammar import parse_path

SAMPLE = Path(__file__).parent / "fixtures" / "sample" / "tonel"


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory, minilm_embedder) -> Iterator[
    tuple[Path, list[ContextProvider]]
]:
    """The sample project with a real index, and the two context providers the server uses."""
    root = tmp_path_factory.mktemp("sample") / "ws"
    shutil.copytree(SAMPLE, root, ignore=shutil.ignore_patterns(".smalltalk-lsp"))
    project = ProjectModel(parse_path(root))
    index = RetrievalIndex(root, minilm_embedder)
    index.sync_project(project)
    yield root, [
        ClassContextProvider(lambda: project),
        RetrievalContextProvider(lambda: project, lambda: index, lambda: 1024),
    ]
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
    root, providers = sample
    suggestion = _complete(root, providers, gemma_model, gemma_model_path,
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
    root, providers = sample
    parts = {f.__code__: f.__name__ for f in (
        cursor.analyse_cursor, cursor.find_method, cursor.class_facts, cursor.sends_near,
    )}
    calls: Counter[str] = Counter()

    def count(frame: FrameType, event: str, arg: object) -> None:
        if event == "call" and frame.f_code in parts:
            calls[parts[frame.f_code]] += 1

    sys.setprofile(count)
    try:
        suggestion = _complete(root, providers, gemma_model, gemma_model_path,
                               "^ licence isActiveOn: ")
    finally:
        sys.setprofile(None)
    assert suggestion.prompt is not None and suggestion.source == "model"
    assert '"implementors: SRLicence >> isActiveOn: [testing]"' in suggestion.prompt.text
    assert calls == {"analyse_cursor": 1, "find_method": 1, "class_facts": 1, "sends_near": 1}
