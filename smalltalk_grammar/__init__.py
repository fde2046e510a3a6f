"""Smalltalk sources of every format -> one model of classes and methods.

parse(text_or_bytes, path=None) -> SourceFile     format detected from content
parse_file(path) -> SourceFile                    one file, FileTree files included
parse_path(path) -> list[SourceFile]              a file or a directory tree
iter_project(root) -> Iterator[Path]              the files worth parsing
DocumentParser(path).parse(text) / .edit(start, old_end, new_text)   incremental
position_at(text, offset) / offset_at(text, position)                line index helpers
"""

from smalltalk_grammar.document import DocumentParser
from smalltalk_grammar.model import (
    ClassDef,
    ClassKind,
    Diagnostic,
    MethodDef,
    Position,
    Range,
    Severity,
    Side,
    SourceFile,
    SourceFormat,
)
from smalltalk_grammar.parsing import (
    detect_format,
    format_of,
    iter_project,
    parse,
    parse_file,
    parse_path,
)
from smalltalk_grammar.text import LineIndex, offset_at, position_at

__all__ = [
    "ClassDef",
    "ClassKind",
    "Diagnostic",
    "DocumentParser",
    "LineIndex",
    "MethodDef",
    "Position",
    "Range",
    "Severity",
    "Side",
    "SourceFile",
    "SourceFormat",
    "detect_format",
    "format_of",
    "iter_project",
    "offset_at",
    "parse",
    "parse_file",
    "parse_path",
    "position_at",
]
