"""`smalltalk-lsp complete FILE:LINE:COL [--json]`: the inline-completion code path from the
command line (LINE and COL count from 1, as editors show them)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

HELP = "print the coder model's suggestion at FILE:LINE:COL (1-based), as the server makes it"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("location", help="FILE:LINE:COL, line and column counting from 1")
    parser.add_argument("--json", action="store_true", help="print a JSON object with timings")
    parser.add_argument("--model", default=None, help="coder model: a GGUF path or embedded name")
    parser.add_argument(
        "--max-generate-ms", type=int, default=None,
        help="cap on generation once the prompt is read (completion.max_generate_ms)",
    )
    parser.add_argument(
        "--root", type=Path, default=None, help="workspace root (default: found from FILE)"
    )
    parser.add_argument("--verbose", action="store_true", help="log to stderr")


def parse_location(value: str) -> tuple[Path, int, int]:
    """`path:line:col` (the path may itself contain colons) -> (path, line, col), 1-based."""
    parts = value.rsplit(":", 2)
    if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
        raise ValueError(f"expected FILE:LINE:COL, got {value!r}")
    line, col = int(parts[1]), int(parts[2])
    if line < 1 or col < 1:
        raise ValueError("LINE and COL count from 1")
    return Path(parts[0]), line, col


def find_root(path: Path) -> Path:
    """The nearest folder above `path` with a smalltalk-lsp.toml or a .git, else its folder."""
    from server.config import CONFIG_FILE_NAME

    start = path.absolute().parent
    for folder in (start, *start.parents):
        if (folder / CONFIG_FILE_NAME).is_file() or (folder / ".git").exists():
            return folder
    return start


def offset_of(text: str, line: int, col: int) -> int:
    """Offset of 1-based line and column; past the end of a line means its end."""
    lines = text.split("\n")
    if line > len(lines):
        raise ValueError(f"line {line} is past the end of the file ({len(lines)} lines)")
    start = sum(len(row) + 1 for row in lines[: line - 1])
    return start + min(col - 1, len(lines[line - 1]))


def run(args: argparse.Namespace) -> int:
    # Problems reach the user as one line on stderr; the log is for --verbose. The level is
    # on the handler: loggers with a level of their own (llama.cpp's) would pass a root level.
    handler = logging.StreamHandler()
    handler.setLevel(logging.DEBUG if args.verbose else logging.CRITICAL)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    try:
        path, line, col = parse_location(args.location)
        from server.documents import read_text

        text = read_text(str(path))
        if text is None:
            raise ValueError(f"{path}: cannot read the file")
        offset = offset_of(text, line, col)
    except ValueError as err:
        print(f"smalltalk-lsp complete: {err}", file=sys.stderr)
        return 2
    return _complete(args, path.absolute(), text, offset)


def _complete(args: argparse.Namespace, path: Path, text: str, offset: int) -> int:
    from server.completion.pipeline import CompletionOptions, complete
    from server.completion.providers import ClassContextProvider
    from server.completion.types import CompletionRequest
    from server.config import load_settings
    from server.engine.registry import ModelRegistry
    from server.project_model import ProjectModel
    from server.workspace import WorkspaceIndex
    from smalltalk_grammar import parse

    root = args.root.absolute() if args.root else find_root(path)
    overrides: list[dict[str, Any]] = []
    if args.model:
        overrides.append({"models": {"code_generation": args.model}})
    if args.max_generate_ms:
        cap = args.max_generate_ms
        overrides.append({"completion": {"max_generate_ms": cap, "max_generate_ms_invoked": cap}})
    loaded = load_settings(root, overrides, trusted=True)  # the root the user named
    for problem in loaded.problems:
        print(f"smalltalk-lsp complete: settings: {problem}", file=sys.stderr)
    started = time.monotonic()
    project = ProjectModel()
    WorkspaceIndex(project, [root]).scan()
    source = parse(text, str(path))
    project.put(source)
    registry = ModelRegistry(loaded.settings, root)
    try:
        engine = registry.load("coder")
        load_ms = (time.monotonic() - started) * 1000
        if engine is None:
            reason = registry.errors.get("coder", "the coder role is off")
            print(f"smalltalk-lsp complete: {reason}", file=sys.stderr)
            return 1
        request = CompletionRequest(
            "file://" + str(path), text, offset, str(path), source_format=source.format
        )
        options = CompletionOptions.from_settings(loaded.settings, invoked=True)
        providers = [ClassContextProvider(lambda: project)]
        suggestion = complete(request, engine, providers, options)
    finally:
        registry.close()
    if args.json:
        generation = suggestion.generation
        report = {
            "suggestion": suggestion.text,
            "mode": suggestion.mode,
            "source": suggestion.source,
            "raw": suggestion.raw,
            "model": engine.model_id,
            "stop_reason": generation.stop_reason if generation else None,
            "prompt_tokens": generation.prompt_tokens if generation else 0,
            "generated_tokens": generation.generated_tokens if generation else 0,
            "timings_ms": {"load": round(load_ms, 1)}
            | {k.removesuffix("_ms"): round(v, 1) for k, v in suggestion.timings.items()},
        }
        print(json.dumps(report, indent=2))
    elif suggestion.text:
        print(suggestion.text)
    return 0
