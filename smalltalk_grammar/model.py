"""The one model of Smalltalk code that every source format parses into.

Positions are zero-based lines and characters in the decoded text (BOM removed; CR, LF and
CRLF each end a line), which is what an editor sees.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

SourceFormat = Literal["tonel", "chunk", "filetree", "bracket", "method"]
ClassKind = Literal["class", "trait", "extension"]
Side = Literal["instance", "class"]
Severity = Literal["error", "warning", "information"]


class Position(BaseModel):
    model_config = ConfigDict(frozen=True)

    line: int
    character: int


class Range(BaseModel):
    model_config = ConfigDict(frozen=True)

    start: Position
    end: Position

    def contains(self, pos: Position) -> bool:
        start = (self.start.line, self.start.character)
        end = (self.end.line, self.end.character)
        return start <= (pos.line, pos.character) <= end


class Diagnostic(BaseModel):
    range: Range
    message: str
    severity: Severity = "error"


class ClassDef(BaseModel):
    name: str
    superclass: str | None = None
    kind: ClassKind = "class"
    category: str | None = None
    comment: str | None = None
    instance_variables: list[str] = Field(default_factory=list)
    class_variables: list[str] = Field(default_factory=list)
    class_instance_variables: list[str] = Field(default_factory=list)
    # The trait composition as written (`TFoo + TBar`), or None.
    traits: str | None = None
    # Whole definition (header, and for bracket syntax the whole body) and the class name in it.
    range: Range
    name_range: Range
    # The namespace a VisualWorks class is defined in (`Smalltalk.Core` -> "Core"), or None.
    namespace: str | None = None


class MethodDef(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    class_name: str = Field(alias="class")
    side: Side = "instance"
    selector: str
    # Keyword parts (`at:`, `put:`) of a keyword selector; empty for unary and binary ones.
    keywords: list[str] = Field(default_factory=list)
    category: str | None = None
    comment: str | None = None
    # The method source as written in its format: pattern and body, without the Tonel or
    # bracket header `Foo >> ` and without the enclosing `[ ]`; `!!` already unescaped.
    source: str
    range: Range
    selector_range: Range
    # Character offsets of `range` in the decoded text, for slicing.
    start_offset: int
    end_offset: int
    sends: list[str] = Field(default_factory=list)
    # Symbols used as literals (`#foo:bar:`), which may be performed.
    symbols: list[str] = Field(default_factory=list)
    # Capitalised identifiers referenced (classes, globals, class variables).
    class_references: list[str] = Field(default_factory=list)
    # Lower-case identifiers referenced that are not arguments or temporaries (instance
    # variables, mostly).
    variable_references: list[str] = Field(default_factory=list)
    arguments: list[str] = Field(default_factory=list)
    temporaries: list[str] = Field(default_factory=list)


class SourceFile(BaseModel):
    path: str | None = None
    format: SourceFormat
    classes: list[ClassDef] = Field(default_factory=list)
    methods: list[MethodDef] = Field(default_factory=list)
    diagnostics: list[Diagnostic] = Field(default_factory=list)
    # Statements that are not methods but send messages: GNU `Eval [ ... ]` blocks, read as
    # methods `UndefinedObject >> DoIt` so that senders can find them.
    doits: list[MethodDef] = Field(default_factory=list)
    # How the bytes were decoded ("utf-8", "utf-8-sig", "latin-1") and which line ends they use.
    encoding: str = "utf-8"
    line_ending: Literal["lf", "crlf", "cr", "mixed", "none"] = "none"
    # Lines holding characters outside the Basic Multilingual Plane (an emoji, say): there an
    # editor counting utf-16 code units sees other columns than these code-point ones.
    wide_lines: list[int] = Field(default_factory=list)
