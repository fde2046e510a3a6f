"""Retrieval reaches the completion prompt: the completion pipeline with the real coder model
(Gemma 3 270M) and the retrieval context provider over a real index of the sample project."""

from __future__ import annotations

import shutil
from pathlib import Path

from server.completion.pipeline import CompletionOptions, complete
from server.completion.providers import ClassContextProvider
from server.completion.types import CompletionRequest
from server.engine.registry import RoleSpec, open_context
from server.project_model import ProjectModel
from server.retrieval.index import RetrievalIndex
from server.retrieval.provider import RetrievalContextProvider
from smalltalk_grammar import parse_path

SAMPLE = Path(__file__).parent / "fixtures" / "sample" / "tonel"


def test_retrieved_methods_reach_the_prompt(
    tmp_path: Path, minilm_embedder, gemma_model, gemma_model_path
) -> None:
    root = tmp_path / "ws"
    shutil.copytree(SAMPLE, root, ignore=shutil.ignore_patterns(".smalltalk-lsp"))
    project = ProjectModel(parse_path(root))
    index = RetrievalIndex(root, minilm_embedder)
    index.sync_project(project)
    providers = [
        ClassContextProvider(lambda: project),
        RetrievalContextProvider(lambda: project, lambda: index, lambda: 1024),
    ]
    path = root / "StreamingRights-Core" / "SRRight.class.st"
    text = path.read_text()
    offset = text.index("^ licence isActiveOn: aDate") + len("^ licence isActive")
    request = CompletionRequest(uri=path.as_uri(), text=text, offset=offset, path=str(path),
                                source_format="tonel")
    spec = RoleSpec(role="coder", name="gemma3-270m", path=gemma_model_path, n_ctx=2048,
                    n_batch=512, n_threads=2, mmap=True, mlock=False)
    engine = open_context(spec, gemma_model)
    try:
        suggestion = complete(request, engine, providers,
                              CompletionOptions(max_generate_ms=20000, max_tokens_line=8))
    finally:
        engine.close()
        index.close()
    assert suggestion.prompt is not None
    prompt = suggestion.prompt.text
    # SRLicence lives in another file: only retrieval can have put its method in the prompt.
    assert '"implementors: SRLicence >> isActiveOn: [testing]"' in prompt
    assert "^ aDate between: startDate and: endDate" in prompt
    assert prompt.index("isActiveOn: aDate\n") < prompt.index("Class {")  # context first
    assert '"similar: ' in prompt or '"lexical: ' in prompt
