"""`smalltalk-lsp serve --tcp`: loopback only, unless other interfaces are allowed explicitly
(anyone who connects can read the workspace's sources and run its models)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from server.commands.serve import is_loopback, parse_address


def test_loopback_addresses_are_accepted() -> None:
    assert parse_address("127.0.0.1:2087") == ("127.0.0.1", 2087)
    assert parse_address(":2087") == ("127.0.0.1", 2087)
    assert parse_address("[::1]:2087") == ("::1", 2087)
    assert parse_address("localhost:2087") == ("localhost", 2087)
    assert is_loopback("127.0.0.5") and not is_loopback("10.0.0.1")


@pytest.mark.parametrize("value", ["0.0.0.0:2087", "[::]:2087", "192.168.1.20:2087"])
def test_other_interfaces_need_the_explicit_option(value: str) -> None:
    with pytest.raises(ValueError, match="--allow-remote-connections"):
        parse_address(value)
    host, port = parse_address(value, allow_remote=True)
    assert port == 2087 and host in value


@pytest.mark.parametrize("value", ["2087", "host:", "host:99999", "host:http"])
def test_malformed_addresses_are_refused(value: str) -> None:
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_address(value)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_refuses_all_interfaces_and_listens_on_loopback() -> None:
    port = _free_port()
    refused = subprocess.run(
        [sys.executable, "-m", "server", "serve", "--tcp", f"0.0.0.0:{port}"],
        capture_output=True, text=True, timeout=60,
    )
    assert refused.returncode == 2
    assert "reachable from other machines" in refused.stderr
    assert "--allow-remote-connections" in refused.stderr
    server = subprocess.Popen(
        [sys.executable, "-m", "server", "serve", "--tcp", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert server.poll() is None, "the server exited"
                assert time.monotonic() < deadline, "the server never listened"
                time.sleep(0.1)
    finally:
        server.terminate()
        server.wait(30)
