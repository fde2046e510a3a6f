"""Helpers for the remote-engine tests: a real `llama_cpp.server` (llama-cpp-python's server
extra) on loopback, started, killed and restarted by the tests.

The server runs with flash attention on, as llama.cpp's own default does for the in-process
engine; with it off the arithmetic differs a little and greedy decoding of the small Gemma can
pick other tokens than in process.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

# The team server's key, given to the language server in this environment variable.
TEAM_KEY = "team-key-7f3a9c"
TEAM_KEY_ENV = "SMALLTALK_LSP_TEST_TEAM_KEY"
SERVER_THREADS = 2
SERVER_CTX = 4096
START_TIMEOUT_S = 240.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def model_entry(path: Path | str, alias: str, **extra: Any) -> dict[str, Any]:
    """One model of a llama_cpp.server config file."""
    return {
        "model": str(path),
        "model_alias": alias,
        "n_threads": SERVER_THREADS,
        "n_threads_batch": SERVER_THREADS,
        "n_ctx": SERVER_CTX,
        "flash_attn": True,
        # The server's default keeps logits for every prompt token (n_ctx x 262k floats on
        # Gemma 3): gigabytes nothing here reads.
        "logits_all": False,
        "verbose": False,
        **extra,
    }


class LlamaServer:
    """`python -m llama_cpp.server` on 127.0.0.1, its output in a log file. With one model the
    command line names it; several models (adapters as model aliases) go in a config file."""

    def __init__(
        self,
        folder: Path,
        models: list[dict[str, Any]],
        api_key: str | None = None,
        port: int | None = None,
    ) -> None:
        self.folder = folder
        self.port = port or free_port()
        self.api_key = api_key
        self.log = folder / f"llama-server-{self.port}.log"
        server = {"host": "127.0.0.1", "port": self.port, "interrupt_requests": False}
        # Several editors share one server: a waiting request must not cut a running one
        # short (interrupt_requests).
        if api_key:
            server["api_key"] = api_key
        if len(models) == 1:
            self.args = [f"--{k}={v}" for k, v in {**server, **models[0]}.items()]
        else:
            config = folder / f"llama-server-{self.port}.json"
            config.write_text(json.dumps({**server, "models": models}, indent=2))
            self.args = ["--config_file", str(config)]
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait: bool = True) -> LlamaServer:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "llama_cpp.server", *self.args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> None:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"llama_cpp.server exited: {self.log.read_text()[-2000:]}")
            try:
                answer = httpx.get(f"{self.url}/v1/models", headers=headers, timeout=5)
                if answer.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        raise AssertionError(f"llama_cpp.server did not start: {self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        """SIGKILL: the server dies mid-request, as a crash or an OOM kill would."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


def plain_server(
    folder: Path, model: Path | str, alias: str, port: int | None = None,
    threads: int = SERVER_THREADS,
) -> LlamaServer:
    """A one-model server: `python -m llama_cpp.server --model=... --port=... --n_threads=2`."""
    entry = model_entry(model, alias, n_threads=threads, n_threads_batch=threads)
    return LlamaServer(folder, [entry], port=port)


def remote_options(
    coder: str | None,
    reasoner: str | None = None,
    coder_extra: dict[str, Any] | None = None,
    reasoner_extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Settings that point the roles at servers (models "gemma3-270m" and "smollm2-135m");
    a role without a server is off."""
    backends: dict[str, Any] = {}
    models: dict[str, Any] = {}
    for role, url, name, extra, setting in (
        ("coder", coder, "gemma3-270m", coder_extra, "code_generation"),
        ("reasoner", reasoner, "smollm2-135m", reasoner_extra, "reasoning"),
    ):
        if url:
            backends[role] = {"backend": "remote", "base_url": url, "model": name, **(extra or {})}
        # The local copy of what the server runs (its FIM tokens and chat template).
        models[setting] = name if url else "off"
    return {"backends": backends, "models": models}
