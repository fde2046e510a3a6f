"""End to end: `smalltalk-lsp serve` over stdio with the default embedded coder
(Qwen2.5-Coder-0.5B-Instruct, fill-in-the-middle from its own tokens) on the sample project.
Inline completion, superseding, $/cancelRequest, a corrupt model file."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import pytest_lsp
from lsp_support import (
    copy_sample,
    doc,
    end_of,
    open_document,
    server_config,
    set_text,
    start_session,
    wait_for,
)
from lsprotocol import types
from pytest_lsp import LanguageClient

from server.completion.pipeline import PROMPT_MARK
from server.completion.syntax import method_errors
from smalltalk_grammar import parse

# The client lives on the module's event loop; the tests must run on it too.
pytestmark = pytest.mark.asyncio(loop_scope="module")
SERVER = server_config()
# Generous: the shared test machine is slow, and a generation cap would make the test about time.
OPTIONS = {
    "models": {"reasoning": "off"},
    "cpu_settings": {"context_length": 2048},
    "completion": {"max_generate_ms": 240000},
}
STORE = "StreamingRights-Core/SRStore.class.st"
EMPTY_METHOD = "\n{ #category : #testing }\nSRStore >> isEmpty [\n\n\t"


def statuses(client: LanguageClient) -> list[dict]:
    return client.statuses  # type: ignore[attr-defined, no-any-return]


def listen_for_status(client: LanguageClient) -> None:
    client.statuses = []  # type: ignore[attr-defined]

    # No annotation on `params`: pygls takes a parameter annotated with a supertype of the
    # client class (`object` included) for the client itself.
    @client.feature("smalltalk/status")
    def on_status(params):  # type: ignore[no-untyped-def]
        models = _field(params, "models")
        statuses(client).append(
            {"coder": _field(models, "coder"), "reasoner": _field(models, "reasoner")}
        )
        client.names = _field(params, "names")  # type: ignore[attr-defined]


def _field(value: object, name: str) -> object:
    # pygls hands unknown notifications' params over as dicts or as attribute objects.
    return value[name] if isinstance(value, dict) else getattr(value, name)


@pytest_lsp.fixture(scope="module", config=SERVER)
async def client(lsp_client: LanguageClient, tmp_path_factory):
    listen_for_status(lsp_client)
    root = copy_sample("tonel", tmp_path_factory.mktemp("inline"))
    lsp_client.root = root  # type: ignore[attr-defined]
    lsp_client.init_result = await start_session(lsp_client, root, OPTIONS)  # type: ignore[attr-defined]
    await wait_for(
        lambda: any(s["coder"] in ("ready", "failed") for s in statuses(lsp_client)),
        "the coder model",
        timeout=120,
    )
    yield
    await lsp_client.shutdown_session()


def inline_params(uri: str, pos: types.Position) -> types.InlineCompletionParams:
    return types.InlineCompletionParams(
        text_document=doc(uri),
        position=pos,
        context=types.InlineCompletionContext(
            trigger_kind=types.InlineCompletionTriggerKind.Automatic
        ),
    )


def suggestion_of(result: object) -> str:
    assert isinstance(result, types.InlineCompletionList)
    if not result.items:
        return ""
    text = result.items[0].insert_text
    return text if isinstance(text, str) else text.value


async def test_the_coder_loaded_and_inline_completion_is_advertised(client: LanguageClient):
    result: types.InitializeResult = client.init_result  # type: ignore[attr-defined]
    assert result.capabilities.inline_completion_provider is not None
    await wait_for(
        lambda: statuses(client)[-1] == {"coder": "ready", "reasoner": "off"}, "model states"
    )
    assert any(s["coder"] == "loading" for s in statuses(client))
    # The status names what each role runs: the default coder, no reasoner.
    names = client.names  # type: ignore[attr-defined]
    assert (_field(names, "coder"), _field(names, "reasoner")) == ("qwen2.5-coder-0.5b", "off")


async def test_inline_completion_in_an_empty_method_parses_in_context(client: LanguageClient):
    path = client.root / STORE  # type: ignore[attr-defined]
    uri = open_document(client, path)
    text = path.read_text(encoding="utf-8") + EMPTY_METHOD
    set_text(client, uri, 2, text + "\n]\n")
    result = await client.text_document_inline_completion_async(inline_params(uri, end_of(text)))
    suggestion = suggestion_of(result)
    assert suggestion.strip(), "the coder gave no suggestion"
    completed = text + suggestion + "\n]\n"
    parsed = parse(completed, str(path))
    method = next(m for m in parsed.methods if m.selector == "isEmpty")
    assert method_errors(method.source) == []
    assert not [d for d in parsed.diagnostics if d.severity == "error"]
    # The prompt was a fill-in-the-middle one, built from the coder's own tokens.
    prompts = [m.message.split(PROMPT_MARK, 1)[1] for m in client.log_messages
               if PROMPT_MARK in m.message and "computed ahead" not in m.message]
    # Qwen2.5-Coder's repository layout: the file named, then its FIM prompt.
    assert prompts and prompts[-1].startswith("<|repo_name|>"), prompts[-1:]
    assert "<|file_sep|>SRStore.class.st\n<|fim_prefix|>" in prompts[-1]
    assert "<|fim_suffix|>" in prompts[-1] and prompts[-1].endswith("<|fim_middle|>")


async def test_a_newer_request_supersedes_the_running_one(client: LanguageClient):
    path = client.root / STORE  # type: ignore[attr-defined]
    uri = open_document(client, path, version=10)
    # A changed first line: nothing of the previous prompt is reusable, so the first request
    # is still evaluating its prompt when the second arrives.
    text = '"superseding"\n' + path.read_text(encoding="utf-8") + EMPTY_METHOD
    set_text(client, uri, 11, text + "\n]\n")
    first = asyncio.ensure_future(
        client.text_document_inline_completion_async(inline_params(uri, end_of(text)))
    )
    await asyncio.sleep(0.05)
    # The user goes on editing: the same place in a changed document.
    newer = text.replace('"superseding"', '"superseded"', 1)
    set_text(client, uri, 12, newer + "\n]\n")
    second = await client.text_document_inline_completion_async(
        inline_params(uri, end_of(newer))
    )
    assert suggestion_of(await first) == ""
    assert suggestion_of(second).strip()
    await wait_for(
        lambda: any("cancelled: model stopped" in m.message for m in client.log_messages),
        "the superseded request's model work to stop",
    )


async def test_cancel_request_stops_the_model(client: LanguageClient):
    path = client.root / STORE  # type: ignore[attr-defined]
    uri = open_document(client, path, version=20)
    text = '"cancelled"\n' + path.read_text(encoding="utf-8") + EMPTY_METHOD
    set_text(client, uri, 21, text + "\n]\n")
    before = sum("cancelled: model stopped" in m.message for m in client.log_messages)
    future = client.protocol.send_request(
        types.TEXT_DOCUMENT_INLINE_COMPLETION, inline_params(uri, end_of(text)), msg_id="to-cancel"
    )
    await asyncio.sleep(0.2)
    client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id="to-cancel"))
    with pytest.raises(Exception, match="cancel"):
        await asyncio.wrap_future(future)
    await wait_for(
        lambda: sum("cancelled: model stopped" in m.message for m in client.log_messages)
        > before,
        "the cancelled request's model work to stop",
    )


async def test_invoked_completion_carries_the_models_suggestion(client: LanguageClient):
    # pytest-lsp's VS Code capabilities predate inline completion: this client gets the
    # suggestion as a completion item when it asks explicitly, and only then.
    path = client.root / STORE  # type: ignore[attr-defined]
    uri = open_document(client, path, version=30)
    text = path.read_text(encoding="utf-8") + EMPTY_METHOD
    set_text(client, uri, 31, text + "\n]\n")

    async def items(kind: types.CompletionTriggerKind | None) -> list[types.CompletionItem]:
        context = None if kind is None else types.CompletionContext(trigger_kind=kind)
        result = await client.text_document_completion_async(
            types.CompletionParams(text_document=doc(uri), position=end_of(text), context=context)
        )
        assert isinstance(result, types.CompletionList)
        return [item for item in result.items if (item.data or {}).get("source") == "model"]

    model_items = await items(types.CompletionTriggerKind.Invoked)
    assert len(model_items) == 1
    edit = model_items[0].text_edit
    assert isinstance(edit, types.TextEdit) and edit.new_text.strip()
    assert edit.range.start == end_of(text)
    assert await items(None) == []
    assert await items(types.CompletionTriggerKind.TriggerCharacter) == []


# --- a corrupt model file ---------------------------------------------------------------


@pytest_lsp.fixture(scope="module", config=SERVER)
async def broken_client(lsp_client: LanguageClient, tmp_path_factory):
    listen_for_status(lsp_client)
    root = copy_sample("tonel", tmp_path_factory.mktemp("broken"))
    corrupt = root / "models" / "coder.gguf"
    corrupt.parent.mkdir()
    corrupt.write_bytes(b"GGUF\x03\x00\x00\x00" + bytes(range(256)) * 64)
    lsp_client.root = root  # type: ignore[attr-defined]
    options = {"models": {"code_generation": "models/coder.gguf", "reasoning": "off"}}
    await start_session(lsp_client, root, options)
    await wait_for(
        lambda: any(s["coder"] == "failed" for s in statuses(lsp_client)), "the coder to fail"
    )
    yield
    await lsp_client.shutdown_session()


async def test_a_corrupt_model_gives_one_message_and_static_features_work(
    broken_client: LanguageClient,
):
    client = broken_client
    errors = [m for m in client.messages if m.type == types.MessageType.Error]
    assert len(errors) == 1
    assert "coder.gguf" in errors[0].message
    # The GGUF checks name the one that failed (server/engine/gguf_check.py).
    assert "check failed" in errors[0].message
    path: Path = client.root / STORE  # type: ignore[attr-defined]
    uri = open_document(client, path)
    symbols = await client.text_document_document_symbol_async(
        types.DocumentSymbolParams(text_document=doc(uri))
    )
    assert symbols and "SRStore" in str(symbols)
    text = path.read_text(encoding="utf-8")
    result = await client.text_document_inline_completion_async(inline_params(uri, end_of(text)))
    assert suggestion_of(result) == ""
