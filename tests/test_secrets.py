"""The remote backend's API key: read from the environment or a file, and never in a log, a
message, a status, a note, an error or `doctor` output, even when the remote server echoes it
back in its error bodies (a hostile or badly written server)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import pytest_lsp
from lsp_support import copy_sample, record_status, start_session, wait_for
from pytest_lsp import ClientServerConfig, LanguageClient

from server import secrets
from server.actions.notes import write_note

KEY = "sk-test-5ecret-9d2f71c0"
ENV_KEY = "sk-env-5ecret-a41b"
STDERR = Path(tempfile.mkdtemp(prefix="secrets-")) / "server.stderr"
SERVER = ClientServerConfig(
    server_command=["bash", "-c", f'exec "{sys.executable}" -m server serve 2>"{STDERR}"'],
    server_env={**os.environ, "SMALLTALK_LSP_LOG_LEVEL": "DEBUG",
                "XDG_DATA_HOME": tempfile.mkdtemp(prefix="secrets-data-")},
)


# --- reading and redacting ------------------------------------------------------------------


def test_the_key_comes_from_the_environment_or_a_file(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ST_TEST_KEY", ENV_KEY)
    assert secrets.read_api_key("ST_TEST_KEY", "", "backends.coder") == ENV_KEY
    key_file = tmp_path / "coder.key"
    key_file.write_text(KEY + "\n")
    key_file.chmod(0o600)
    assert secrets.read_api_key("", str(key_file), "backends.coder") == KEY
    assert secrets.read_api_key("", "", "backends.coder") is None
    with pytest.raises(secrets.SecretError, match="ST_MISSING_KEY.*is not set"):
        secrets.read_api_key("ST_MISSING_KEY", "", "backends.coder")
    with pytest.raises(secrets.SecretError, match="cannot read the key file") as err:
        secrets.read_api_key("", str(tmp_path / "absent.key"), "backends.coder")
    assert KEY not in str(err.value)


def test_registered_keys_are_redacted_everywhere(tmp_path, caplog) -> None:
    secrets.register(KEY)
    assert secrets.redact(f"Bearer {KEY} refused") == "Bearer [redacted] refused"
    record = logging.LogRecord("server.x", logging.ERROR, __file__, 1, "key %s", (KEY,), None)
    try:
        raise RuntimeError(f"auth failed for {KEY}")
    except RuntimeError:
        record.exc_info = sys.exc_info()
    secrets.RedactingFilter().filter(record)
    text = logging.Formatter().format(record)
    assert KEY not in text and "[redacted]" in text and "auth failed" in text
    note = write_note(tmp_path, "explain", "Foo", "k", f"the model said {KEY}")
    assert KEY not in note.read_text()


# --- end to end: a server that echoes the key -------------------------------------------------


class _Echo(BaseHTTPRequestHandler):
    """Refuses every request, echoing the Authorization header it got in the error body."""

    def _refuse(self) -> None:
        echoed = self.headers.get("Authorization", "")
        body = json.dumps({"error": {"message": f"invalid key: {echoed}"}}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = _refuse
    do_POST = _refuse

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def echo_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def key_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "coder.key"
    path.write_text(KEY + "\n")
    path.chmod(0o600)
    return path


@pytest_lsp.fixture(scope="module", config=SERVER)
async def client(lsp_client: LanguageClient, tmp_path_factory, echo_server, key_file):
    record_status(lsp_client, repr)
    root = copy_sample("tonel", tmp_path_factory.mktemp("secrets"))
    options = {
        "backends": {"coder": {"backend": "remote", "base_url": echo_server,
                               "model": "gemma3-270m", "api_key_file": str(key_file),
                               "retry_max_s": 1.0}},
        "models": {"reasoning": "off"},
        "retrieval": {"enabled": False},
        "actions": {"hover_summaries": False},
    }
    await start_session(lsp_client, root, options)
    yield
    await lsp_client.shutdown_session()


@pytest.mark.asyncio(loop_scope="module")
async def test_the_key_never_leaves_the_server(client: LanguageClient, echo_server) -> None:
    await wait_for(
        lambda: any("refused the API key" in m.message for m in client.log_messages),
        "the refusal", timeout=60,
    )
    statuses: list[str] = client.statuses  # type: ignore[attr-defined]
    await wait_for(lambda: any("failed" in s for s in statuses), "the failed status")
    shown = [m.message for m in client.messages]
    logged = [m.message for m in client.log_messages]
    everything = "\n".join(shown + logged + statuses + [STDERR.read_text()])
    assert "invalid key: Bearer [redacted]" in everything  # the echo arrived, redacted
    assert KEY not in everything


def test_doctor_output_has_no_key(tmp_path, key_file, echo_server) -> None:
    (tmp_path / "smalltalk-lsp.toml").write_text(
        f'[backends.coder]\nbackend = "remote"\nbase_url = "{echo_server}"\n'
        f'api_key_file = "{key_file}"\n'
    )
    result = subprocess.run(
        [sys.executable, "-m", "server", "doctor", "--root", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    assert KEY not in result.stdout + result.stderr
    assert result.stdout.strip()
