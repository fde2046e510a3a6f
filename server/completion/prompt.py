"""Prompt stage: lay out project context, file context and the text around the cursor.

The front of the prompt (project context, then the file up to the cursor) stays the same
between keystrokes, so llama.cpp reuses its KV cache for all of it. Models with FIM tokens get
a fill-in-the-middle prompt built from their own token texts (create_completion(suffix=) does
not do FIM in llama-cpp-python 0.3.36); others get the prefix only.
"""

from __future__ import annotations

from collections.abc import Sequence

from server.completion.types import ContextSnippet, CursorContext, Prompt
from server.engine.types import FimTokens


def render_snippets(snippets: Sequence[ContextSnippet], budget_chars: int) -> str:
    """Project context as Smalltalk text, in provider order, within a character budget."""
    parts: list[str] = []
    used = 0
    for snippet in snippets:
        text = snippet.text.strip()
        if not text or used + len(text) > budget_chars:
            continue
        parts.append(text)
        used += len(text) + 2
    return "\n\n".join(parts) + "\n\n" if parts else ""


def kept_prefix(ctx: CursorContext, fim: bool) -> str:
    """The file up to the cursor as the prompt keeps it.

    Spaces or tabs right before the cursor end the prompt badly: tokenizers attach a space to
    the word after it, so a prompt ending in one makes the model pick unlikely tokens (Gemma
    answers `^ ` with `1` but `^` with ` self rights size`). They are left out here and the
    `drop_typed_whitespace` filter takes them off the suggestion's start. In a FIM prompt
    indentation alone on the line stays: without it the middle starts at column 0, where
    Qwen2.5-Coder writes a new method (dropped) instead of the body."""
    indent_only = fim and ctx.line_prefix != "" and not ctx.line_prefix.strip(" \t")
    return ctx.prefix if indent_only else ctx.prefix.rstrip(" \t")


def prompt_parts(ctx: CursorContext, context_chars: int, fim: bool) -> tuple[str, str]:
    """(front, back) of a completion prompt: project context and the file up to the cursor,
    and the file after it. Training builds its examples with this very function."""
    return render_snippets(ctx.snippets, context_chars) + kept_prefix(ctx, fim), ctx.suffix


def layout(fim: FimTokens | None, front: str, back: str) -> str:
    """The prompt text: fill-in-the-middle with the model's own tokens, else the front alone."""
    if fim is None:
        return front
    return f"{fim.prefix}{front}{fim.suffix}{back}{fim.middle}"


def build_prompt(
    ctx: CursorContext,
    fim: FimTokens | None,
    max_tokens_line: int = 48,
    max_tokens_block: int = 128,
    context_chars: int = 1500,
) -> Prompt:
    front, back = prompt_parts(ctx, context_chars, fim is not None)
    line = ctx.mode == "line"
    return Prompt(
        text=layout(fim, front, back),
        max_tokens=max_tokens_line if line else max_tokens_block,
        mode=ctx.mode,
        stop=("\n",) if line else (),
        stable_chars=len(front) + (len(fim.prefix) if fim else 0),
    )
