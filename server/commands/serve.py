"""`smalltalk-lsp serve`: run the language server over stdio (default) or TCP."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import socket
import sys

HELP = "run the language server (stdio by default)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tcp",
        metavar="HOST:PORT",
        help="listen on a TCP socket instead of stdio (e.g. 127.0.0.1:2087); only loopback "
        "addresses unless --allow-remote-connections",
    )
    parser.add_argument(
        "--allow-remote-connections",
        action="store_true",
        help="let --tcp listen on an address other machines can reach: anyone who connects "
        "can read the workspace's sources and run its models (there is no authentication)",
    )
    parser.add_argument(
        "--trust-workspace",
        action="store_true",
        help="trust every workspace root: load the model and adapter files it names or holds "
        "(see README, Security)",
    )
    parser.add_argument("--stdio", action="store_true", help="use stdio (the default)")
    parser.add_argument(
        "--log-level",
        default=None,
        help="level of the log sent to the client and stderr (default INFO, or "
        "$SMALLTALK_LSP_LOG_LEVEL)",
    )


def parse_address(value: str, allow_remote: bool = False) -> tuple[str, int]:
    """(host, port) of `--tcp`; ValueError for a malformed value or, without `allow_remote`,
    a host that is not a loopback address."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"--tcp wants HOST:PORT, got {value!r}")
    host = host.strip("[]") or "127.0.0.1"
    if not allow_remote and not is_loopback(host):
        raise ValueError(
            f"--tcp {value}: {host} is reachable from other machines, and anyone who connects "
            "can read the workspace's sources and run its models; listen on 127.0.0.1, or add "
            "--allow-remote-connections to mean it"
        )
    return host, int(port)


def is_loopback(host: str) -> bool:
    """True if every address `host` names is a loopback address (127.0.0.0/8, ::1)."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    addresses = {info[4][0] for info in infos}
    return bool(addresses) and all(ipaddress.ip_address(a).is_loopback for a in addresses)


def run(args: argparse.Namespace) -> int:
    from server import logging_setup
    from server.lsp import create_server

    address = None
    if args.tcp:
        try:
            address = parse_address(args.tcp, args.allow_remote_connections)
        except ValueError as err:
            print(f"smalltalk-lsp serve: {err}", file=sys.stderr)
            return 2
    ls = create_server()
    ls.trust_workspace = args.trust_workspace
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
