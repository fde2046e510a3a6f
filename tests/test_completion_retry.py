"""A suggestion the filters would drop whole for its syntax gets a second try from another
first piece (server.completion.pipeline.generate); one dropped for repeating the text after the
cursor does not. The default coder, our own sample."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.completion.context import build_context
from server.completion.filters import apply_filters, dropped_for_syntax
from server.completion.pipeline import CompletionOptions, complete
from server.completion.syntax import method_errors
from server.completion.types import CompletionRequest
from server.engine.types import Generation

STORE_PATH = (
    Path(__file__).parent / "fixtures" / "sample" / "tonel" / "StreamingRights-Core"
    / "SRRegionalStore.class.st"
)
STORE = STORE_PATH.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def coder(qwen_model):
    from server.engine.session import LlamaSession

    session = LlamaSession(qwen_model, n_ctx=4096, n_batch=256, n_threads=2)
    calls: list[Generation] = []
    generate = session.generate

    def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
        generation = generate(*args, **kwargs)
        calls.append(generation)
        return generation

    session.generate = counted  # type: ignore[method-assign]
    yield session, calls
    session.close()


def test_an_answer_dropped_for_its_syntax_is_tried_again_from_another_first_piece(coder):
    session, calls = coder
    # The keyword part that goes on the message of the line above cut out, indentation kept:
    # the model's likeliest answer is a statement of its own (`^ self`), which cannot follow
    # a receiver left without its message.
    line = "ifFalse: [ ^ self error: 'Territory not covered' ]."
    at = STORE.index(line)
    text = STORE[:at] + STORE[at + len(line) :]
    request = CompletionRequest(STORE_PATH.as_uri(), text, at, path=str(STORE_PATH))
    calls.clear()
    result = complete(request, session, options=CompletionOptions(max_generate_ms=None))
    assert len(calls) == 2, [c.text for c in calls]
    assert calls[1].text != calls[0].text
    ctx = build_context(request)
    assert dropped_for_syntax(calls[0].text, ctx)
    assert result.text.strip() and result.raw == calls[1].text
    assert result.generation is not None
    both = calls[0].generated_tokens + calls[1].generated_tokens
    assert result.generation.generated_tokens == both
    method = ctx.method
    assert method is not None
    assert not method_errors(method.before + result.text + method.after)


def test_an_answer_that_repeats_the_text_after_the_cursor_is_not_tried_again(coder):
    session, calls = coder
    # The cursor inside a comment's first word: the model writes the rest of the comment,
    # which is already there; nothing is the right answer.
    path = STORE_PATH.with_name("SRStore.class.st")
    text = path.read_text(encoding="utf-8")
    at = text.index('"Add aRight to the receiver') + 2
    request = CompletionRequest(path.as_uri(), text, at, path=str(path))
    calls.clear()
    result = complete(request, session, options=CompletionOptions(max_generate_ms=None))
    assert len(calls) == 1
    assert not (apply_filters(calls[0].text, build_context(request)) or "").strip()
    assert not dropped_for_syntax(calls[0].text, build_context(request))
    assert result.text == ""
