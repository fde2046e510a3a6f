"""At the end of a finished line (a method comment, a statement with its period) the next
suggestion goes on a new line (the cursor analysis's `lead`): the context is worked out as if
the new line were typed, and the suggestion starts with it. Before, line mode there stopped at
the line's end and the suggestion after accepting a one-line comment was always empty."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.completion.context import build_context
from server.completion.pipeline import CompletionOptions, complete
from server.completion.syntax import method_errors
from server.completion.types import CompletionRequest

LICENCE_PATH = (
    Path(__file__).parent / "fixtures" / "sample" / "tonel" / "StreamingRights-Core"
    / "SRLicence.class.st"
)
LICENCE = LICENCE_PATH.read_text(encoding="utf-8")
COMMENT = '\t"Answer the fee spread over the days of the licence"'


def _request(text: str, at: int) -> CompletionRequest:
    return CompletionRequest(LICENCE_PATH.as_uri(), text, at, path=str(LICENCE_PATH))


def _commented_empty_body() -> tuple[str, int]:
    """feePerDay with only its comment left: the cursor at the comment's end."""
    start = LICENCE.index(COMMENT) + len(COMMENT)
    end = LICENCE.index("\n]", start)
    return LICENCE[:start] + LICENCE[end:], start


def test_after_a_method_comment_the_context_is_a_new_line_of_an_empty_body() -> None:
    text, at = _commented_empty_body()
    ctx = build_context(_request(text, at))
    assert ctx.lead == "\n\t"
    assert ctx.mode == "block"  # the body holds only the comment
    assert ctx.line_prefix == "\t" and ctx.prefix.endswith(COMMENT + "\n\t")
    assert ctx.document == (text, at)


def test_after_a_statements_period_the_next_statement_goes_on_a_new_line() -> None:
    at = LICENCE.index("days := self perform: #durationInDays.") + len(
        "days := self perform: #durationInDays.")
    ctx = build_context(_request(LICENCE, at))
    assert ctx.lead == "\n\t"
    assert ctx.mode == "line"  # one statement, in a body that has more


@pytest.mark.parametrize(
    ("after", "why"),
    [
        ("days := self perform: ", "the statement goes on"),
        ('"Answer the fee spread', "inside the comment"),
        ("^ aDate between: startDate and: endDate", "no period: the statement may go on"),
    ],
)
def test_no_new_line_where_the_line_is_not_finished(after: str, why: str) -> None:
    at = LICENCE.index(after) + len(after)
    ctx = build_context(_request(LICENCE, at))
    assert ctx.lead == "", why
    assert ctx.document == (LICENCE, at)


def test_a_period_with_code_after_it_on_the_line_is_not_a_line_end() -> None:
    text = LICENCE.replace("startDate := aDate.\n", "startDate := aDate. endDate := nil.\n")
    at = text.index("startDate := aDate.") + len("startDate := aDate.")
    assert build_context(_request(text, at)).lead == ""


def test_a_period_inside_a_block_the_line_opened_is_not_a_line_end() -> None:
    text = LICENCE.replace("\tfee := aNumber\n", "\tfee := [ self reset. \n")
    at = text.index("[ self reset. ") + len("[ self reset. ")
    assert build_context(_request(text, at)).lead == ""


def test_a_character_literal_period_is_not_a_statements_end() -> None:
    text = LICENCE.replace("\tfee := aNumber\n", "\tfee := $.\n")
    at = text.index("fee := $.") + len("fee := $.")
    assert build_context(_request(text, at)).lead == ""


def test_the_default_coder_writes_the_body_after_an_accepted_method_comment(qwen_model) -> None:
    from server.engine.session import LlamaSession

    text, at = _commented_empty_body()
    session = LlamaSession(qwen_model, n_ctx=4096, n_batch=256, n_threads=2)
    try:
        result = complete(_request(text, at), session,
                          options=CompletionOptions(max_generate_ms=None))
    finally:
        session.close()
    assert result.text.startswith("\n\t"), result
    assert result.text.strip(), result
    # Inserted where the editor has its cursor, the method still parses.
    method = build_context(_request(text, at)).method
    assert method is not None
    assert method.before.endswith(COMMENT + "\n\t")
    source = method.before[: -len("\n\t")] + result.text + method.after
    assert not method_errors(source), source
