"""Reasoning models write `<think>...</think>` before their answer. Split the two: documents
show the answer first and the reasoning folded below it; edits never see the reasoning.

The opening tag may be missing (chat templates such as DeepSeek-R1's put `<think>` into the
prompt itself) and the closing one too (the model ran out of tokens while still thinking).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_OPEN = re.compile(r"<think>", re.IGNORECASE)
_CLOSE = re.compile(r"</think>", re.IGNORECASE)


@dataclass(frozen=True)
class Thought:
    answer: str
    reasoning: str
    # False when the text ends inside a <think> section: there is no answer, only reasoning.
    finished: bool = True


def split_thinking(text: str) -> Thought:
    """Separate every `<think>` section from the answer around them."""
    answer: list[str] = []
    reasoning: list[str] = []
    rest = text
    close = _CLOSE.search(rest)
    open_ = _OPEN.search(rest)
    if close is not None and (open_ is None or close.start() < open_.start()):
        # `</think>` with no `<think>` before it: everything up to it was reasoning.
        reasoning.append(rest[: close.start()])
        rest = rest[close.end() :]
    while True:
        open_ = _OPEN.search(rest)
        if open_ is None:
            answer.append(rest)
            break
        answer.append(rest[: open_.start()])
        rest = rest[open_.end() :]
        close = _CLOSE.search(rest)
        if close is None:
            reasoning.append(rest)
            return _thought(answer, reasoning, finished=False)
        reasoning.append(rest[: close.start()])
        rest = rest[close.end() :]
    return _thought(answer, reasoning, finished=True)


def _thought(answer: list[str], reasoning: list[str], finished: bool) -> Thought:
    parts = [p.strip() for p in reasoning if p.strip()]
    return Thought("".join(answer).strip(), "\n\n".join(parts), finished)


class UnfinishedThinking(ValueError):
    """The model's text ends inside `<think>`: it has no answer to put into code."""


def answer_only(text: str) -> str:
    """The answer without any reasoning, for edits; UnfinishedThinking when there is none."""
    thought = split_thinking(text)
    if not thought.finished and not thought.answer:
        raise UnfinishedThinking(
            "the model's answer ended inside <think> (no closing </think>): it produced "
            "reasoning but no answer"
        )
    return thought.answer


def document_markdown(title: str, thought: Thought, header: str = "") -> str:
    """A Markdown document: the answer first, the reasoning folded below it."""
    lines = [f"# {title}", ""]
    if header:
        lines += [header.rstrip(), ""]
    if thought.answer:
        lines += [thought.answer, ""]
    elif not thought.finished:
        lines += [
            "_The model ran out of tokens while still reasoning (no closing `</think>`); "
            "its unfinished reasoning is below._",
            "",
        ]
    else:
        lines += ["_The model gave no answer._", ""]
    if thought.reasoning:
        lines += [
            "<details>",
            "<summary>Reasoning</summary>",
            "",
            thought.reasoning,
            "",
            "</details>",
            "",
        ]
    return "\n".join(lines)
