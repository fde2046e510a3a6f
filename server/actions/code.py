"""Implement design, Write SUnit tests, Add method comment: the coder writes Smalltalk, which
becomes an edit only if the file still parses in its format. Generated text is trimmed to
the longest prefix that parses as a method; a try that gives nothing usable is repeated
with sampling; after the last try the action fails with a message and changes nothing."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable
from pathlib import Path

from server.actions.documents import plan, requirement_of
from server.actions.formats import (
    CodeEdit,
    EditRejected,
    NewMethod,
    add_methods,
    check_edit,
    comment_insertion,
    new_class,
    selector_of,
)
from server.actions.prompts import (
    bare_methods,
    class_header,
    comment_messages,
    comment_prompt,
    implement_prompt,
    tests_prompt,
)
from server.actions.targets import CODE_FORMATS, method_name
from server.actions.thinking import UnfinishedThinking, answer_only
from server.actions.types import ActionError, ActionInput, EditResult, Run
from server.project_model import ProjectModel
from smalltalk_grammar import parse
from smalltalk_grammar.model import MethodDef, Side

IMPLEMENT_CATEGORY = "as yet unclassified"
MAX_NEW_METHODS = 4
MAX_TESTED_METHODS = 2
_TEMPS = re.compile(r"^\s*\|[^|]*\|", re.M)
_COMMENTS = re.compile(r'"[^"]*"')
_PRAGMAS = re.compile(r"<[A-Za-z][^>]*>")
_BINARY_NAMES = {"=": "Equals", "<": "LessThan", ">": "GreaterThan", "+": "Plus", "-": "Minus",
                 "*": "Times", "/": "Divide", ",": "Comma", "<=": "LessOrEqual",
                 ">=": "GreaterOrEqual", "==": "Identical", "~=": "NotEqual"}


# --- generated text -> methods that parse ---------------------------------------------------


def _outside_literals(text: str) -> list[bool]:
    """For each character: True when it is code (not inside a comment, string or `$x`)."""
    flags = [True] * len(text)
    i = 0
    while i < len(text):
        c = text[i]
        if c == "$":
            flags[i : i + 2] = [False] * len(flags[i : i + 2])
            i += 2
            continue
        if c in "\"'":
            close = text.find(c, i + 1)
            while c == "'" and close >= 0 and text[close + 1 : close + 2] == "'":
                close = text.find(c, close + 2)
            end = len(text) if close < 0 else close + 1
            flags[i:end] = [False] * (end - i)
            i = end
            continue
        i += 1
    return flags


def split_methods(text: str) -> list[str]:
    """Bare methods in generated text: each starts with a line at column 0 (outside comments
    and strings, which may run over several lines)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    code = _outside_literals(text)
    starts = [0]
    for i, c in enumerate(text[:-1]):
        nxt = text[i + 1]
        if c == "\n" and code[i] and not nxt.isspace() and text[starts[-1] : i].strip():
            starts.append(i + 1)
    starts.append(len(text))
    chunks = [text[a:b].strip("\n") for a, b in zip(starts, starts[1:], strict=False)]
    return [chunk for chunk in chunks if chunk.strip()]


def _statement_prefixes(source: str) -> list[str]:
    """The pattern with its first k statements, longest first (`.` ends a statement at
    bracket depth 0, outside literals)."""
    code = _outside_literals(source)
    depth = 0
    ends = []
    for i, c in enumerate(source):
        if not code[i]:
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c == "." and depth == 0:
            ends.append(i)
    return [source[:end].rstrip() for end in reversed(ends)]


def _has_statement(source: str) -> bool:
    body = source.split("\n", 1)[1] if "\n" in source else ""
    body = _PRAGMAS.sub("", _TEMPS.sub("", _COMMENTS.sub("", body)))
    return bool(body.strip(" \t\r\n."))


def method_that_parses(source: str) -> str | None:
    """The longest prefix of a generated method (whole lines) that parses as a method with
    at least one statement, or None."""
    lines = source.rstrip().split("\n")
    # Terminators the model may copy from the files it saw.
    while lines and lines[-1].strip() in ("!", "! !", "]", ""):
        lines.pop()
    candidates = []
    for n in range(len(lines), 1, -1):
        candidate = "\n".join(lines[:n]).rstrip()
        candidates.append(re.sub(r"!\s*!?\s*$", "", candidate).rstrip())
    if candidates:
        # Garbage in the middle of a line-wise prefix: try whole statements too.
        candidates += _statement_prefixes(candidates[0])
    return next((c for c in candidates if _parses(c)), None)


_GOOD_PATTERN = re.compile(
    r"[a-z]\w*|(?:[a-z]\w*:[ \t]*[a-z_]\w*[ \t]*)+|[-+*/\\~<>=@%|&?,]{1,3}[ \t]*[a-z_]\w*"
)


def _parses(source: str) -> bool:
    """A method in the conventions of Smalltalk code (lower-case selectors and arguments),
    which text in another language seldom meets even where the lenient parser accepts it."""
    pattern = source.split("\n", 1)[0].strip()
    selector = selector_of(source)
    if not selector or not _GOOD_PATTERN.fullmatch(pattern) or not _has_statement(source):
        return False
    found = parse(source)
    if found.format != "method" or len(found.methods) != 1:
        return False
    if any(d.severity == "error" for d in found.diagnostics):
        return False
    method = found.methods[0]
    if any(not send or send[0].isupper() for send in method.sends):
        return False
    return method.selector == selector


def good_methods(text: str, taken: Iterable[str] = ()) -> list[str]:
    """Methods of generated text that parse, without selectors already taken."""
    seen = set(taken)
    out = []
    for chunk in split_methods(text):
        method = method_that_parses(chunk)
        if method is not None and selector_of(method) not in seen:
            seen.add(selector_of(method))
            out.append(method)
    return out


def _coder_text(run: Run, prompt: str, max_tokens: int, attempt: int,
                stop: tuple[str, ...] = ()) -> str:
    temperature = 0.0 if attempt == 0 else 0.7
    result = run.coder(prompt, max_tokens, temperature=temperature, seed=attempt, stop=stop)
    try:
        # A coder never thinks aloud, but nothing inside <think> may reach an edit.
        return answer_only(result.generation.text)
    except UnfinishedThinking:
        return ""


def _failed(what: str, attempts: int, last: str) -> ActionError:
    return ActionError(
        f"the coder's {what} did not parse after {attempts} tries ({last}); nothing was changed"
    )


def _need_code_format(inp: ActionInput) -> None:
    if inp.site.format not in CODE_FORMATS:
        raise ActionError(
            f"code can only be added to Tonel, chunk or GNU bracket files, not {inp.site.format}"
        )


def _methods_of(project: ProjectModel, inp: ActionInput, class_name: str,
                side: Side) -> list[MethodDef]:
    here = [m for m in inp.source.methods if m.class_name == class_name and m.side == side]
    known = {m.selector for m in here}
    return here + [m for _, m in project.methods_of(class_name, side) if m.selector not in known]


# --- Implement design -----------------------------------------------------------------------


_PLAN_CODE = re.compile(r"`([^`\n]+)`|#([A-Za-z_][\w:]*)")
_KEYWORD_PATTERN = re.compile(r"\b([a-z]\w*:\s*[a-z]\w*(?:\s+[a-z]\w*:\s*[a-z]\w*)*)")
_CAMEL = re.compile(r"\b([a-z]+[A-Z]\w*)\b")
_PATTERN = re.compile(r"^[a-z]\w*(?::\s*[a-z]\w*(?:\s+[a-z]\w*:\s*[a-z]\w*)*)?$")


def _as_pattern(phrase: str) -> str | None:
    phrase = " ".join(phrase.replace("#", "").split())
    if re.fullmatch(r"[a-z]\w*(?::[a-z]\w*)*:", phrase):
        # A bare keyword selector (`at:put:`): give its arguments names.
        parts = phrase.split(":")[:-1]
        return " ".join(f"{part}: {'an' if part[:1] in 'aeiou' else 'a'}{part[:1].upper()}"
                        f"{part[1:]}" for part in parts)
    return phrase if _PATTERN.match(phrase) else None


def plan_patterns(plan: str, taken: set[str], limit: int = 2) -> list[str]:
    """Method patterns the plan names: code in backquotes, symbols, `word: arg` phrases and
    camelCase words, in order, without selectors the class already has."""
    found: list[str] = []
    for match in _PLAN_CODE.finditer(plan):
        pattern = _as_pattern(match.group(1) or match.group(2) or "")
        if pattern:
            found.append(pattern)
    prose = _PLAN_CODE.sub(" ", plan)
    found += [m.group(1) for m in _KEYWORD_PATTERN.finditer(prose)]
    # `aTerritory`, `anAmount`: argument names, not selectors.
    found += [m.group(1) for m in _CAMEL.finditer(prose) if not re.match(r"an?[A-Z]", m.group(1))]
    out: list[str] = []
    seen = set(taken)
    for pattern in found:
        selector = selector_of(pattern)
        # `rightsFor` in prose names `rightsFor:` (already there), not a new unary method.
        if selector and selector not in seen and not any(
            t.startswith(selector + ":") for t in seen
        ):
            seen.add(selector)
            out.append(pattern)
    return out[:limit]


def _seeded_method(run: Run, inp: ActionInput, prompts: list[str], pattern: str) -> str | None:
    """The coder writes the body of `pattern`; the first try that parses, or None. Tries go
    through `prompts` greedily (the later ones plainer), then sample the first."""
    seed = f"{pattern}\n\t"
    for attempt in range(inp.options.attempts):
        prompt = prompts[attempt] if attempt < len(prompts) else prompts[0]
        sampled = attempt if attempt >= len(prompts) else 0
        text = seed + _coder_text(run, prompt + seed, inp.options.code_max_tokens, sampled)
        found = method_that_parses(split_methods(text)[0])
        if found is not None and selector_of(found) == selector_of(pattern):
            return found
    return None


def implement(inp: ActionInput, run: Run) -> EditResult:
    site = inp.site
    _need_code_format(inp)
    class_name = site.class_name
    if not class_name:
        raise ActionError("there is no class here to add the implementation to")
    requirement = requirement_of(site)
    started = time.monotonic()
    the_plan = plan(inp, run, requirement, class_name)
    side: Side = site.method.side if site.method is not None else "instance"
    existing = _methods_of(inp.project, inp, class_name, side)
    taken = {m.selector for m in existing}
    header = class_header(inp.project, class_name)
    examples = bare_methods(existing[:3])
    # With the plan first; then the requirement alone, should the plan lead the coder astray.
    prompts = [
        implement_prompt(header, examples, requirement, the_plan),
        implement_prompt(header, examples, requirement, None),
    ]
    # Methods the user named come first; else those of the plan.
    patterns = plan_patterns(requirement, taken) or plan_patterns(the_plan, taken)
    sources: list[str] = []
    last = "no complete method in the answer"
    for pattern in patterns:
        found = _seeded_method(run, inp, prompts, pattern)
        if found is not None:
            sources.append(found)
        else:
            last = f"the body of #{selector_of(pattern)} did not parse"
    attempt = 0
    while not sources and attempt < inp.options.attempts:
        # No method named, or none of them written: the coder names them itself.
        text = _coder_text(run, prompts[0], inp.options.code_max_tokens, attempt)
        sources = good_methods(text, taken)[:MAX_NEW_METHODS]
        attempt += 1
    if not sources:
        raise _failed("implementation", inp.options.attempts, last)
    methods = [NewMethod(class_name, side, IMPLEMENT_CATEGORY, s) for s in sources]
    try:
        edit = add_methods(inp.source, site.path, site.text, methods)
        check_edit(edit, {site.path: site.text})
    except EditRejected as err:
        raise ActionError(
            f"the implementation would not parse ({err}); nothing was changed"
        ) from err
    names = ", ".join(f"#{m.selector}" for m in methods)
    return EditResult(
        "implement", f"Implement design in {class_name}", edit,
        f"added {names} to {class_name}", run.tokens, time.monotonic() - started,
    )


# --- Write SUnit tests ----------------------------------------------------------------------


def sunit_selector(selector: str) -> str:
    if selector in _BINARY_NAMES or not selector[:1].isalpha():
        return "test" + _BINARY_NAMES.get(selector, "Operator")
    parts = [p for p in selector.split(":") if p]
    return "test" + "".join(p[:1].upper() + p[1:] for p in parts)


def sunit_class_name(project: ProjectModel, class_name: str, folder: Path | None) -> str:
    for suffix in ("Test", "GeneratedTest", *(f"GeneratedTest{i}" for i in range(2, 50))):
        name = class_name + suffix
        on_disk = folder is not None and (folder / f"{name}.class.st").exists()
        if project.class_named(name) is None and not on_disk:
            return name
    raise ActionError(f"no free name for a test class of {class_name}")


def sunit_category(project: ProjectModel, class_name: str) -> str:
    existing = project.class_named(class_name + "Test")
    if existing is not None and existing.category:
        return existing.category
    cls = project.class_named(class_name)
    category = cls.category if cls is not None and cls.category else ""
    if not category:
        return "Tests"
    return re.sub(r"-Core$", "", category) + "-Tests"


def _tonel_folder(project: ProjectModel, category: str, path: str) -> Path:
    """The Tonel package folder of `category` nearest to `path` (a workspace may hold other
    copies or other formats of the project), else the file's own folder."""
    folders = {
        Path(cls_path).parent
        for name in project.class_names()
        for cls_path, cls in project.class_definitions(name)
        if cls.category == category and cls_path.endswith(".class.st")
    }
    folders = {f for f in folders if (f / "package.st").exists()}
    if not folders:
        return Path(path).parent

    def shared(folder: Path) -> int:
        return len(os.path.commonpath([str(folder), path]))

    return max(sorted(folders), key=shared)


def _tested(inp: ActionInput, class_name: str) -> list[MethodDef]:
    site = inp.site
    if site.method is not None:
        return [site.method]
    methods = _methods_of(inp.project, inp, class_name, "instance")
    public = [m for m in methods if m.category != "private" and not m.selector.startswith("test")]
    # Methods that do something (more than answer a variable) make better tests.
    public.sort(key=lambda m: -len(m.sends))
    return public[:MAX_TESTED_METHODS]


def write_tests(inp: ActionInput, run: Run) -> EditResult:
    site = inp.site
    _need_code_format(inp)
    class_name = site.method.class_name if site.method is not None else site.class_name
    if not class_name:
        raise ActionError("place the cursor in a method or class definition to test")
    tested = _tested(inp, class_name)
    if not tested:
        raise ActionError(f"{class_name} has no methods to test")
    started = time.monotonic()
    category = sunit_category(inp.project, class_name)
    folder = _tonel_folder(inp.project, category, site.path) if site.format == "tonel" else None
    name = sunit_class_name(inp.project, class_name, folder)
    header = class_header(inp.project, class_name)
    example = _example_test(inp.project)
    tests: list[NewMethod] = []
    last = "no test method in the answer"
    for method in tested:
        selector = _unique(sunit_selector(method.selector), {t.selector for t in tests})
        prompts = [
            tests_prompt(header, method.source.strip(), example, name),
            tests_prompt(header, method.source.strip(), "", name),
        ]
        found = _seeded_method(run, inp, prompts, selector)
        if found is not None:
            tests.append(NewMethod(name, "instance", "tests", found))
        else:
            last = f"the test for #{method.selector} did not parse"
    if not tests:
        raise _failed("tests", inp.options.attempts, last)
    comment = f"I test {class_name}. Written by smalltalk-lsp; review before trusting."
    try:
        edit = new_class(
            inp.source, site.path, site.text, name, "TestCase", category, comment, tests, folder
        )
        check_edit(edit, {site.path: site.text})
    except EditRejected as err:
        raise ActionError(f"the test class would not parse ({err}); nothing was changed") from err
    names = ", ".join(f"#{t.selector}" for t in tests)
    return EditResult(
        "tests", f"Write SUnit tests for {class_name}", edit, f"added {name} with {names}",
        run.tokens, time.monotonic() - started,
    )


def _unique(selector: str, taken: set[str]) -> str:
    candidate, n = selector, 2
    while candidate in taken:
        candidate, n = f"{selector}{n}", n + 1
    return candidate


def _example_test(project: ProjectModel) -> str:
    """One existing test method of the project, so the coder sees the house style."""
    for name in project.class_names():
        cls = project.class_named(name)
        if cls is None or cls.superclass != "TestCase":
            continue
        for _, method in project.methods_of(name, "instance"):
            if method.selector.startswith("test") and len(method.source) < 800:
                return method.source.strip()
    return ""


# --- Add method comment ---------------------------------------------------------------------


def clean_comment(text: str) -> str | None:
    text = text.split('"', 1)[0]
    text = " ".join(text.split())
    if len(text) > 200:
        cut = text.rfind(". ", 0, 200)
        text = text[: cut + 1] if cut > 40 else text[:200].rsplit(" ", 1)[0]
    if len(re.findall(r"[A-Za-z]{2,}", text)) < 2:
        return None
    return text


def _first_sentence(text: str) -> str:
    text = " ".join(text.replace("`", "").split())
    match = re.match(r"(.+?[.!?])(\s|$)", text)
    return match.group(1) if match else text


def add_comment(inp: ActionInput, run: Run) -> EditResult:
    site = inp.site
    method = site.method
    if method is None:
        raise ActionError("place the cursor in a method to comment it")
    if method.comment:
        raise ActionError(f"{method_name(method)} already has a comment")
    started = time.monotonic()
    pattern = method.source.strip().split("\n", 1)[0].strip()
    same_class = _methods_of(inp.project, inp, method.class_name, method.side)
    examples = [m for m in same_class if m.comment][:4]
    if len(examples) < 2:
        others = [m for p in inp.project.paths()[:50] for m in _file_methods(inp.project, p)]
        examples += [m for m in others if m.comment and m not in examples][: 4 - len(examples)]
    comment = None
    for attempt in range(inp.options.attempts):
        if run.models.configured("coder"):
            raw = _coder_text(
                run, comment_prompt(examples, pattern), inp.options.comment_max_tokens, attempt,
                stop=('"',),
            )
        else:
            result = run.reasoner(
                comment_messages(method.source), inp.options.comment_max_tokens * 2,
                inp.options.temperature, seed=attempt,
            )
            try:
                raw = _first_sentence(answer_only(result.generation.text))
            except UnfinishedThinking:
                raw = ""
        comment = clean_comment(raw)
        if comment:
            break
    if not comment:
        raise ActionError(
            f"the model wrote no usable comment after {inp.options.attempts} tries; "
            "nothing was changed"
        )
    change = comment_insertion(site.path, site.text, method, comment, site.format)
    edit = CodeEdit(changes=[change], expected=[(method.class_name, method.side, method.selector)])
    try:
        check_edit(edit, {site.path: site.text})
    except EditRejected as err:
        raise ActionError(f"the comment would break the file ({err}); nothing was changed") from err
    return EditResult(
        "comment", f"Add method comment to {method_name(method)}", edit,
        f'commented {method_name(method)}: "{comment}"', run.tokens, time.monotonic() - started,
    )


def _file_methods(project: ProjectModel, path: str) -> list[MethodDef]:
    source = project.file(path)
    return list(source.methods) if source is not None else []
