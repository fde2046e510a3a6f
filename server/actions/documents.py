"""Explain and Design: the reasoner writes Markdown, saved as a note the editor opens. The
answer comes first and the model's `<think>` reasoning is folded below it."""

from __future__ import annotations

import hashlib
import re
import time

from server.actions.notes import note_path, read_note, write_note
from server.actions.prompts import design_messages, explain_messages, plan_messages
from server.actions.targets import Site, looks_like_smalltalk, method_name
from server.actions.thinking import answer_only, document_markdown, split_thinking
from server.actions.types import ActionError, ActionInput, NoteResult, Run
from server.class_render import render_class
from server.project_model import ProjectModel
from smalltalk_grammar.text import position_at


def _lines(site: Site) -> str:
    if site.selection:
        start, end = site.start, site.end
    elif site.method is not None:
        start, end = site.method.start_offset, site.method.end_offset
    elif site.cls is not None:
        return f"line {site.cls.range.start.line + 1}"
    else:
        return ""
    first = position_at(site.text, start).line + 1
    last = position_at(site.text, end).line + 1
    return f"line {first}" if first == last else f"lines {first}-{last}"


def explained_code(site: Site, project: ProjectModel) -> tuple[str, str]:
    """(what it is, the code) for an explanation; ActionError for a selection of prose."""
    if site.code_in_method and site.method is not None:
        return "selected part of a method (the whole method follows it)", (
            f"{site.selection}\n\n\"The whole method, {method_name(site.method)}:\"\n"
            f"{site.method.source.strip()}"
        )
    if site.selection:
        if not looks_like_smalltalk(site.selection):
            raise ActionError(
                "the selection is not Smalltalk code; select a method, statements or an "
                "expression (Design takes a description in words)"
            )
        return "code", site.selection
    if site.method is not None:
        return "method", f'"{method_name(site.method)}"\n{site.method.source.strip()}'
    if site.cls is not None:
        cls = project.class_named(site.cls.name) or site.cls
        selectors = sorted({m.selector for _, m in project.methods_of(cls.name, "instance")})
        listing = " ".join(f"#{s}" for s in selectors[:40])
        code = render_class(cls, "pharo") + (f'\n\n"Its methods: {listing}"' if listing else "")
        return "class", code
    raise ActionError("place the cursor in a method or a class definition, or select code")


def requirement_of(site: Site) -> str:
    if site.code_in_method and site.method is not None:
        return (
            f"Improve the design of this part of {method_name(site.method)}:\n\n"
            f"{site.selection}\n\nThe whole method:\n\n{site.method.source.strip()}"
        )
    text = site.selection or site.comment
    if not text.strip():
        raise ActionError("select a description of what is wanted, or put the cursor in a comment")
    return text.strip()


def _header(run: Run, site: Site, seconds: float, role_name: str | None) -> str:
    where = site.path.replace("\\", "/").rsplit("/", 1)[-1]
    lines = _lines(site)
    adapters = run.adapter_labels.get("reasoner")
    if adapters:
        role_name = f"{role_name} + {adapters}" if role_name else adapters
    model = f" ({role_name})" if role_name else ""
    return (
        f"_Written by the reasoning model{model} in {seconds:.1f} s, {run.tokens} tokens, "
        f"about `{where}`{', ' + lines if lines else ''}._"
    )


def explain(inp: ActionInput, run: Run) -> NoteResult:
    site = inp.site
    what, code = explained_code(site, inp.project)
    started = time.monotonic()
    result = run.reasoner(
        explain_messages(what, code, inp.context), inp.options.max_tokens, inp.options.temperature
    )
    seconds = time.monotonic() - started
    title = f"Explanation: {site.subject}"
    header = _header(run, site, seconds, run.models.model_name("reasoner"))
    markdown = document_markdown(title, split_thinking(result.generation.text), header)
    path = write_note(inp.root, "explain", site.subject, code, markdown)
    return NoteResult("explain", title, path, markdown, run.tokens, seconds, run.pauses)


def _design_subject(requirement: str) -> str:
    words = re.findall(r"[A-Za-z0-9]+", requirement)
    return " ".join(words[:6]) or "design"


def design(inp: ActionInput, run: Run) -> NoteResult:
    site = inp.site
    requirement = requirement_of(site)
    started = time.monotonic()
    result = run.reasoner(
        design_messages(requirement, inp.context), inp.options.max_tokens, inp.options.temperature
    )
    seconds = time.monotonic() - started
    subject = _design_subject(requirement)
    title = f"Design: {subject}"
    header = _header(run, site, seconds, run.models.model_name("reasoner"))
    quoted = "\n".join("> " + line for line in requirement.splitlines())
    markdown = document_markdown(
        title, split_thinking(result.generation.text), f"{header}\n\n{quoted}"
    )
    path = write_note(inp.root, "design", subject, _design_key(requirement), markdown)
    return NoteResult("design", title, path, markdown, run.tokens, seconds, run.pauses)


def _design_key(requirement: str) -> str:
    return " ".join(requirement.split())


def existing_design(inp: ActionInput, requirement: str) -> str | None:
    """The answer of the Design note already written for this requirement, if any."""
    path = note_path(inp.root, "design", _design_subject(requirement), _design_key(requirement))
    text = read_note(path)
    if not text:
        return None
    body = text.split("<details>", 1)[0]
    kept = [
        line for line in body.splitlines()
        if not line.startswith(("# ", "_Written by", "> "))
    ]
    answer = "\n".join(kept).strip()
    return answer or None


def plan(inp: ActionInput, run: Run, requirement: str, class_name: str) -> str:
    """The reasoner's plan for the coder: a Design note's answer when there is one, else a
    fresh plan. Its reasoning never reaches the coder (nor, so, the edit)."""
    found = existing_design(inp, requirement)
    if found:
        return found
    result = run.reasoner(
        plan_messages(requirement, class_name, inp.context),
        inp.options.max_tokens,
        inp.options.temperature,
    )
    try:
        answer = answer_only(result.generation.text)
    except ValueError as err:
        raise ActionError(f"the reasoning model gave no plan: {err}; nothing was changed") from err
    if not answer.strip():
        raise ActionError("the reasoning model gave an empty plan; nothing was changed")
    return answer


def digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
