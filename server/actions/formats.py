"""Smalltalk code written into a file in the file's own format (Tonel, chunk, GNU brackets),
and the checks that an edit leaves the file parsing as well as before.

The models write methods the way a browser shows them ("bare": the pattern on the first line,
the body indented below it); this module wraps them for the format and finds where they go.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from server.completion.cursor import pattern_selector
from smalltalk_grammar import parse
from smalltalk_grammar.model import ClassDef, MethodDef, Side, SourceFile
from smalltalk_grammar.text import offset_at


@dataclass(frozen=True)
class NewMethod:
    class_name: str
    side: Side
    category: str
    # Bare method source: pattern on the first line, body below (tab-indented).
    source: str

    @property
    def selector(self) -> str:
        return selector_of(self.source)


@dataclass(frozen=True)
class TextChange:
    path: str
    # Offsets into the current text of `path`.
    start: int
    end: int
    new_text: str


@dataclass(frozen=True)
class NewFile:
    path: str
    text: str


@dataclass
class CodeEdit:
    changes: list[TextChange] = field(default_factory=list)
    files: list[NewFile] = field(default_factory=list)
    # (class, side, selector) of every method the edit must leave in the parse.
    expected: list[tuple[str, Side, str]] = field(default_factory=list)


class EditRejected(ValueError):
    """The edit would not parse in the file's format (the message says why)."""


def selector_of(source: str) -> str:
    """The selector of a bare method's pattern line (read by the one pattern reader,
    server.completion.cursor.pattern_selector); "" when the line is no pattern."""
    return pattern_selector(source.strip().split("\n", 1)[0]) or ""


def split_pattern(source: str) -> tuple[str, str]:
    """(pattern line, body) of a bare method."""
    first, _, body = source.strip("\n").partition("\n")
    return first.strip(), body.rstrip()


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _category_literal(category: str) -> str:
    return "#" + category if re.fullmatch(r"[A-Za-z_]\w*", category) else _quote(category)


def _eol(text: str) -> str:
    return "\r\n" if "\r\n" in text else ("\r" if "\r" in text and "\n" not in text else "\n")


def _with_eol(code: str, eol: str) -> str:
    return code.replace("\n", eol) if eol != "\n" else code


def _end_join(text: str) -> tuple[int, str]:
    """Where to append to a file, and the line break needed before appended code."""
    if not text:
        return 0, ""
    return len(text), "" if text.endswith(("\n", "\r")) else _eol(text)


# --- one method in each format --------------------------------------------------------------


def tonel_method(method: NewMethod) -> str:
    pattern, body = split_pattern(method.source)
    side = " class" if method.side == "class" else ""
    head = f"{{ #category : {_category_literal(method.category)} }}\n"
    return f"{head}{method.class_name}{side} >> {pattern} [\n{body}\n]\n"


def chunk_methods(methods: list[NewMethod], namespace: str | None) -> str:
    out = []
    for method in methods:
        name = f"{namespace}.{method.class_name}" if namespace else method.class_name
        side = " class" if method.side == "class" else ""
        source = method.source.strip("\n").replace("!", "!!")
        out.append(f"!{name}{side} methodsFor: {_quote(method.category)}!\n{source}! !\n")
    return "\n".join(out)


def bracket_method(method: NewMethod, inside_class: bool) -> str:
    pattern, body = split_pattern(method.source)
    side = f"{method.class_name} class >> " if method.side == "class" and inside_class else ""
    category = f"\t<category: {_quote(method.category)}>\n"
    return f"    {side}{pattern} [\n{category}{body}\n    ]\n"


# --- edits ----------------------------------------------------------------------------------


def add_methods(source: SourceFile, path: str, text: str, methods: list[NewMethod]) -> CodeEdit:
    """An edit adding methods to the file, where its format keeps them."""
    eol = _eol(text)
    edit = CodeEdit(expected=[(m.class_name, m.side, m.selector) for m in methods])
    fmt = source.format
    if fmt == "tonel":
        at, lead = _end_join(text)
        code = "".join("\n" + tonel_method(m) for m in methods)
        edit.changes.append(TextChange(path, at, at, lead + _with_eol(code, eol)))
    elif fmt == "chunk":
        at, lead = _end_join(text)
        namespace = _namespace(source, methods[0].class_name) if methods else None
        code = "\n" + chunk_methods(methods, namespace)
        edit.changes.append(TextChange(path, at, at, lead + _with_eol(code, eol)))
    elif fmt == "bracket":
        for class_name in dict.fromkeys(m.class_name for m in methods):
            own = [m for m in methods if m.class_name == class_name]
            cls = _bracket_class(source, class_name)
            if cls is not None:
                close = _closing_bracket(text, cls)
                code = "".join("\n" + bracket_method(m, True) for m in own)
                edit.changes.append(TextChange(path, close, close, _with_eol(code, eol)))
            else:
                at, lead = _end_join(text)
                for side in ("instance", "class"):
                    part = [m for m in own if m.side == side]
                    if part:
                        head = f"{class_name}{' class' if side == 'class' else ''} extend ["
                        body = "".join("\n" + bracket_method(m, False) for m in part)
                        code = f"\n{head}{body}]\n"
                        edit.changes.append(TextChange(path, at, at, lead + _with_eol(code, eol)))
                        lead = ""
    else:
        raise EditRejected(f"code cannot be added to a file in the {fmt} format")
    return edit


def _namespace(source: SourceFile, class_name: str) -> str | None:
    for cls in source.classes:
        if cls.name == class_name and cls.namespace:
            return cls.namespace
    # A VisualWorks file names every class with its namespace.
    spaces = {c.namespace for c in source.classes if c.namespace}
    return spaces.pop() if len(spaces) == 1 else None


def _bracket_class(source: SourceFile, name: str) -> ClassDef | None:
    return next((c for c in source.classes if c.name == name and c.kind != "trait"), None)


def _closing_bracket(text: str, cls: ClassDef) -> int:
    """Offset of the start of the line holding the `]` that closes a GNU class body."""
    end = offset_at(text, cls.range.end)
    close = text.rfind("]", 0, max(end, 1))
    if close < 0:
        return end
    line_start = max(text.rfind("\n", 0, close), text.rfind("\r", 0, close)) + 1
    return line_start if not text[line_start:close].strip() else close


def new_class(
    source: SourceFile,
    path: str,
    text: str,
    name: str,
    superclass: str,
    category: str,
    comment: str,
    methods: list[NewMethod],
    folder: Path | None = None,
) -> CodeEdit:
    """An edit defining a new class with its methods: a new file beside `path` (Tonel, one
    class per file) or code appended to the file (chunk, GNU)."""
    edit = CodeEdit(expected=[(m.class_name, m.side, m.selector) for m in methods])
    fmt = source.format
    if fmt == "tonel":
        comment_text = comment.replace('"', '""')
        head = (
            f'"\n{comment_text}\n"\nClass {{\n\t#name : #{name},\n\t#superclass : #{superclass},\n'
            f"\t#category : {_category_literal(category)}\n}}\n"
        )
        code = head + "".join("\n" + tonel_method(m) for m in methods)
        target = (folder or Path(path).parent) / f"{name}.class.st"
        edit.files.append(NewFile(str(target), code))
        return edit
    eol = _eol(text)
    at, lead = _end_join(text)
    if fmt == "chunk":
        definition = (
            f"{superclass} subclass: #{name}\n\tinstanceVariableNames: ''\n"
            f"\tclassVariableNames: ''\n\tpoolDictionaries: ''\n\tcategory: {_quote(category)}!\n"
        )
        note = f"\n!{name} commentStamp: '' prior: 0!\n{comment.replace('!', '!!')}!\n"
        code = "\n" + definition + note + "\n" + chunk_methods(methods, None)
    elif fmt == "bracket":
        body = "".join("\n" + bracket_method(m, True) for m in methods)
        code = (
            f"\n{superclass} subclass: {name} [\n    <category: {_quote(category)}>\n"
            f"    <comment: {_quote(comment)}>\n{body}]\n"
        )
    else:
        raise EditRejected(f"a class cannot be added to a file in the {fmt} format")
    edit.changes.append(TextChange(path, at, at, lead + _with_eol(code, eol)))
    return edit


def comment_insertion(
    path: str, text: str, method: MethodDef, comment: str, fmt: str
) -> TextChange:
    """Insert `"comment"` as the first line of a method's body."""
    comment = " ".join(comment.split()).replace('"', "'")
    if fmt == "chunk":
        comment = comment.replace("!", "!!")
    pattern_end = offset_at(text, method.selector_range.end)
    line_end = pattern_end
    while line_end < len(text) and text[line_end] not in "\r\n":
        line_end += 1
    after = text[pattern_end:line_end].strip()
    if after not in ("", "["):
        # A one-line method (`foo [ ^1 ]`): the comment goes right after the pattern.
        at = pattern_end + (text[pattern_end:line_end].find("[") + 1 if after[0] == "[" else 0)
        return TextChange(path, at, at, f' "{comment}"')
    indent = _body_indent(text, line_end, offset_at(text, method.range.end))
    return TextChange(path, line_end, line_end, f'{_eol(text)}{indent}"{comment}"')


def _body_indent(text: str, start: int, end: int) -> str:
    for line in re.split(r"\r\n|\r|\n", text[start:end]):
        if line.strip() and not line.strip().startswith("]"):
            return line[: len(line) - len(line.lstrip())] or "\t"
    return "\t"


# --- checks ---------------------------------------------------------------------------------


def apply_changes(text: str, changes: list[TextChange]) -> str:
    for change in sorted(changes, key=lambda c: c.start, reverse=True):
        text = text[: change.start] + change.new_text + text[change.end :]
    return text


def _error_count(source: SourceFile) -> int:
    return sum(1 for d in source.diagnostics if d.severity == "error")


def check_edit(edit: CodeEdit, texts: dict[str, str]) -> list[SourceFile]:
    """Parse every file the edit touches or creates; EditRejected unless each parses with no
    more errors than before and holds the methods the edit adds. Returns the new parses."""
    parsed: list[SourceFile] = []
    for path in dict.fromkeys(c.path for c in edit.changes):
        before = texts[path]
        after = apply_changes(before, [c for c in edit.changes if c.path == path])
        old, new = parse(before, path), parse(after, path)
        if new.format != old.format:
            raise EditRejected(f"the edit would turn {Path(path).name} into {new.format} format")
        if _error_count(new) > _error_count(old):
            problems = {d.message for d in new.diagnostics} - {d.message for d in old.diagnostics}
            raise EditRejected("the new code does not parse: " + "; ".join(sorted(problems)))
        parsed.append(new)
    for new_file in edit.files:
        result = parse(new_file.text, new_file.path)
        if _error_count(result):
            messages = "; ".join(d.message for d in result.diagnostics)
            raise EditRejected(f"the new file does not parse: {messages}")
        parsed.append(result)
    found = {(m.class_name, m.side, m.selector) for s in parsed for m in s.methods}
    missing = [e for e in edit.expected if e not in found]
    if missing:
        names = ", ".join(
            f"{c}{' class' if side == 'class' else ''} >> {sel}" for c, side, sel in missing
        )
        raise EditRejected(f"the new code does not define {names} as expected")
    return parsed
