"""The public entry points: parse text, a file, a path; walk a project.

Formats are told apart by content, never by extension: Tonel (`Class {` ...), chunk (chunks
ending in `!`), GNU brackets (`Object subclass: Foo [`), else a bare method. A FileTree method
file is known by its place (`Foo.class/instance/sel.st`). Nothing here raises on bad input:
problems become diagnostics on the result.
"""

from __future__ import annotations

import gc
import logging
import os
import re
from collections.abc import Container, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tree_sitter import Tree

from smalltalk_grammar import facts as ts
from smalltalk_grammar import filetree
from smalltalk_grammar.bracket import parse_brackets
from smalltalk_grammar.build import FactsCache, make_method
from smalltalk_grammar.chunk import parse_chunks
from smalltalk_grammar.construct import make_source_file
from smalltalk_grammar.model import (
    Diagnostic,
    MethodDef,
    Position,
    Range,
    SourceFile,
    SourceFormat,
)
from smalltalk_grammar.text import ByteMap, LineIndex, decode, line_ending, wide_lines
from smalltalk_grammar.tonel import looks_like_tonel, parse_tonel

log = logging.getLogger(__name__)

# A line ending in a run of `!`: a chunk ends there when the run is odd (`!!` is a literal
# bang), not counting the bang(s) of a character literal `$!` (`$!!` in a chunk file).
_LINE_BANGS = re.compile(r"(\$?)(!+)[ \t]*$", re.M)
# Chunk section headers: `!Foo methodsFor: 'x'!`, `!Foo class publicMethods !` (VA),
# `!Foo commentStamp: '...' prior: 0!`: the strongest sign of a chunk file.
_CHUNK_SECTION = re.compile(
    r"^![ \t]*[\w.]+(?:[ \t]+class)?[ \t]+(?:methodsFor:|\w*[mM]ethods\b|commentStamp:)", re.M
)
# GNU bracket syntax: class bodies, extensions, namespaces, `Eval [`, `Foo class >> bar [`.
_BRACKET = re.compile(
    r"""^[ \t]*(?:
        [\w.]+[ \t]+subclass:[ \t]*\#?[\w.]+[ \t]*\[
      | [\w.]+(?:[ \t]+class)?[ \t]+extend[ \t]*\[
      | [\w.]+[ \t]+class[ \t]*\[
      | Namespace[ \t]+current:
      | Eval[ \t]*\[
      | [\w.]+(?:[ \t]+class)?[ \t]*>>[^\[\r\n]*\[
    )""",
    re.M | re.X,
)
# An indented method header of a bracket class body: `name [`, `+ other [`, `at: i put: v [`.
_BRACKET_METHOD = re.compile(
    r"^[ \t]+(?:[a-zA-Z]\w*|[-+*/\\<>=~@%|&?,]+[ \t]+\w+|(?:\w+:[ \t]*\w+[ \t]*)+)[ \t]*\[[ \t]*$",
    re.M,
)
_TONEL_PACKAGE = re.compile(r"\A\s*(?:\"[^\"]*\"\s*)*Package\s*\{")
DETECT_LIMIT = 200_000
# A file that is neither Tonel, chunk nor bracket syntax is read as one method; past this size
# it cannot be one, and parsing it would only produce a flood of syntax errors.
METHOD_LIMIT = 1_000_000
# Diagnostics kept per file: a damaged file must not flood the editor (or the JSON output).
DIAGNOSTIC_LIMIT = 200
SKIP_DIRS = {".git", ".hg", ".svn", ".smalltalk-lsp", "node_modules", ".venv", "__pycache__"}
_START = Range(start=Position(line=0, character=0), end=Position(line=0, character=0))


def detect_format(text: str) -> SourceFormat:
    """Tonel, chunk, bracket or a bare method, from the evidence of the whole first part of
    the file: chunk section headers and chunk ends against bracket class syntax and bracket
    method headers (one `$!` at a line's end does not make a bracket file a chunk file)."""
    if looks_like_tonel(text):
        return "tonel"
    # The format shows in the first part of a file; CRs become LFs so `^` finds every line.
    sample = text[:DETECT_LIMIT].replace("\r", "\n")
    chunk = 3 * len(_CHUNK_SECTION.findall(sample)) + _chunk_ends(sample)
    bracket = 3 * len(_BRACKET.findall(sample)) + len(_BRACKET_METHOD.findall(sample))
    if bracket > chunk:
        return "bracket"
    if chunk:
        return "chunk"
    return "method"


def _chunk_ends(sample: str) -> int:
    count = 0
    for dollar, bangs in _LINE_BANGS.findall(sample):
        run = len(bangs)
        if dollar:  # the literal's own bang: `$!` (as written outside chunks) or `$!!`
            run -= 1 if run == 1 else 2
        if run % 2 == 1:
            count += 1
    return count


_FORMAT_NAMES = {"chunk": "chunk", "bracket": "GNU bracket"}


def _yields_nothing(text: str, result: SourceFile) -> bool:
    """A non-empty file without a class, a method or an `Eval [ ]` (a Tonel `Package { }`
    file holds none by design)."""
    if result.classes or result.methods or result.doits or not text.strip():
        return False
    return not (result.format == "tonel" and _TONEL_PACKAGE.match(text))


@dataclass
class ParseState:
    """What an incremental re-parse can reuse: the tree-sitter tree of a Tonel or bare-method
    file (with the bytes it was parsed from) and the facts of method sources seen before."""

    cache: FactsCache
    tree: Tree | None = None
    data: bytes | None = None
    format: SourceFormat | None = None


def parse_text(
    text: str, path: str | None, state: ParseState, *, encoding: str = "utf-8"
) -> SourceFile:
    """Parse decoded text. Uses and updates `state` (the caller may have edited state.tree)."""
    with paused_gc():
        result = _parse_text(text, path, state, encoding)
    if _yields_nothing(text, result):
        name = _FORMAT_NAMES.get(result.format, result.format)
        message = f"no class and no method found in this file (read as {name} source)"
        result.diagnostics.append(Diagnostic(range=_START, message=message, severity="warning"))
    extra = len(result.diagnostics) - DIAGNOSTIC_LIMIT
    if extra > 0:
        del result.diagnostics[DIAGNOSTIC_LIMIT:]
        result.diagnostics.append(
            Diagnostic(range=_START, message=f"{extra} more problems not shown", severity="warning")
        )
    return result


def _parse_text(text: str, path: str | None, state: ParseState, encoding: str) -> SourceFile:
    index = LineIndex(text)
    # The result is built once at the end; `given` are the fields counted as set, as if they
    # had been assigned one by one.
    values: dict[str, Any] = {
        "path": path,
        "format": "method",
        "encoding": encoding,
        "line_ending": line_ending(text),
    }
    wide = wide_lines(text, index)
    if wide:
        values["wide_lines"] = wide
    given = set(values)
    diagnostics: list[Diagnostic] = []
    if not text.strip():
        diagnostics.append(
            Diagnostic(range=_START, message="empty file: nothing to parse", severity="information")
        )
        state.tree = state.data = None
        values["diagnostics"] = diagnostics
        return make_source_file(values, given)
    if path is not None and filetree.is_class_properties(Path(path)):
        # An open FileTree class definition (properties.json): the class, not a method.
        state.tree = state.data = None
        return _properties_text(Path(path), text, encoding)
    location = filetree.method_location(path)
    if location is not None:
        values["format"] = "filetree"
        values["methods"], values["diagnostics"] = filetree.parse_method_file(
            text, location, index, state.cache
        )
        state.tree = state.data = None
        return make_source_file(values)
    fmt = detect_format(text)
    values["format"] = fmt
    values["diagnostics"] = diagnostics
    if fmt != state.format:
        state.tree = None
    state.format = fmt
    if fmt == "method" and len(text) > METHOD_LIMIT:
        diagnostics.append(
            Diagnostic(
                range=_START,
                message=f"not a recognised Smalltalk file format, and too large ({len(text)} "
                "characters) to be a single method: not parsed",
            )
        )
        state.tree = state.data = None
        return make_source_file(values, given)
    if fmt in ("tonel", "method"):
        data = text.encode("utf-8")
        tree = ts.parse_bytes(data, state.tree)
        state.tree, state.data = tree, data
        if fmt == "tonel":
            found = parse_tonel(text, data, tree, index, state.cache)
            values["classes"], values["methods"] = found.classes, found.methods
            diagnostics.extend(found.diagnostics)
            return make_source_file(values, given | {"classes", "methods"})
        methods: list[MethodDef] = []
        values["methods"] = methods
        _bare_method(text, data, tree, index, state, methods, diagnostics)
        return make_source_file(values, given)
    state.tree = state.data = None
    if fmt == "chunk":
        values["classes"], values["methods"], diags = parse_chunks(text, index, state.cache)
        given |= {"classes", "methods"}
    else:
        values["classes"], values["methods"], values["doits"], diags = parse_brackets(
            text, index, state.cache
        )
        given |= {"classes", "methods", "doits"}
    diagnostics.extend(diags)
    return make_source_file(values, given)


def _bare_method(
    text: str,
    data: bytes,
    tree: Tree,
    index: LineIndex,
    state: ParseState,
    methods: list[MethodDef],
    diagnostics: list[Diagnostic],
) -> None:
    """A file holding one method (pattern and body), as an editor shows a method alone."""
    start = len(text) - len(text.lstrip())
    source = text.strip()
    found = state.cache.lookup(source)
    if found is None:
        found = ts.collect(tree.root_node, data, ByteMap(text), start, text)
        if found.selector is None:
            from smalltalk_grammar.build import guess_pattern

            guess_pattern(source, found)
        state.cache.store(source, found)
    methods.append(
        make_method(
            index,
            class_name="",
            side="instance",
            category=None,
            source=source,
            start=start,
            end=start + len(source),
            found=found,
            base=start,
            diagnostics=diagnostics,
        )
    )


def _failed(path: str | None, message: str) -> SourceFile:
    return SourceFile(
        path=path, format="method", diagnostics=[Diagnostic(range=_START, message=message)]
    )


def parse(text: str | bytes, path: str | None = None) -> SourceFile:
    """Parse Smalltalk source of any format. Bytes are decoded (UTF-8 with or without BOM,
    else Latin-1 with a warning); binary data gives an empty result with one diagnostic.
    Never raises: an internal failure becomes a diagnostic."""
    try:
        return _parse(text, path, ParseState(FactsCache()))
    except Exception as err:  # the server must survive any file
        log.exception("parsing %s failed", path)
        return _failed(path, f"internal parser error: {err!r}")


def _parse(text: str | bytes, path: str | None, state: ParseState) -> SourceFile:
    encoding = "utf-8"
    warning = None
    if isinstance(text, bytes):
        decoded = decode(text)
        if decoded.binary:
            return SourceFile(
                path=path,
                format="method",
                encoding="binary",
                diagnostics=[Diagnostic(range=_START, message=decoded.warning or "binary file")],
            )
        text, encoding, warning = decoded.text, decoded.encoding, decoded.warning
    result = parse_text(text, path, state, encoding=encoding)
    if warning:
        result.diagnostics.insert(0, Diagnostic(range=_START, message=warning, severity="warning"))
    return result


def parse_file(path: Path, cache: FactsCache | None = None) -> SourceFile:
    """One file from disk: any `.st` format, a FileTree method file (class and side from its
    folders) or a FileTree class `properties.json` (with README.md as the comment)."""
    if not isinstance(path, Path):
        path = Path(path)
    try:
        data = read_bytes(str(path))
    except OSError as err:
        return _failed(str(path), f"cannot read file: {err.strerror or err}")
    try:
        if path.name == "properties.json":
            return _properties(path, data)
        return _parse(data, str(path), ParseState(cache or FactsCache()))
    except Exception as err:
        log.exception("parsing %s failed", path)
        return _failed(str(path), f"internal parser error: {err!r}")


def read_bytes(path: str) -> bytes:
    """A file's bytes: what Path.read_bytes does, with fewer layers (this runs per file)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        size = os.fstat(fd).st_size
        data = os.read(fd, size + 1)  # one byte more: a file that grew shows it here
        if len(data) <= size:
            return data
        parts = [data]
        while chunk := os.read(fd, 1 << 20):
            parts.append(chunk)
        return b"".join(parts)
    finally:
        os.close(fd)


def _properties(path: Path, data: bytes) -> SourceFile:
    decoded = decode(data)
    return _properties_text(path, decoded.text, decoded.encoding)


def _properties_text(path: Path, text: str, encoding: str) -> SourceFile:
    """A FileTree properties.json, from disk or an open buffer."""
    index = LineIndex(text)
    result = SourceFile(
        path=str(path), format="filetree", encoding=encoding, line_ending=line_ending(text)
    )
    if not filetree.is_class_properties(path):
        return result  # a package's properties.json: no class in it
    comment = None
    readme = path.parent / "README.md"
    if readme.is_file():
        try:
            comment = decode(readme.read_bytes()).text
        except OSError:
            comment = None
    result.classes, result.diagnostics = filetree.parse_properties(text, path, index, comment)
    return result


def _is_binary(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            head = handle.read(8192)
    except OSError:
        return True
    return b"\x00" in head and not head.startswith((b"\xff\xfe", b"\xfe\xff"))


def iter_project(root: Path, trusted: Container[str] = ()) -> Iterator[Path]:
    """Every file worth parsing under `root` (or `root` itself when it is a file), in a stable
    order: `.st` files that are not binary and FileTree class/extension/trait properties.json;
    version-control, tool and environment directories are skipped, symlinked directories are
    not followed. Paths in `trusted` (say, files the caller parsed before and knows unchanged)
    are yielded without reading their content to tell whether they are binary."""
    root = Path(root)
    if root.is_file():
        if _wanted(root):
            yield root
        return
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        for name in sorted(filenames):
            path = Path(dirpath, name)
            if str(path) in trusted or _wanted(path):
                yield path


def _wanted(path: Path) -> bool:
    if path.suffix == ".st":
        return path.is_file() and not _is_binary(path)
    return filetree.is_class_properties(path)


def parse_path(path: Path) -> list[SourceFile]:
    """A file, or every file worth parsing under a directory (FileTree package, class
    directory, or any tree), parsed."""
    cache = FactsCache()
    with paused_gc():
        return [parse_file(p, cache) for p in iter_project(Path(path))]


class paused_gc:
    """`with paused_gc():` Parsing allocates many small objects and no reference cycles; the
    cyclic collector's full passes over an already large heap (a parsed project, an open
    document's last result) cost more than the parse itself. The outermost user turns it back
    on. (A class, not a generator: it is entered once per file.)"""

    __slots__ = ("enabled",)

    def __enter__(self) -> None:
        self.enabled = gc.isenabled()
        gc.disable()

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            gc.enable()


def format_of(text: str, path: str | None = None) -> SourceFormat:
    """The format `parse` reads a file as, without parsing it: FileTree by the method file's
    path, else detected from the content."""
    if filetree.method_location(path) is not None:
        return "filetree"
    return detect_format(text)
