"""End to end with nothing configured: `python -m server serve` on the Tonel sample loads the
default embedded models (Qwen2.5-Coder-0.5B-Instruct as the coder, Qwen2.5-Coder-1.5B-Instruct
as the reasoner, both assembled from their part packages), reports them by name, and an
Explain comes from the 1.5B through the chat template in its own GGUF. (The default coder's
inline completions are tested end to end in test_completion_e2e.py.)"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import pytest_lsp
from lsp_support import (
    copy_sample,
    doc,
    open_document,
    record_status,
    server_config,
    start_session,
    wait_for,
)
from lsprotocol import types
from pygls.uris import to_fs_path
from pytest_lsp import LanguageClient

pytestmark = pytest.mark.asyncio(loop_scope="module")

SERVER = server_config()
# No `models` here: the defaults are what is tested. Greedy and short, no retrieval index.
OPTIONS = {
    "cpu_settings": {"context_length": 2048},
    "retrieval": {"enabled": False},
    "actions": {"max_tokens": 64, "temperature": 0.0, "hover_summaries": False},
}
STORE = "StreamingRights-Core/SRStore.class.st"


@pytest_lsp.fixture(scope="module", config=SERVER)
async def client(lsp_client: LanguageClient, tmp_path_factory):
    record_status(lsp_client)
    root = copy_sample("tonel", tmp_path_factory.mktemp("defaults"))
    lsp_client.root = root  # type: ignore[attr-defined]
    await start_session(lsp_client, root, OPTIONS)
    await wait_for(lambda: _ready(lsp_client), "both default models", timeout=300)
    yield
    await lsp_client.shutdown_session()


def _ready(client: LanguageClient) -> bool:
    statuses: list[Any] = client.statuses  # type: ignore[attr-defined]
    if not statuses:
        return False
    models = statuses[-1].models
    return bool(models.coder == "ready" and models.reasoner == "ready")


async def test_the_status_names_the_default_models(client: LanguageClient):
    names = client.statuses[-1].names  # type: ignore[attr-defined]
    assert (names.coder, names.reasoner) == ("qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b")
    logged = " ".join(m.message for m in client.log_messages)
    assert "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf" in logged
    assert "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf" in logged


async def test_explain_comes_from_the_default_reasoner(client: LanguageClient):
    path: Path = client.root / STORE  # type: ignore[attr-defined]
    text = path.read_text(encoding="utf-8")
    uri = open_document(client, path)
    offset = text.index("SRStore >> rightsFor: aTerritory [") + len("SRStore >> ")
    line = text.count("\n", 0, offset)
    pos = types.Position(line=line, character=offset - (text.rfind("\n", 0, offset) + 1))
    result = await client.text_document_code_action_async(
        types.CodeActionParams(
            text_document=doc(uri),
            range=types.Range(start=pos, end=pos),
            context=types.CodeActionContext(diagnostics=[], only=["refactor.smalltalk.explain"]),
        )
    )
    actions = [a for a in result or [] if isinstance(a, types.CodeAction)]
    assert len(actions) == 1, result
    resolved = await asyncio.wait_for(client.code_action_resolve_async(actions[0]), 400)
    assert resolved.command is not None
    note = Path(to_fs_path(resolved.command.arguments[0]) or "")  # type: ignore[index]
    lines = note.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "# Explanation: SRStore >> rightsFor:"
    assert lines[2].startswith("_Written by the reasoning model (qwen2.5-coder-1.5b) "), lines[2]
    answer = " ".join(line for line in lines[3:] if not line.startswith(("<", ">")))
    # Greedy decoding of the real model: the answer is about this method (it selects the
    # rights of a territory), not the chat markup of a wrong template.
    assert "territory" in answer.lower(), answer
    assert "<|im_start|>" not in answer and "<|im_end|>" not in answer
