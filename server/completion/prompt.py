"""Prompt stage: lay out project context, file context and the text around the cursor.

The front of the prompt (project context, then the file up to the cursor) stays the same
between keystrokes, so llama.cpp reuses its KV cache for all of it. Models with FIM tokens get
a fill-in-the-middle prompt built from their own token texts (create_completion(suffix=) does
not do FIM in llama-cpp-python 0.3.36); others get the prefix only.

Models trained on repositories (Qwen2.5-Coder, StarCoder2) get project context in their own
repository format, the layout llama-server's `/infill` builds from its extra context:

    <|repo_name|>project
    <|file_sep|>Other.class.st
    ...methods of that file, as the file writes them (without their category lines)...
    <|file_sep|>Current.class.st
    <|fim_prefix|>...before the cursor<|fim_suffix|>after...<|fim_middle|>

Other models get the context as Smalltalk text in front of the file's own.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import PurePath

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


def file_label(path: str | None) -> str:
    """A file as the prompt names it: its name (`Foo.class.st`, which names the class). The
    package folder is left out: on projects of small files the file headers cost as many
    tokens as the context code (Roassal3: about 15 a header), and it bought no score."""
    if not path:
        return "scratch.st"
    return PurePath(path.replace("\\", "/")).name


def project_label(path: str | None) -> str:
    """The repository name of a prompt: the folder above the file's package folder."""
    parts = PurePath((path or "").replace("\\", "/")).parts
    return parts[-3] if len(parts) >= 3 else "project"


def render_repository(
    ctx: CursorContext, fim: FimTokens, budget_chars: int
) -> tuple[str, str]:
    """Project context as files of the repository, in the model's own tokens, ending with the
    current file's separator; and the current file's own items from outside the window (its
    class definition, say), which go first in the FIM prefix, as the top of the file would.
    Items are grouped by file (by path: two packages' `Object.extension.st` stay two files) in
    the order their first item came; items without a file, or of the current file already
    inside the prompt window, are left out."""
    current = ctx.request.path
    files: dict[str, list[str]] = {}
    used = 0
    for snippet in ctx.snippets:
        code = (snippet.code or snippet.text).strip()
        if not code or not snippet.path or used + len(code) > budget_chars:
            continue
        if snippet.path == current and (code in ctx.prefix or code in ctx.suffix):
            continue
        files.setdefault(snippet.path, []).append(code)
        used += len(code) + 2
    parts = [f"{fim.repo_name}{project_label(current)}\n"]
    for path, codes in files.items():
        if path != current:
            parts.append(f"{fim.file_sep}{file_label(path)}\n" + "\n\n".join(codes) + "\n")
    parts.append(f"{fim.file_sep}{file_label(current)}\n")
    head = "\n\n".join(files[current]) + "\n\n" if current in files else ""
    return "".join(parts), head


def build_prompt(
    ctx: CursorContext,
    fim: FimTokens | None,
    max_tokens_line: int = 48,
    max_tokens_block: int = 128,
    context_chars: int = 1500,
    repository: bool = True,
) -> Prompt:
    before = kept_prefix(ctx, fim is not None)
    if fim is not None and repository and fim.repo_name and fim.file_sep:
        files, head = render_repository(ctx, fim, context_chars)
        front = files + fim.prefix + head + before
        text = f"{front}{fim.suffix}{ctx.suffix}{fim.middle}"
        stable = len(front)
    else:
        # The layout training uses too (prompt_parts, layout).
        front, back = prompt_parts(ctx, context_chars, fim is not None)
        text = layout(fim, front, back)
        stable = len(front) + (len(fim.prefix) if fim else 0)
    line = ctx.mode == "line"
    return Prompt(
        text=text,
        max_tokens=max_tokens_line if line else max_tokens_block,
        mode=ctx.mode,
        stop=("\n",) if line else (),
        stable_chars=stable,
    )
