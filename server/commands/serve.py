"""`smalltalk-lsp serve`: run the language server over stdio (default) or TCP."""

from __future__ import annotations

import argparse
import logging
import sys

HELP = "run the language server (stdio by default)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tcp",
        metavar="HOST:PORT",
        help="listen on a TCP socket instead of stdio (e.g. 127.0.0.1:2087)",
    )
    parser.add_argument("--stdio", action="store_true", help="use stdio (the default)")
    parser.add_argument(
        "--log-level",
        default=None,
        help="level of the log sent to the client and stderr (default INFO, or "
        "$SMALLTALK_LSP_LOG_LEVEL)",
    )


def parse_address(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"--tcp wants HOST:PORT, got {value!r}")
    return host or "127.0.0.1", int(port)


def run(args: argparse.Namespace) -> int:
    from server import logging_setup
    from server.lsp import create_server

    address = None
    if args.tcp:
        try:
            address = parse_address(args.tcp)
        except ValueError as err:
            print(f"smalltalk-lsp serve: {err}", file=sys.stderr)
            return 2
    ls = create_server()
    if args.log_level:
        ls.log_handler = logging_setup.configure(args.log_level)
    # pygls logs every message at INFO; keep its own records out of stderr noise.
    logging.getLogger("pygls").setLevel(logging.WARNING)
    logging_setup.quiet_answered_errors()
    if address is not None:
        ls.start_tcp(*address)
    else:
        ls.start_io()
    return 0
