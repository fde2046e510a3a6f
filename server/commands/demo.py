"""`smalltalk-lsp demo [PROJECT]`: a scripted editor session against the real server."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

HELP = "run a scripted editor session on a project and print what the user would see"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("project", nargs="?", default="tests/fixtures/sample", type=Path)
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="seconds to wait for the models to load")


def run(args: argparse.Namespace) -> int:
    from server.demo import run_demo

    return asyncio.run(run_demo(args.project, args.timeout))
