"""What the kinds of rename share: the refusal, the annotated edits they collect per file, the
texts of the files they read, and the steps they report progress by.

A rename is computed as a generator of steps `(done, total)`, one per batch of methods: the
request handler runs a long one on a thread, reports each step as `$/progress` and stops at the
next step once `$/cancelRequest` came (the plain functions just run it to the end).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

from lsprotocol import types

from server.features import common
from server.features.analysis import MethodTree, method_tree
from smalltalk_grammar import MethodDef, offset_at

if TYPE_CHECKING:
    from server.core import SmalltalkLanguageServer

ANNOTATION = "smalltalk-rename"
# Methods looked at between two turns of the event loop (and two progress reports).
BATCH = 100

Steps = Iterator[tuple[int, int]]


class RenameRefused(Exception):
    """The rename cannot be done safely; the message says why."""


class Edits:
    """Annotated text edits per file, each span once, and the texts they were computed on."""

    def __init__(self, ls: SmalltalkLanguageServer) -> None:
        self.ls = ls
        self.by_uri: dict[str, list[types.AnnotatedTextEdit]] = {}
        self._texts: dict[str, str | None] = {}
        self._seen: set[tuple[str, int, int]] = set()

    def text(self, path: str) -> str | None:
        if path not in self._texts:
            self._texts[path] = common.file_text(self.ls, path)
        return self._texts[path]

    def add(self, path: str, start: int, end: int, new: str) -> None:
        text = self.text(path)
        if text is None or (path, start, end) in self._seen:
            return
        self._seen.add((path, start, end))
        edit = types.AnnotatedTextEdit(
            range=common.lsp_range(common.span_range(text, start, end)),
            new_text=new,
            annotation_id=ANNOTATION,
        )
        self.by_uri.setdefault(common.uri_of(path), []).append(edit)

    def tree(self, path: str, method: MethodDef) -> MethodTree | None:
        text = self.text(path)
        if not text:
            return None
        base = offset_at(text, method.selector_range.start)
        return method_tree(text, common.file_format(self.ls, path), method, base)

    def outside_methods(self, path: str, start: int = 0, end: int | None = None) -> list[
        tuple[int, int]
    ]:
        """The spans of `text[start:end]` that no method (or GNU `Eval`) covers: class
        definitions, Tonel and GNU method headers, chunk `methodsFor:` lines."""
        text = self.text(path) or ""
        end = len(text) if end is None else end
        source = self.ls.project.file(path)
        methods = [*source.methods, *source.doits] if source is not None else []
        # A method from its selector on (a Tonel or GNU header `Foo class >>` before it).
        cuts = sorted((offset_at(text, m.selector_range.start), m.end_offset) for m in methods)
        spans: list[tuple[int, int]] = []
        at = start
        for cut_start, cut_end in cuts:
            if cut_end <= at or cut_start >= end:
                continue
            if cut_start > at:
                spans.append((at, cut_start))
            at = max(at, cut_end)
        if at < end:
            spans.append((at, end))
        return spans

    def words(
        self, path: str, spans: list[tuple[int, int]], name: str, new: str, symbols: bool
    ) -> int:
        """Rename the word `name` in code outside methods, not in comments; in a string or a
        FileTree JSON value only where it declares (a variable list, a trait composition).
        `symbols`: `#name` counts (a class), else not (a variable: `#name :` is Tonel's key).
        The count of spans renamed."""
        text = self.text(path) or ""
        before = r"(?<![\w-])" if symbols else r"(?<![\w#-])"
        # Not a keyword (`category:` of a chunk definition), not part of a dashed category.
        word = re.compile(rf"{before}{re.escape(name)}(?![\w-]|:(?!=))")
        json = path.endswith(".json")
        strings = r'"(?:[^"\\]|\\.)*"' if json else r"\"(?:[^\"]|\"\")*\"|'(?:[^']|'')*'|"
        token = re.compile(strings if json else strings + word.pattern)
        found = 0
        for start, end in spans:
            for m in token.finditer(text, start, end):
                quoted = m.group()[:1]
                if json or quoted == "'":
                    if not _DECLARES.search(text[max(0, m.start() - 400) : m.start()]):
                        continue
                    if json and re.match(r"\s*:", text[m.end() : m.end() + 8]):
                        continue  # a key
                    for inner in word.finditer(m.group()[1:-1]):
                        at = m.start() + 1 + inner.start()
                        self.add(path, at, at + len(name), new)
                        found += 1
                elif quoted != '"':
                    self.add(path, m.start(), m.end(), new)
                    found += 1
        return found


# What a string (or JSON string) that declares names follows: a variable list, a trait
# composition (chunk, VisualWorks, Tonel, FileTree), with the strings before it in a list.
_DECLARES = re.compile(
    r"""(?:instanceVariableNames:|classVariableNames:|classInstanceVariableNames:"""
    r"""|#instVars\s*:|#classVars\s*:|#classInstVars\s*:|#traits\s*:|#classTraits\s*:"""
    r"""|"instvars"\s*:|"classvars"\s*:|"classinstvars"\s*:|"traitcomposition"\s*:"""
    r"""|"name"\s*:|"super"\s*:)"""
    r"""\s*\[?\s*(?:(?:'(?:[^']|'')*'|"[^"]*")\s*(?:,\s*)?)*\Z"""
)


def run(steps: Steps) -> None:
    """Compute a rename to the end, without reporting."""
    for _ in steps:
        pass
