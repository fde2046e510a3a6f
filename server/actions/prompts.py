"""The prompts: chat messages for the reasoner, plain Smalltalk text for the coder (a base
model that continues code; it sees methods the way a browser shows them)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from server.actions.chat import Message
from server.class_render import render_class
from server.project_model import ProjectModel
from smalltalk_grammar.model import MethodDef

SYSTEM = (
    "You are an experienced Smalltalk programmer. You answer in plain English and Markdown, "
    "briefly and concretely."
)
MAX_CODE_CHARS = 3000
MAX_CONTEXT_CHARS = 2400
MAX_PLAN_CHARS = 1200


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 4].rstrip() + "\n..."


def _with_context(context: str) -> str:
    if not context.strip():
        return ""
    return f"Context from the project:\n\n```smalltalk\n{clip(context, MAX_CONTEXT_CHARS)}\n```\n\n"


def explain_messages(what: str, code: str, context: str) -> list[Message]:
    user = (
        f"{_with_context(context)}Explain what this Smalltalk {what} does and why:\n\n"
        f"```smalltalk\n{clip(code, MAX_CODE_CHARS)}\n```"
    )
    return [Message("system", SYSTEM), Message("user", user)]


def design_messages(requirement: str, context: str) -> list[Message]:
    user = (
        f"{_with_context(context)}Design Smalltalk classes for this requirement:\n\n"
        f"{clip(requirement, MAX_CODE_CHARS)}\n\n"
        "Name each class, its superclass and responsibilities, and the messages it "
        "understands (selector and what it answers)."
    )
    return [Message("system", SYSTEM), Message("user", user)]


def plan_messages(requirement: str, class_name: str, context: str) -> list[Message]:
    user = (
        f"{_with_context(context)}Plan the methods to add to the Smalltalk class {class_name} "
        f"for this requirement:\n\n{clip(requirement, MAX_CODE_CHARS)}\n\n"
        "For each method give its selector and what it does, one line each."
    )
    return [Message("system", SYSTEM), Message("user", user)]


def summary_messages(code: str) -> list[Message]:
    user = (
        "In one short paragraph, say what this Smalltalk method does:\n\n"
        f"```smalltalk\n{clip(code, MAX_CODE_CHARS)}\n```"
    )
    return [Message("system", SYSTEM), Message("user", user)]


def comment_messages(code: str) -> list[Message]:
    user = (
        "Write a one-sentence comment for this Smalltalk method, in the style 'Answer the "
        "...'. Reply with the sentence only.\n\n"
        f"```smalltalk\n{clip(code, MAX_CODE_CHARS)}\n```"
    )
    return [Message("system", SYSTEM), Message("user", user)]


# --- the coder ------------------------------------------------------------------------------


def smalltalk_comment(text: str) -> str:
    return '"' + text.strip().replace('"', "'") + '"'


def class_header(project: ProjectModel, class_name: str) -> str:
    """The class as a Smalltalk comment: name, superclass, variables, comment."""
    cls = project.class_named(class_name)
    if cls is None:
        return smalltalk_comment(f"Methods of {class_name}")
    return render_class(cls, "comment", comment_limit=400)


def bare_methods(methods: Sequence[MethodDef], limit: int = 1600) -> str:
    out: list[str] = []
    used = 0
    for method in methods:
        source = clip(method.source.strip(), 600)
        if used + len(source) > limit:
            break
        out.append(source)
        used += len(source)
    return "\n\n".join(out)


def prose(text: str) -> str:
    """Text without Markdown code blocks: a small reasoner's plan may hold code of another
    language, which a base coder would happily continue."""
    text = re.sub(r"```.*?(```|$)", " ", text, flags=re.S)
    return "\n".join(line.rstrip() for line in text.splitlines() if line.strip())


def implement_prompt(header: str, examples: str, requirement: str, plan: str | None) -> str:
    parts = [header]
    if examples:
        parts.append(examples)
    parts.append(smalltalk_comment("To do: " + clip(requirement, MAX_PLAN_CHARS)))
    if plan and prose(plan):
        parts.append(smalltalk_comment("Plan: " + clip(prose(plan), MAX_PLAN_CHARS)))
    return "\n\n".join(parts) + "\n\n"


def tests_prompt(header: str, under_test: str, example_test: str, test_class: str) -> str:
    parts = [header, under_test]
    intro = f"{test_class}: SUnit tests (a TestCase subclass); each test checks an answer"
    parts.append(smalltalk_comment(intro + " with self assert: ... equals: ..."))
    if example_test:
        parts.append(example_test)
    return "\n\n".join(parts) + "\n\n"


def comment_prompt(examples: Sequence[MethodDef], pattern: str) -> str:
    shots = []
    for method in examples:
        if method.comment:
            first = method.source.strip().split("\n", 1)[0]
            shots.append(f"{first}\n\t{smalltalk_comment(method.comment.splitlines()[0])}")
    shots.append(f'{pattern}\n\t"')
    return "\n\n".join(shots)
