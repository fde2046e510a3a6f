"""`smalltalk-lsp symbols PATH... [--json]`: what the grammar layer reads from Smalltalk files.

With --json, one JSON object per line per source file (a directory is walked with
`iter_project`; each method file of a FileTree class is one source file):

    {"path", "format", "encoding", "line_ending",
     "classes": [{"name", "superclass", "kind", "category", "comment", "instance_variables",
                  "class_variables", "class_instance_variables", "traits", "namespace",
                  "range", "name_range"}],
     "methods": [{"class", "side", "selector", "keywords", "category", "comment", "source",
                  "range", "selector_range", "start_offset", "end_offset", "sends", "symbols",
                  "class_references", "variable_references", "arguments", "temporaries"}],
     "doits": [... like methods: GNU `Eval [ ]` blocks],
     "diagnostics": [{"range", "message", "severity"}]}

Ranges are LSP ranges (zero-based line/character) in the file as read. Without --json, a short
outline per file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from smalltalk_grammar.model import SourceFile

HELP = "print the classes, methods and diagnostics parsed from Smalltalk files"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="files or folders")
    parser.add_argument(
        "--json", action="store_true", help="one JSON object per line per source file"
    )


def run(args: argparse.Namespace) -> int:
    try:
        return _print(args)
    except BrokenPipeError:
        # The reader (`| head`) went away: not an error of ours.
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - stdout must stay open until exit
        return 0


def _print(args: argparse.Namespace) -> int:
    from smalltalk_grammar import iter_project, parse_file

    status = 0
    for root in args.paths:
        if not root.exists():
            print(f"smalltalk-lsp symbols: {root}: no such file or directory", file=sys.stderr)
            status = 2
            continue
        for path in iter_project(root):
            source = parse_file(path)
            if args.json:
                line = json.dumps(source.model_dump(mode="json", by_alias=True))
                sys.stdout.write(line + "\n")
            else:
                _outline(source)
    sys.stdout.flush()
    return status


def _outline(source: SourceFile) -> None:
    out = sys.stdout
    out.write(f"{source.path} ({source.format}, {source.encoding})\n")
    for cls in source.classes:
        parent = f" < {cls.superclass}" if cls.superclass else ""
        out.write(f"  {cls.kind} {cls.name}{parent}  [{cls.category or '-'}]\n")
    for method in source.methods + source.doits:
        side = " class" if method.side == "class" else ""
        line = method.range.start.line + 1
        out.write(
            f"    {method.class_name}{side} >> {method.selector}"
            f"  [{method.category or '-'}]  line {line}\n"
        )
    for diag in source.diagnostics:
        pos = diag.range.start
        out.write(f"  {diag.severity} {pos.line + 1}:{pos.character + 1} {diag.message}\n")
