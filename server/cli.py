"""`smalltalk-lsp` command line: one subcommand per module named in `COMMANDS`."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Subcommand name -> module. Each module has HELP, add_arguments(parser) and run(args) -> int.
# Modules import lazily so `serve` does not pay for `index`. The training command belongs to the
# `adapters` package, which is built on the server (never the other way round): the command
# line names it here like a plug-in and the server's own code never imports it.
COMMANDS: dict[str, str] = {
    "serve": "server.commands.serve",
    "symbols": "server.commands.symbols",
    "complete": "server.commands.complete",
    "doctor": "server.commands.doctor",
    "index": "server.commands.index",
    "adapters": "adapters.commands",
    "demo": "server.commands.demo",
}


def _available() -> dict[str, object]:
    found: dict[str, object] = {}
    for name, module_name in COMMANDS.items():
        try:
            found[name] = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name != module_name:
                raise
    return found


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, object]]:
    parser = argparse.ArgumentParser(prog="smalltalk-lsp", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    modules = _available()
    for name, module in modules.items():
        command = sub.add_parser(name, help=getattr(module, "HELP", None))
        module.add_arguments(command)  # type: ignore[attr-defined]
    return parser, modules


def main(argv: Sequence[str] | None = None) -> None:
    parser, modules = build_parser()
    args = parser.parse_args(argv)
    sys.exit(modules[args.command].run(args))  # type: ignore[attr-defined]
