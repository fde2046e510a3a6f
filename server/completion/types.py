"""The small immutable data that flows through the completion pipeline.

request -> CursorContext (context stage) -> Prompt (prompt stage) -> Generation (engine)
-> suggestion text (filters) -> LSP items.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from server.completion.lexical import ScanState
from server.engine.types import Generation

Mode = Literal["line", "block"]


@dataclass(frozen=True)
class CompletionRequest:
    uri: str
    text: str
    # Cursor as a character offset into `text`.
    offset: int
    path: str | None = None
    # "tonel", "chunk", "bracket", "filetree", "method"; None lets the context stage guess.
    source_format: str | None = None


@dataclass(frozen=True)
class ContextSnippet:
    """A piece of project context for the prompt, e.g. a class definition or a similar method."""

    text: str
    origin: str = ""
    path: str | None = None
    # The item as its file writes it (a Tonel method or class definition), for prompts that
    # lay context out as repository files; "" means `text` serves for both.
    code: str = ""


@dataclass(frozen=True)
class MethodSpan:
    """The method around the cursor, as far as the text shows it."""

    # Offsets into the document: start of the method pattern, end of its body.
    start: int
    end: int
    # Text of the method (pattern and body, no Tonel header, `!!` unescaped) before and
    # after the cursor; the parse check inserts a suggestion between them.
    before: str
    after: str
    class_name: str | None = None
    selector: str | None = None
    side: str = "instance"


@dataclass(frozen=True)
class CursorContext:
    request: CompletionRequest
    mode: Mode
    # Text of the line before and after the cursor.
    line_prefix: str
    line_suffix: str
    # Document text before and after the cursor, already cut to the prompt windows.
    prefix: str
    suffix: str
    source_format: str
    # Scanner state at the cursor, counted from the start of the method body: the brackets
    # open inside the method, and whether the cursor is in a string or comment.
    scan: ScanState = field(default_factory=ScanState)
    method: MethodSpan | None = None
    snippets: tuple[ContextSnippet, ...] = ()
    # What the suggestion starts with that the model is not asked to write: a new line when
    # the cursor ends a finished line (the cursor analysis's `lead`). `request` and the
    # fields above then describe the document with the lead typed; `document` is the
    # editor's.
    lead: str = ""

    @property
    def in_chunk_file(self) -> bool:
        return self.source_format == "chunk"

    @property
    def document(self) -> tuple[str, int]:
        """The text and cursor offset as the editor has them (without the lead)."""
        text, offset = self.request.text, self.request.offset
        start = offset - len(self.lead)
        return text[:start] + text[offset:], start


@dataclass(frozen=True)
class Prompt:
    text: str
    max_tokens: int
    mode: Mode
    # Strings that end generation wherever they appear (newline in line mode).
    stop: tuple[str, ...] = ()
    # Length of the prompt's stable front (project and file context), for diagnostics.
    stable_chars: int = 0


@dataclass(frozen=True)
class Suggestion:
    text: str
    mode: Mode
    # The raw generation and what the filters made of it, for `complete --json` and logs.
    raw: str = ""
    source: Literal["model", "cache", "typed-through"] = "model"
    prompt: Prompt | None = None
    timings: dict[str, float] = field(default_factory=dict)
    generation: Generation | None = None
