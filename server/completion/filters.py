"""Post-processing: one ordered list of small filters from raw model output to a suggestion.

Each filter takes the text so far and the cursor context and returns the (usually shorter)
text, or None to drop the suggestion. They run in the order of FILTERS; golden files under
tests/golden/ pin their behaviour.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from server.completion.lexical import OPENERS, Scanner, balanced_ends, scan
from server.completion.syntax import method_errors
from server.completion.types import CursorContext

Filter = Callable[[str, CursorContext], str | None]

# Texts of special tokens a model may spell out instead of stopping.
_SPECIAL = re.compile(
    r"<\|(?:endoftext|file_separator|file_sep|repo_name|fim_[a-z]+|im_end|im_start|end)\|>"
    r"|<(?:eos|end_of_turn|start_of_turn|fim_[a-z]+|/s)>|<｜[^｜]*｜>"
)
_BANG = re.compile(r"(?<!!)!(?!!)")


def drop_outside_methods(text: str, ctx: CursorContext) -> str | None:
    """Between methods (class definitions, comments, Tonel pragmas) nothing can check a
    suggestion, and a small model there writes prose: suggest only inside a method."""
    return text if ctx.method is not None else None


def drop_typed_whitespace(text: str, ctx: CursorContext) -> str | None:
    """The prompt leaves out the spaces and tabs before the cursor; the model writes them
    again, but the user has already typed them."""
    typed = ctx.line_prefix[len(ctx.line_prefix.rstrip(" \t")) :]
    if not typed:
        return text
    return text[len(typed) :] if text.startswith(typed) else text.lstrip(" \t")


def drop_retyped_line_start(text: str, ctx: CursorContext) -> str | None:
    """A model given a project's context may write the current line again from its start
    (after `^` typed, `^ endDate < aDate`): what the user has typed on the line is not
    suggested twice."""
    typed = ctx.line_prefix.strip(" \t")
    if ctx.mode != "line" or not typed:
        return text
    start = text.lstrip(" \t")
    if not start.startswith(typed):
        return text
    rest = start[len(typed) :]
    # The typed text must end where a token of the retyped line ends (`^` in `^ x`, `self`
    # in `self foo`), not inside one (`se` in `self`: that is a continuation).
    if rest and typed[-1].isalnum() and (rest[0].isalnum() or rest[0] in "_:"):
        return text
    return rest


def cut_special_tokens(text: str, ctx: CursorContext) -> str | None:
    match = _SPECIAL.search(text)
    return text[: match.start()] if match else text


def cut_at_bang(text: str, ctx: CursorContext) -> str | None:
    """In chunk files a single `!` ends the chunk: a suggestion never runs past one."""
    if not ctx.in_chunk_file:
        return text
    match = _BANG.search(text)
    return text[: match.start()] if match else text


def cut_at_line_end(text: str, ctx: CursorContext) -> str | None:
    if ctx.mode != "line":
        return text
    # A suggestion at the end of a blank line may start with the line break itself.
    return text.split("\n", 1)[0].rstrip("\r")


def cut_at_method_end(text: str, ctx: CursorContext) -> str | None:
    """Stop before a closer of something the method body did not open (the method's own `]`,
    a class body): the suggestion ends with the method."""
    scanner = Scanner(ctx.scan)
    for event in scanner.feed(text):
        if event.kind == "bad-close":
            return text[: event.offset]
    return text


def cut_at_statement_end(text: str, ctx: CursorContext) -> str | None:
    """While typing in a line, stop after the statement's period (at the cursor's nesting)."""
    if ctx.mode != "line":
        return text
    scanner = Scanner(ctx.scan)
    depth = len(ctx.scan.stack)
    for index, ch in enumerate(text):
        events = scanner.feed(ch)
        if any(e.kind == "period" for e in events) and len(scanner.state.stack) <= depth:
            following = text[index + 1 : index + 2]
            if not following.isdigit():  # `3.14` is a number, not a statement end
                return text[: index + 1]
    return text


def cut_repeated_suffix(text: str, ctx: CursorContext) -> str | None:
    """Never repeat what already follows the cursor."""
    rest_of_line = ctx.line_suffix.strip()
    if rest_of_line:
        # The earliest point from which the suggestion only retypes the rest of the line.
        for index in range(len(text)):
            tail = text[index:].strip()
            if tail and rest_of_line.startswith(tail) and _at_boundary(text, index):
                return text[:index].rstrip()
    following = [line.strip() for line in ctx.suffix.split("\n")[1:] if line.strip()]
    if following and "\n" in text:
        lines = text.split("\n")
        kept: list[str] = []
        for line in lines:
            if kept and line.strip() and line.strip() == following[0]:
                break
            kept.append(line)
        return "\n".join(kept)
    return text


def _at_boundary(text: str, index: int) -> bool:
    if index == 0:
        return True
    before, at = text[index - 1], text[index]
    return not (before.isalnum() and at.isalnum())


def keep_balanced(text: str, ctx: CursorContext) -> str | None:
    """Trim to the longest prefix that opens no bracket, string or comment it does not close;
    it may close what the cursor's line opened and the rest of the line does not close (`[ ^
    self` typed without the editor adding `]`)."""
    ends = balanced_ends(text, ctx.scan, unclosed_on_line(ctx))
    return text[: ends[-1]]


def unclosed_on_line(ctx: CursorContext) -> int:
    """How many of the brackets open at the cursor were opened on its line before it and are
    not closed after it on the line."""
    line_start = ctx.request.offset - len(ctx.line_prefix)
    opened = sum(1 for _, at in ctx.scan.stack if at >= line_start)
    scanner = Scanner(ctx.scan)
    lowest = len(ctx.scan.stack)
    for event in scanner.feed(ctx.line_suffix):
        if event.kind == "bad-close":
            break
        lowest = min(lowest, len(scanner.state.stack))
    closed_after = len(ctx.scan.stack) - lowest
    return max(0, opened - closed_after)


def broken_at_cursor(ctx: CursorContext) -> bool:
    """The method as it is has a syntax error where the cursor is: something is missing."""
    method = ctx.method
    if method is None:
        return False
    near_start, near_end = _near_cursor(method.before, method.after)
    errors = method_errors(method.before + method.after)
    return any(start <= near_end and end >= near_start for start, end in errors)


def trim_whitespace(text: str, ctx: CursorContext) -> str | None:
    return text.rstrip()


def longest_parsing_prefix(text: str, ctx: CursorContext) -> str | None:
    """Trim to the longest prefix with which the method parses; drop if none does.

    A method that is broken elsewhere (not on the cursor's line) cannot judge a suggestion;
    it is then kept as the other filters left it.
    """
    method = ctx.method
    if method is None or not text:
        return text
    baseline = method.before + method.after
    near_start, near_end = _near_cursor(method.before, method.after)
    if any(end < near_start or start > near_end for start, end in method_errors(baseline)):
        return text
    for end in reversed(_cut_points(text)):
        candidate = text[:end].rstrip()
        if candidate.strip() and not method_errors(method.before + candidate + method.after):
            return candidate
        if end == len(text) and not candidate.endswith((".", "^")):
            # A whole statement the model ended without its period, before the next one.
            ended = candidate + "."
            if candidate.strip() and not method_errors(method.before + ended + method.after):
                return ended
    return _closed_on_the_line(text, ctx)


def _closed_on_the_line(text: str, ctx: CursorContext) -> str | None:
    """A rest of a line the model ended at the line's end without closing what the line
    opened before the cursor (`ifNil: [ ` then ` instance := self`): the longest prefix that
    parses with those closers after it, which the suggestion then includes. None if none does
    (and outside line mode, where the model writes the closers on later lines itself)."""
    if ctx.mode != "line" or not unclosed_on_line(ctx):
        return None
    return closed_brackets(text, ctx)


def closed_brackets(text: str, ctx: CursorContext) -> str | None:
    """The longest prefix of `text` (token ends) that parses once the brackets it leaves open
    are closed after it: those the cursor's line opened before the cursor and those the text
    opened itself (`ifFalse: [` ended at the line's end: `ifFalse: [ ]`; `(1 - (t *`:
    `(1 - (t))`). Never inside a string or comment; None if no prefix parses."""
    method = ctx.method
    if method is None:
        return None
    lowest = len(ctx.scan.stack) - unclosed_on_line(ctx)
    for end in reversed(_cut_points(text)):
        candidate = text[:end].rstrip()
        state, events = scan(candidate, ctx.scan)
        if not candidate.strip() or not state.settled or any(
            e.kind == "bad-close" for e in events
        ) or len(state.stack) < lowest:
            continue
        closed = candidate
        for bracket, _ in reversed(state.stack[lowest:]):
            closer = OPENERS[bracket]
            closed += closer if bracket == "(" else f" {closer}"
        if not method_errors(method.before + closed + method.after):
            return closed
    return None


def _near_cursor(before: str, after: str) -> tuple[int, int]:
    """The text a gap at the cursor breaks (offsets into before + after): from the line break
    before the cursor's line to the end of the next code line (a statement missing at the
    cursor shows as an error that runs up to its line, or on the line after it)."""
    start = max(0, before.rfind("\n"))
    line_end = after.find("\n")
    if line_end < 0:
        return start, len(before) + len(after)
    rest = after[line_end + 1 :]
    code = len(rest) - len(rest.lstrip())
    next_end = rest.find("\n", code)
    end = line_end + 1 + (next_end if next_end >= 0 else len(rest))
    return start, len(before) + end


def _cut_points(text: str, limit: int = 48) -> list[int]:
    """Ends of tokens in `text` (ascending), at most `limit` of them, always including the end."""
    points = [
        i + 1
        for i, ch in enumerate(text)
        if not ch.isspace() and (i + 1 == len(text) or not _same_token(ch, text[i + 1]))
    ]
    if not points or points[-1] != len(text):
        points.append(len(text))
    return points[-limit:]


def _same_token(a: str, b: str) -> bool:
    word = a.isalnum() or a in "_:"
    return word and (b.isalnum() or b in "_:")


def drop_empty(text: str, ctx: CursorContext) -> str | None:
    return text if text.strip() else None


FILTERS: tuple[Filter, ...] = (
    drop_outside_methods,
    drop_typed_whitespace,
    drop_retyped_line_start,
    cut_special_tokens,
    cut_at_bang,
    cut_at_line_end,
    cut_at_method_end,
    cut_at_statement_end,
    cut_repeated_suffix,
    keep_balanced,
    trim_whitespace,
    longest_parsing_prefix,
    drop_empty,
)


def dropped_for_syntax(text: str, ctx: CursorContext) -> bool:
    """Whether the filters drop every piece of `text` only because none of it fits the code
    around the cursor (its brackets, the parse), not because it lies outside a method or
    repeats the text after the cursor (where nothing is the right answer)."""
    syntax = FILTERS.index(keep_balanced)
    before_syntax = apply_filters(text, ctx, FILTERS[:syntax])
    if not (before_syntax or "").strip():
        return False
    # The filters are sequential: the rest of them run on what the first ones left.
    return not (apply_filters(before_syntax or "", ctx, FILTERS[syntax:]) or "").strip()


def came_to_nothing(text: str, ctx: CursorContext) -> bool:
    """Whether nothing of `text` is left before it is judged against the code around the
    cursor: whitespace alone, a stop at once, only a closer of the method. (An answer that
    only repeats the text after the cursor is something: there, nothing may be right.)"""
    judged = FILTERS.index(cut_repeated_suffix)
    return not (apply_filters(text, ctx, FILTERS[:judged]) or "").strip()


def closed_answer(text: str, ctx: CursorContext) -> str | None:
    """The last resort for an answer the filters drop only for its syntax: what is left of it
    before it is judged against the code around the cursor, with the brackets it leaves open
    closed after it (`closed_brackets`), if that parses; else None."""
    if not dropped_for_syntax(text, ctx):
        return None
    syntax = FILTERS.index(keep_balanced)
    return closed_brackets((apply_filters(text, ctx, FILTERS[:syntax]) or "").rstrip(), ctx)


def apply_filters(
    text: str, ctx: CursorContext, filters: Sequence[Filter] = FILTERS
) -> str | None:
    """Run the filters in order; None as soon as one drops the suggestion."""
    current: str | None = text
    for step in filters:
        if current is None:
            return None
        current = step(current, ctx)
    return current
