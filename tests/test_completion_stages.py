"""Direct tests of the pure completion stages: context, filters one by one, prompt, cache."""

from __future__ import annotations

from server.completion import filters as f
from server.completion.cache import CacheKey, SuggestionCache
from server.completion.context import build_context, stable_window_start
from server.completion.lexical import balanced_ends, is_balanced, scan
from server.completion.pipeline import (
    _another_start,
    _closed_try,
    first_token_check_for,
    worth_another_try,
)
from server.completion.prompt import build_prompt
from server.completion.types import CompletionRequest, ContextSnippet, CursorContext
from server.engine.types import FimTokens, Generation
from smalltalk_grammar import format_of

TONEL = """Class {
	#name : #SRLicence,
	#superclass : #Object,
	#category : #'StreamingRights-Core'
}

{ #category : #accessing }
SRLicence >> fee [

	^ fee ifNil: [ 0 ]
]

{ #category : #accessing }
SRLicence >> startDate [

	CURSOR
]

{ #category : #accessing }
SRLicence >> endDate [

	^ endDate
]
"""


def ctx_at(text: str, marker: str = "CURSOR", fmt: str | None = None) -> CursorContext:
    offset = text.index(marker)
    clean = text.replace(marker, "")
    return build_context(CompletionRequest("file:///x.st", clean, offset, source_format=fmt))


# --- lexical ----------------------------------------------------------------------------


def test_scanner_ignores_brackets_in_strings_comments_and_characters() -> None:
    state, events = scan("x := '[' , \"(\" , $] printString. [ :y | y ]")
    assert state.stack == []
    assert [e.kind for e in events if e.kind in ("open", "close", "bad-close")] == ["open", "close"]


def test_scanner_doubled_quote_stays_in_string() -> None:
    state, _ = scan("'it''s")
    assert state.quote == "'"
    assert is_balanced("'it''s' size")


def test_balanced_ends_stop_at_a_foreign_closer() -> None:
    assert balanced_ends("a ] b") == [0, 1, 2]


# --- context ----------------------------------------------------------------------------


def test_format_of_the_text_at_hand() -> None:
    # Completion takes the grammar's detector (the one the parser uses).
    assert format_of(TONEL) == "tonel"
    assert format_of("!Foo methodsFor: 'x'!\nbar\n\t^ 1! !\n") == "chunk"
    assert format_of("Object subclass: Foo [\n  bar [ ^ 1 ]\n]\n") == "bracket"
    assert format_of("bar\n\t^ 1", "Pkg.package/Foo.class/instance/bar.st") == "filetree"
    assert build_context(CompletionRequest("file:///x.st", TONEL, 10)).source_format == "tonel"


def test_block_mode_at_start_of_empty_tonel_body() -> None:
    ctx = ctx_at(TONEL)
    assert ctx.mode == "block"
    assert ctx.method is not None
    assert ctx.method.class_name == "SRLicence"
    assert ctx.method.selector == "startDate"
    assert ctx.method.before.startswith("startDate")
    assert ctx.method.after.strip() == ""
    assert ctx.scan.stack == []


def test_line_mode_mid_line_with_open_block() -> None:
    text = TONEL.replace("\tCURSOR", "\t^ fee ifNil: [ CURSOR ]")
    ctx = ctx_at(text)
    assert ctx.mode == "line"
    assert ctx.line_suffix == " ]"
    assert [b for b, _ in ctx.scan.stack] == ["["]


def test_cursor_between_methods_has_no_method() -> None:
    header = "{ #category : #accessing }\nSRLicence >> endDate"
    text = TONEL.replace(header, "CURSOR\nSRLicence >> endDate")
    text = text.replace("\tCURSOR\n", "\t^ startDate\n", 1)
    ctx = ctx_at(text)
    assert ctx.method is None
    assert ctx.mode == "line"


def test_chunk_method_span_unescapes_bangs() -> None:
    text = "!Foo methodsFor: 'x'!\nshout\n\t^ 'hey!!' , CURSOR\n! !\n"
    ctx = ctx_at(text, fmt="chunk")
    assert ctx.method is not None
    assert ctx.method.before == "shout\n\t^ 'hey!' , "
    assert ctx.method.class_name == "Foo"


def test_window_start_moves_in_steps() -> None:
    starts = {stable_window_start(offset, 1000) for offset in range(5000, 5200)}
    assert len(starts) == 1
    assert stable_window_start(10, 1000) == 0


# --- filters, one at a time -------------------------------------------------------------


def test_suffix_ends_with_the_line_that_closes_the_method() -> None:
    # A keystroke evaluates the whole suffix again: it holds the rest of this method, not the
    # methods further down.
    ctx = ctx_at(TONEL)
    assert ctx.suffix == "\n]"
    outside = ctx_at(TONEL.replace("SRLicence >> fee [", "CURSOR\nSRLicence >> fee ["))
    assert outside.method is None and "^ endDate" in outside.suffix


def test_a_comment_being_typed_does_not_take_the_method_closer_in() -> None:
    # The scan sees the `]` below as part of the open comment; the method still ends there,
    # and a suggestion that closes the comment is kept (it was dropped as unparsable).
    ctx = ctx_at(TONEL.replace("\tCURSOR", '\t"RCURSOR'))
    assert ctx.method is not None and ctx.method.after == "\n"
    assert ctx.suffix == "\n]"
    assert f.apply_filters('eturn the start date"', ctx) == 'eturn the start date"'


def test_a_parenthesis_left_open_on_the_cursors_line_does_not_end_the_method_early() -> None:
    # `(rights includes: ` lacks its `)`: the `]` of the block below closes that block (the
    # scan pairs it with the parenthesis first), and the method still ends at its own `]`.
    body = (
        "\trights do: [ :each |\n\t\t(rights includes: CURSOR\n"
        "\t\t\tifTrue: [ each fee ] ].\n\t^ fee"
    )
    ctx = ctx_at(TONEL.replace("\tCURSOR", body))
    assert ctx.method is not None
    assert ctx.method.after == "\n\t\t\tifTrue: [ each fee ] ].\n\t^ fee\n"
    assert f.apply_filters(" each)", ctx) == "each)"


def test_cut_at_method_end() -> None:
    ctx = ctx_at(TONEL)
    assert f.cut_at_method_end("^ startDate\n]\nmore", ctx) == "^ startDate\n"


def test_cut_at_bang_only_in_chunk_files() -> None:
    chunk = ctx_at("!Foo methodsFor: 'x'!\nbar\n\tCURSOR\n! !\n", fmt="chunk")
    assert f.cut_at_bang("^ 1! !", chunk) == "^ 1"
    assert f.cut_at_bang("^ 'a!!b'", chunk) == "^ 'a!!b'"
    assert f.cut_at_bang("^ 1! !", ctx_at(TONEL)) == "^ 1! !"


def test_cut_repeated_suffix_on_the_line() -> None:
    ctx = ctx_at(TONEL.replace("\tCURSOR", "\t^ fee ifNil: [ CURSOR ]"))
    assert f.cut_repeated_suffix("0 ]", ctx) == "0"
    assert f.cut_repeated_suffix("0", ctx) == "0"


def test_keep_balanced_trims_open_bracket() -> None:
    ctx = ctx_at(TONEL.replace("\tCURSOR", "\t^ x CURSOR"))
    assert f.keep_balanced("ifTrue: [ 1 ] ifFalse: [ 2", ctx) == "ifTrue: [ 1 ] ifFalse: "


def test_keep_balanced_lets_a_suggestion_close_the_string_it_is_in() -> None:
    ctx = ctx_at(TONEL.replace("\tCURSOR", "\t^ 'abcCURSOR"))
    assert ctx.scan.quote == "'"
    assert f.keep_balanced("def'", ctx) == "def'"


def test_a_suggestion_may_close_what_its_line_opened_and_lacks() -> None:
    # `[` typed without the editor adding `]`: the closer belongs in the suggestion.
    typing = ctx_at(TONEL.replace("\tCURSOR", "\tfee isNil ifTrue: [ ^ self CURSOR"))
    assert f.unclosed_on_line(typing) == 1
    assert f.keep_balanced("errorNoFee ].", typing) == "errorNoFee ]."
    assert f.keep_balanced("errorNoFee ]. ^ fee ]", typing) == "errorNoFee ]. ^ fee "
    # The line already closes it after the cursor: no second closer.
    closed = ctx_at(TONEL.replace("\tCURSOR", "\tfee isNil ifTrue: [ ^ self CURSOR ]"))
    assert f.unclosed_on_line(closed) == 0
    assert f.keep_balanced("errorNoFee ]", closed) == "errorNoFee "
    # A bracket opened on an earlier line is never closed by a line's suggestion.
    earlier = ctx_at(TONEL.replace("\tCURSOR", "\tfee isNil ifTrue: [\n\t\t^ self CURSOR"))
    assert f.unclosed_on_line(earlier) == 0
    assert f.keep_balanced("errorNoFee ]", earlier) == "errorNoFee "
    # The statement ends after the closer's period.
    assert f.cut_at_statement_end("errorNoFee ]. ^ 0", typing) == "errorNoFee ]."


def test_parse_check_adds_the_period_a_statement_lacks_before_the_next() -> None:
    ctx = ctx_at(TONEL.replace("\tCURSOR", "\tCURSOR\n\t[ fee > 0 ] whileTrue: [ fee := fee - 1 ]"))
    assert f.longest_parsing_prefix("self checkFee", ctx) == "self checkFee."


def test_parse_check_judges_a_method_broken_only_by_the_gap_at_the_cursor() -> None:
    # The next line continues a receiver the gap lacks: a whole statement there breaks it.
    gap = TONEL.replace("\tCURSOR", "\tCURSOR\n\t\tifTrue: [ ^ 0 ].\n\t^ fee")
    ctx = ctx_at(gap)
    assert f.longest_parsing_prefix("fee := 3.", ctx) == "fee := 3"
    assert f.longest_parsing_prefix("fee isNil", ctx) == "fee isNil"


def test_parse_check_closes_what_the_line_opened_when_the_model_stopped_at_its_end() -> None:
    # `[ ` typed with no `]` after it on the line; the model ends the line without one.
    ctx = ctx_at(TONEL.replace("\tCURSOR", "\t^ fee ifNil: [ CURSOR"))
    assert ctx.mode == "line"
    assert f.longest_parsing_prefix("fee := 0", ctx) == "fee := 0 ]"
    assert f.apply_filters(" fee := 0", ctx) == "fee := 0 ]"
    # Two open: closed innermost first.
    nested = ctx_at(TONEL.replace("\tCURSOR", "\t^ fee ifNil: [ (0 max: CURSOR"))
    assert f.longest_parsing_prefix("1", nested) == "1) ]"
    # A bracket closed on a later line of the method is not closed again.
    later = ctx_at(TONEL.replace("\tCURSOR", "\t^ fee ifNil: [ CURSOR\n\t\t0 ]"))
    assert "]" not in (f.longest_parsing_prefix("fee := 0", later) or "")


def test_last_resort_closes_the_brackets_an_answer_left_open() -> None:
    # A keyword part that goes on the message above, its block left open at the line's end.
    above = TONEL.replace("\tCURSOR", "\t^ fee isNil\n\t\tifTrue: [ 0 ]\n\t\tCURSOR")
    ctx = ctx_at(above)
    assert f.apply_filters("\tifFalse: [", ctx) is None
    assert f.closed_answer("\tifFalse: [", ctx) == "ifFalse: [ ]"
    # Arithmetic cut inside its parentheses: the longest prefix that parses once closed.
    rest = ctx_at(TONEL.replace("\tCURSOR", "\t^ 1 - CURSOR"))
    assert f.apply_filters(" (1 - (fee *", rest) is None
    assert f.closed_answer(" (1 - (fee *", rest) == "(1 - (fee))"
    # Nothing to close, or a string left open: no last resort.
    assert f.closed_answer(" = fee ? 1", rest) is None
    assert f.closed_answer(" 'abc", rest) is None
    # An answer dropped for repeating the text after the cursor is not one to mend.
    repeated = ctx_at(TONEL.replace("\tCURSOR", "\t^ fee CURSOR\tifTrue:"))
    assert f.closed_answer("\tifTrue:", repeated) is None
    # After the last try the earliest that can be mended is the answer, else the last as is.
    last = Generation("\telse: [", "stop", generated_tokens=9)
    mended = _closed_try(["\t", "\tifFalse: [", last.text], last, ctx)
    assert mended.text == "ifFalse: [ ]" and mended.generated_tokens == 9
    assert _closed_try(["\t", " = fee ?"], last, rest) is last


def test_statement_end_only_in_line_mode() -> None:
    line = ctx_at(TONEL.replace("\tCURSOR", "\tx := CURSOR"))
    assert f.cut_at_statement_end("3. y := 4", line) == "3."
    assert f.cut_at_statement_end("3.25", line) == "3.25"
    block = ctx_at(TONEL)
    assert f.cut_at_statement_end("x := 3.\n\t^ x", block) == "x := 3.\n\t^ x"


def test_parse_check_keeps_suggestion_when_method_is_broken_elsewhere() -> None:
    broken = TONEL.replace("\tCURSOR", "\t| a |\n\ta := := 3.\n\t^ a CURSOR")
    ctx = ctx_at(broken)
    assert f.longest_parsing_prefix("+ + +", ctx) == "+ + +"


# --- prompt -----------------------------------------------------------------------------


def test_prefix_only_prompt_puts_context_first() -> None:
    ctx = ctx_at(TONEL)
    ctx = CursorContext(**{**ctx.__dict__, "snippets": (ContextSnippet('"project"'),)})
    prompt = build_prompt(ctx, None)
    assert prompt.text.startswith('"project"\n\n')
    assert ctx.prefix.endswith("\n\t")
    assert prompt.text.endswith(ctx.prefix[:-1])  # the tab before the cursor is left out
    assert prompt.mode == "block" and prompt.stop == ()


def test_fim_prompt_uses_the_models_tokens() -> None:
    ctx = ctx_at(TONEL.replace("\tCURSOR", "\t^ fee CURSOR"))
    fim = FimTokens("<PRE>", "<SUF>", "<MID>")
    prompt = build_prompt(ctx, fim)
    assert prompt.text == f"<PRE>{ctx.prefix.rstrip()}<SUF>{ctx.suffix}<MID>"
    assert prompt.stop == ("\n",)


def test_fim_prompt_keeps_the_indentation_of_an_empty_body_line() -> None:
    # Cut at column 0, Qwen2.5-Coder-0.5B answered an empty body with a whole new method.
    ctx = ctx_at(TONEL)
    assert ctx.mode == "block" and ctx.prefix.endswith("\n\t")
    prompt = build_prompt(ctx, FimTokens("<PRE>", "<SUF>", "<MID>"))
    assert prompt.text == f"<PRE>{ctx.prefix}<SUF>{ctx.suffix}<MID>"
    assert prompt.stable_chars == len("<PRE>") + len(ctx.prefix)


REPO_FIM = FimTokens("<PRE>", "<SUF>", "<MID>", repo_name="<REPO>", file_sep="<SEP>")


def test_repository_prompt_lays_context_out_as_files() -> None:
    base = ctx_at(TONEL.replace("\tCURSOR", "\t^ feCURSOR"))
    request = CompletionRequest(base.request.uri, base.request.text, base.request.offset,
                                path="/ws/src/StreamingRights-Core/SRLicence.class.st")
    snippets = (
        ContextSnippet('"similar: SRStore >> fee"\n^ fee', "similar",
                       "/ws/src/StreamingRights-Core/SRStore.class.st",
                       code="SRStore >> fee [\n\t^ fee\n]"),
        ContextSnippet('"lexical: SRRight >> fee"\n^ 1', "lexical",
                       "/ws/src/StreamingRights-Core/SRRight.class.st"),
        ContextSnippet('"implementors: SRStore >> size"\n^ 0', "implementors",
                       "/ws/src/StreamingRights-Core/SRStore.class.st",
                       code="SRStore >> size [\n\t^ 0\n]"),
        ContextSnippet('"SRLicence also understands: #fee"', "selectors"),  # no file: left out
        # Two packages' files of one name stay two files.
        ContextSnippet("x", "senders", "/ws/src/StreamingRights-Core/Object.extension.st",
                       code="Object >> isRight [\n\t^ false\n]"),
        ContextSnippet("x", "senders", "/ws/src/StreamingRights-Tests/Object.extension.st",
                       code="Object >> isTest [\n\t^ false\n]"),
    )
    ctx = CursorContext(**{**base.__dict__, "request": request, "snippets": snippets})
    prompt = build_prompt(ctx, REPO_FIM)
    assert prompt.text == (
        "<REPO>src\n"
        "<SEP>SRStore.class.st\n"
        "SRStore >> fee [\n\t^ fee\n]\n\nSRStore >> size [\n\t^ 0\n]\n"
        '<SEP>SRRight.class.st\n"lexical: SRRight >> fee"\n^ 1\n'
        "<SEP>Object.extension.st\nObject >> isRight [\n\t^ false\n]\n"
        "<SEP>Object.extension.st\nObject >> isTest [\n\t^ false\n]\n"
        "<SEP>SRLicence.class.st\n"
        f"<PRE>{ctx.prefix}<SUF>{ctx.suffix}<MID>"
    )
    # Off by setting, or for models without repository tokens: context as text in the prefix.
    plain = build_prompt(ctx, REPO_FIM, repository=False)
    assert plain.text.startswith('<PRE>"similar: SRStore >> fee"\n^ fee\n\n')
    assert build_prompt(ctx, FimTokens("<PRE>", "<SUF>", "<MID>")).text == plain.text


def test_repository_prompt_leaves_out_what_the_window_shows() -> None:
    base = ctx_at(TONEL)
    path = "/ws/src/StreamingRights-Core/SRLicence.class.st"
    request = CompletionRequest(base.request.uri, base.request.text, base.request.offset,
                                path=path)
    shown = ContextSnippet("x", "siblings", path,
                           code="SRLicence >> fee [\n\n\t^ fee ifNil: [ 0 ]\n]")
    ctx = CursorContext(**{**base.__dict__, "request": request, "snippets": (shown,)})
    text = build_prompt(ctx, REPO_FIM).text
    assert text.startswith("<REPO>src\n<SEP>SRLicence.class.st\n<PRE>")
    # The current file's items from outside the window come first in its FIM prefix.
    head = ContextSnippet("x", "class", path, code="Class {\n\t#name : 'SRLicence'\n}")
    ctx = CursorContext(**{**ctx.__dict__, "prefix": ctx.prefix[-40:], "snippets": (head,)})
    text = build_prompt(ctx, REPO_FIM).text
    assert text.startswith("<REPO>src\n<SEP>SRLicence.class.st\n"
                           "<PRE>Class {\n\t#name : 'SRLicence'\n}\n\n" + ctx.prefix[-40:-1])


def test_prompt_front_is_stable_while_typing() -> None:
    base = TONEL.replace("\tCURSOR", "\t^ feCURSOR")
    typed = TONEL.replace("\tCURSOR", "\t^ feeCURSOR")
    first, second = build_prompt(ctx_at(base), None), build_prompt(ctx_at(typed), None)
    assert second.text.startswith(first.text)


# --- cache ------------------------------------------------------------------------------


def test_typing_through_a_suggestion() -> None:
    cache = SuggestionCache()
    key = CacheKey("u", "model.gguf")
    text = "abc tail"
    cache.remember(key, text, 3, "defgh")
    typed = "abcde tail"
    assert cache.typed_through(key, typed, 5) == "fgh"
    assert cache.typed_through(key, "abcx tail", 4) is None
    assert cache.typed_through(CacheKey("u", "model.gguf", "adapter"), typed, 5) is None
    assert cache.typed_through(key, "abcde tail!", 5) is None  # the text after changed


# --- the pipeline with a scripted engine (the real one is in test_completion_e2e) -------


class ScriptedEngine:
    """Answers every prompt with the same text and counts the calls."""

    model_id = "scripted.gguf"
    fim = None

    def __init__(self, answer: str) -> None:
        self.answer = answer
        self.prompts: list[str] = []

    def generate(self, prompt, params, cancel, stop_check=None):  # type: ignore[no-untyped-def]
        from server.engine.types import Generation

        self.prompts.append(prompt)
        text = self.answer
        cut = stop_check(text) if stop_check else None
        return Generation(text[:cut] if cut is not None else text, "stop")


def test_pipeline_serves_typing_through_and_repeats_from_cache() -> None:
    from server.completion.pipeline import CompletionOptions, complete
    from server.engine.worker import Remembered

    engine = ScriptedEngine("rights size\n")
    cache, remembered = SuggestionCache(), Remembered()
    text = TONEL.replace("\tCURSOR", "\t^ self CURSOR")
    offset = text.index("CURSOR")
    clean = text.replace("CURSOR", "")
    first = complete(CompletionRequest("u", clean, offset), engine, cache=cache,
                     remembered=remembered)
    assert first.text == "rights size" and first.source == "model"
    typed = clean[:offset] + "ri" + clean[offset:]
    second = complete(CompletionRequest("u", typed, offset + 2), engine, cache=cache,
                      remembered=remembered)
    assert second.text == "ghts size" and second.source == "typed-through"
    # The same prompt from another document: the remembered generation, no model call.
    again = complete(CompletionRequest("other", clean, offset), engine, cache=cache,
                     remembered=remembered)
    assert again.source == "cache" and again.text == "rights size"
    assert len(engine.prompts) == 1
    lora = CompletionOptions(adapter_key="lora-a")
    complete(CompletionRequest("u", clean, offset), engine, options=lora, cache=cache,
             remembered=remembered)
    assert len(engine.prompts) == 2
    # Sampling: the same prompt may give another text, so it runs again.
    sampled = CompletionOptions(temperature=0.7)
    for _ in range(2):
        complete(CompletionRequest("v", clean, offset), engine, options=sampled,
                 remembered=remembered)
    assert len(engine.prompts) == 4


def test_stop_check_ends_generation_at_the_method_end() -> None:
    from server.completion.pipeline import complete

    engine = ScriptedEngine("^ startDate\n]\n\n{ #category : #accessing }\nSRLicence >> x [")
    offset = TONEL.index("CURSOR")
    result = complete(CompletionRequest("u", TONEL.replace("CURSOR", ""), offset), engine)
    assert result.raw == "^ startDate\n"
    assert result.text == "^ startDate"


def test_a_second_try_starts_with_neither_the_dropped_answers_word_nor_its_whitespace() -> None:
    from server.completion.pipeline import CompletionOptions, complete
    from server.engine.types import Generation

    class TwoAnswers(ScriptedEngine):
        """The first answer the filters drop for its syntax, then one that parses."""

        def generate(self, prompt, params, cancel, stop_check=None):  # type: ignore[no-untyped-def]
            self.prompts.append(prompt)
            self.checks.append(params.first_token)
            return Generation("\tifTrue:" if len(self.prompts) == 1 else " 1", "stop")

    engine = TwoAnswers("")
    engine.checks = []  # type: ignore[attr-defined]
    text = TONEL.replace("\tCURSOR", "\t^ fee + CURSOR")
    offset = text.index("CURSOR")
    clean = text.replace("CURSOR", "")
    result = complete(CompletionRequest("u", clean, offset), engine,
                      options=CompletionOptions(max_generate_ms=None))
    assert len(engine.prompts) == 2 and engine.prompts[0] == engine.prompts[1]
    assert result.text == "1"
    second = engine.checks[1]  # type: ignore[attr-defined]
    assert not second("\t") and not second("if") and not second(" ifTrue") and not second("")
    assert second(" 1") and second(" fee")
    # An answer dropped for repeating the text after the cursor is not tried again.
    repeat = TwoAnswers("")
    repeat.checks = []  # type: ignore[attr-defined]
    typed = TONEL.replace("\tCURSOR", "\t^ fee CURSOR\tifTrue:")
    complete(CompletionRequest("u", typed.replace("CURSOR", ""), typed.index("CURSOR")), repeat,
             options=CompletionOptions(max_generate_ms=None))
    assert len(repeat.prompts) == 1


def test_the_first_piece_must_be_one_that_can_lead_to_a_suggestion() -> None:
    blank = first_token_check_for(ctx_at(TONEL))  # an empty line in an empty method: code is wanted
    assert not blank("") and not blank("]") and not blank(" ].")
    assert blank("^") and blank(" self") and blank('"')
    # After a complete statement the model may stop; a closer its line lacks may come first.
    typing = TONEL.replace("\tCURSOR", "\t^ fee isNil ifTrue: [ 0CURSOR")
    done = first_token_check_for(ctx_at(typing))
    assert done("]") and done(" ]") and not done(")")
    stopped = first_token_check_for(ctx_at(TONEL.replace("\tCURSOR", "\t^ feeCURSOR")))
    assert stopped("")
    # A space typed after the code at the line's end says more comes: stopping is no answer,
    # and a closer the line lacks is still one.
    spaced = first_token_check_for(ctx_at(TONEL.replace("\tCURSOR", "\t^ fee CURSOR")))
    assert not spaced("") and spaced("size")
    closing = first_token_check_for(ctx_at(typing.replace("0CURSOR", "0 CURSOR")))
    assert not closing("") and closing("]") and not closing(")")
    # Not when the line goes on after the cursor.
    inside = first_token_check_for(ctx_at(TONEL.replace("\tCURSOR", "\t^ fee CURSOR+ 1")))
    assert inside("")
    # Broken at the cursor (`^ fee +` wants its argument): stopping at once is no answer.
    missing = first_token_check_for(ctx_at(TONEL.replace("\tCURSOR", "\t^ fee + CURSOR")))
    assert not missing("") and missing(" 1")
    # In line mode a piece that reaches the line end with nothing before it stops at once too.
    line = first_token_check_for(ctx_at(TONEL.replace("\tCURSOR", "\t^ fee + CURSOR")), ("\n",))
    assert not line("\n") and not line(" \n\t") and line(" 1\n")
    # After a keyword part an argument goes, never a colon; in a block its parameters may start.
    keyword = first_token_check_for(ctx_at(TONEL.replace("\tCURSOR", "\t^ fee max: CURSOR")))
    assert not keyword(":") and not keyword(": 0") and keyword(" 0")
    block = first_token_check_for(ctx_at(TONEL.replace("\tCURSOR", "\t^ #(1) collect: [CURSOR")))
    assert block(":")


def test_an_answer_that_came_to_nothing_is_tried_again_where_code_is_wanted() -> None:
    blank = ctx_at(TONEL)  # an empty line in an empty method
    # Whitespace alone, stopping at once, or only a closer of the method: nothing to show.
    assert worth_another_try("\t", blank) and worth_another_try("", blank)
    assert worth_another_try("]", blank)
    assert not worth_another_try("^ startDate", blank)
    # Dropped for its syntax alone, anywhere in a method.
    done = ctx_at(TONEL.replace("\tCURSOR", "\t^ feeCURSOR"))
    assert worth_another_try(" + (1", done)
    # After a finished statement with nothing typed after it, stopping is an answer.
    assert not worth_another_try("", done)
    # The rest of the line repeated, in a method broken at the cursor: nothing may be right.
    repeated = ctx_at(TONEL.replace("\tCURSOR", "\t^ fee CURSOR\tifTrue:"))
    assert not worth_another_try("\tifTrue:", repeated)
    # Outside a method nothing could check a suggestion: never again.
    outside = ctx_at(TONEL.replace("\tCURSOR", "\t").replace(
        "{ #category : #accessing }\nSRLicence >> endDate",
        "CURSOR\n{ #category : #accessing }\nSRLicence >> endDate"))
    assert not worth_another_try("", outside)


def test_a_try_again_refuses_the_starts_of_every_failed_answer() -> None:
    check = _another_start(["\t", "anShape parent", ""], None)
    assert not check("\t") and not check("an") and not check(" an") and not check("")
    assert check("^") and check(" self")
    # After an answer that began with whitespace, whitespace alone is refused too.
    assert not check("\n") and not check("\t\t")
    assert _another_start(["x := 1"], None)("\n")
    # The same failed answer with a line end after it (the stop string cuts it off again).
    quote = _another_start(['"'], None)
    assert not quote('"\n') and not quote(' "') and quote("Definition") and quote('"x')
    # The request's own first-piece rule still applies.
    closing = _another_start(["x"], first_token_check_for(ctx_at(TONEL)))
    assert not closing("]") and closing("^")
