"""The VS Code end-to-end step "activating an adapter changes the next suggestion", against the
server alone: the same workspace, stubs and adapter (editors/vscode/e2e/fixture.json), the
same cursor and the same settings as the extension sends, over LSP with pytest-lsp.

The step once failed: its random adapter (seed 1, strength 0.15) made the coder write
punctuation (`(`, `(https://...`) that the filters rightly drop, so no ghost text appeared,
and whether a suggestion appeared at all depended on the prompt, which depended on timing
(the retrieval index ready or not, the method re-indexed between the two requests) and on
what the other steps had typed above the cursor. Run with that adapter and that stub
(`SRLicence >> isLongerThan:` after the other stubs), this test fails. Here both requests
must see the same prompt, and both suggestions must be visible, parse and differ.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import pytest
import pytest_lsp
from lsp_support import copy_sample, open_document, start_session, suggest, uri_of, wait_for
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

from adapters import testing
from server.completion.pipeline import PROMPT_MARK
from server.completion.syntax import method_errors
from server.engine.embedded import resolve_model_path

pytestmark = pytest.mark.asyncio(loop_scope="module")
FIXTURE = json.loads(
    (Path(__file__).parents[1] / "editors" / "vscode" / "e2e" / "fixture.json").read_text()
)
# DEBUG: the log messages then carry each prompt. A private data dir keeps user adapters out.
SERVER = ClientServerConfig(
    server_command=[sys.executable, "-m", "server", "serve", "--log-level", "DEBUG"],
    server_env={**os.environ, "XDG_DATA_HOME": tempfile.mkdtemp(prefix="vscode-step-")},
)
# What the extension sends with the e2e user settings (smalltalk.completion.maxGenerateMs); the
# reasoner is left out, it plays no part in a completion.
# The adapter lives in the workspace: trusted (as VS Code says once the user trusts it).
OPTIONS = {
    "completion": {"max_generate_ms": 100000},
    "models": {"reasoning": "off"},
    "trust": {"workspace": True},
}
# The log lines that say the retrieval index is built (or that there will be none): from then
# on the same cursor gets the same prompt.
INDEX_READY = ("retrieval index: ", "without similar-code search")
STUB = FIXTURE["stubs"]["adapter"]


def add_stubs(root: Path) -> Path:
    """The stub methods as the e2e run appends them (e2e.mjs addStubs); the adapter step's file."""
    for stub in FIXTURE["stubs"].values():
        path = root / stub["file"]
        text = path.read_text(encoding="utf-8").rstrip() + "\n"
        method = f"{stub['class']} >> {stub['pattern']} [\n\n\t{stub['body']}\n]\n"
        path.write_text(text + "\n{ #category : #testing }\n" + method, encoding="utf-8")
    return root / STUB["file"]


def cursor(text: str) -> types.Position:
    """After the adapter stub's body, where step 4 asks for a suggestion."""
    head = f"{STUB['class']} >> {STUB['pattern']} [\n\n\t{STUB['body']}"
    end = text.index(head) + len(head)
    line = text.count("\n", 0, end)
    return types.Position(line=line, character=end - (text.rfind("\n", 0, end) + 1))


@pytest_lsp.fixture(scope="module", config=SERVER)
async def client(lsp_client: LanguageClient, tmp_path_factory):
    lsp_client.statuses = []  # type: ignore[attr-defined]

    # Unannotated: pygls hands a parameter annotated `object` the client instead of the params.
    @lsp_client.feature("smalltalk/status")
    def on_status(params):  # type: ignore[no-untyped-def]
        lsp_client.statuses.append(params.models.coder)  # type: ignore[attr-defined]

    root = copy_sample("tonel", tmp_path_factory.mktemp("vscode-step"))
    lsp_client.file = add_stubs(root)  # type: ignore[attr-defined]
    spec = FIXTURE["adapter"]
    testing.write_lora(
        root / ".smalltalk-lsp" / "adapters" / f"{spec['name']}.gguf",
        resolve_model_path(spec["base"]),  # the default coder, which the e2e run uses
        rank=spec["rank"],
        seed=spec["seed"],
        strength=spec["strength"],
    )
    await start_session(lsp_client, root, OPTIONS)
    await wait_for(
        lambda: "ready" in lsp_client.statuses,  # type: ignore[attr-defined]
        "the coder model",
        timeout=180,
    )
    await wait_for(
        lambda: any(any(n in m.message for n in INDEX_READY) for m in lsp_client.log_messages),
        "the retrieval index",
        timeout=300,
    )
    yield
    await lsp_client.shutdown_session()


def prompts(client: LanguageClient) -> list[str]:
    """The prompts of the requests (not those of suggestions computed ahead)."""
    messages = [m.message for m in client.log_messages]
    return [m.split(PROMPT_MARK, 1)[1] for m in messages
            if PROMPT_MARK in m and "computed ahead" not in m.split(PROMPT_MARK, 1)[0]]


def parses_with(text: str, at: types.Position, suggestion: str) -> bool:
    """Does the stub method parse with the suggestion inserted at the cursor?"""
    lines = text.split("\n")
    lines[at.line] = lines[at.line][: at.character] + suggestion + lines[at.line][at.character :]
    method = "\n".join(lines).split(f"{STUB['class']} >> {STUB['pattern']} ", 1)[1]
    source = STUB["pattern"] + " " + method[: method.index("\n]") + 2]
    return not method_errors(source)


async def test_activating_the_adapter_changes_the_suggestion(client: LanguageClient) -> None:
    path: Path = client.file  # type: ignore[attr-defined]
    text = path.read_text(encoding="utf-8")
    uri = open_document(client, path)
    at = cursor(text)
    plain = await suggest(client, uri_of(path), at)
    assert plain.strip(), "no suggestion without the adapter"
    assert parses_with(text, at, plain), plain

    name = FIXTURE["adapter"]["name"]
    activated = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="smalltalk.adapters.activate", arguments=[name])
    )
    assert activated["active"] and activated["loaded"], activated  # type: ignore[index]
    adapted = await suggest(client, uri, at)
    assert adapted.strip(), f"no suggestion with {name} (plain: {plain!r})"
    assert adapted != plain
    assert parses_with(text, at, adapted), adapted
    # The adapter is the only difference: the same prompt both times.
    sent = prompts(client)
    assert len(sent) == 2 and sent[0] == sent[1], [len(p) for p in sent]
