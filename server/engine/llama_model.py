"""Loading GGUF models into llama.cpp (through llama-cpp-python's low-level API).

One `LoadedModel` per file: roles that name the same file share it (one set of weights) and
each gets its own context (server.engine.session). llama.cpp's own log goes to a named logger; it
never writes to stdout, which belongs to the LSP stream.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from pathlib import Path
from typing import Any

from server.engine.gguf_info import GGUFError, GGUFInfo, read_gguf
from server.engine.lora import ModelAdapters
from server.engine.types import FimTokens

log = logging.getLogger(__name__)
llama_log = logging.getLogger("server.engine.llama_cpp")
# llama.cpp's debug output (graph details, every tensor) would drown a debug log; lower this
# logger's level explicitly to see it.
llama_log.setLevel(logging.INFO)

_init_lock = threading.Lock()
_initialised = False
_log_callback: Any = None  # kept referenced: llama.cpp calls it for the life of the process


# What llama.cpp logs as errors when the abort callback stopped a decode.
_ABORT_SIGNS = (
    "compute status: 1",
    "failed with error 1",
    "ret = 2",
    "removing memory module entries",
)


class ModelLoadError(RuntimeError):
    """A model could not be loaded; the message names the file and the problem."""


def llama() -> Any:
    """The llama_cpp module, initialised once with logging routed to `llama_log`."""
    global _initialised, _log_callback
    import llama_cpp

    with _init_lock:
        if not _initialised:
            # Importing llama_cpp installs a callback that prints to stderr; ours replaces it.
            # ggml levels: 1 debug, 2 info, 3 warn, 4 error, 5 continues the previous line.
            # Its warnings are mostly notes about the model file; they stay out of the way.
            levels = {3: logging.INFO, 4: logging.ERROR}
            last = [logging.DEBUG]

            @llama_cpp.llama_log_callback
            def _route(level: int, text: bytes, _user: Any) -> None:
                py_level = last[0] if level == 5 else levels.get(level, logging.DEBUG)
                last[0] = py_level
                message = text.decode("utf-8", errors="replace").rstrip()
                if any(sign in message for sign in _ABORT_SIGNS):
                    py_level = logging.DEBUG  # a cancelled request, not a failure
                if message:
                    llama_log.log(py_level, "%s", message)

            _log_callback = _route
            llama_cpp.llama_log_set(_route, ctypes.c_void_p(0))
            llama_cpp.llama_backend_init()
            _initialised = True
    return llama_cpp


class LoadedModel:
    """A llama_model and its vocabulary. Read-only after loading, so contexts on several
    threads may share it."""

    def __init__(self, path: Path, info: GGUFInfo, model: Any, mmap: bool, mlock: bool) -> None:
        self.path = path
        self.info = info
        self.ptr = model
        self.mmap = mmap
        self.mlock = mlock
        lib = llama()
        self.vocab = lib.llama_model_get_vocab(model)
        self.n_vocab = lib.llama_vocab_n_tokens(self.vocab)
        self.n_ctx_train = lib.llama_model_n_ctx_train(model)
        self.add_bos = bool(lib.llama_vocab_get_add_bos(self.vocab))
        self.fim = self._fim_tokens()
        self._closed = False
        # LoRA adapters loaded into these weights, shared by every context on them.
        self.adapters = ModelAdapters(model, path)

    @property
    def model_id(self) -> str:
        return self.path.name

    def _fim_tokens(self) -> FimTokens | None:
        """FIM token texts from the model's own vocabulary (llama.cpp finds them by GGUF id
        or by their usual names); None for models without FIM."""
        lib = llama()
        ids = (
            lib.llama_vocab_fim_pre(self.vocab),
            lib.llama_vocab_fim_suf(self.vocab),
            lib.llama_vocab_fim_mid(self.vocab),
        )
        if any(token < 0 for token in ids):
            return None
        pre, suf, mid = (self.piece(token, special=True).decode("utf-8") for token in ids)
        rep, sep = (
            self.piece(token, special=True).decode("utf-8") if token >= 0 else ""
            for token in (lib.llama_vocab_fim_rep(self.vocab), lib.llama_vocab_fim_sep(self.vocab))
        )
        return FimTokens(prefix=pre, suffix=suf, middle=mid, repo_name=rep, file_sep=sep)

    def tokenize(self, text: str, add_bos: bool, special: bool) -> list[int]:
        lib = llama()
        data = text.encode("utf-8")
        capacity = len(data) + 16
        buf = (lib.llama_token * capacity)()
        n = lib.llama_tokenize(self.vocab, data, len(data), buf, capacity, add_bos, special)
        if n < 0:
            capacity = -n
            buf = (lib.llama_token * capacity)()
            n = lib.llama_tokenize(self.vocab, data, len(data), buf, capacity, add_bos, special)
        if n < 0:
            raise RuntimeError(f"cannot tokenize a prompt of {len(data)} bytes")
        return list(buf[:n])

    def piece(self, token: int, special: bool = False) -> bytes:
        lib = llama()
        buf = ctypes.create_string_buffer(64)
        n = lib.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, special)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = lib.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, special)
        return buf.raw[: max(n, 0)]

    def is_eog(self, token: int) -> bool:
        return bool(llama().llama_vocab_is_eog(self.vocab, token))

    def chat_template(self) -> str | None:
        raw = llama().llama_model_chat_template(self.ptr, None)
        return raw.decode("utf-8") if raw else None

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            # Before the model: llama.cpp frees its adapters with it (a later free would be
            # a double free).
            self.adapters.close()
            llama().llama_model_free(self.ptr)


def check_model_file(path: Path) -> GGUFInfo:
    """Read the GGUF header; ModelLoadError names the file and the problem."""
    try:
        info = read_gguf(path)
    except GGUFError as err:
        raise ModelLoadError(str(err)) from err
    if info.file_type != "model":
        raise ModelLoadError(f"{path}: is a GGUF {info.file_type}, not a model")
    return info


def load_model(path: Path, mmap: bool = True, mlock: bool = False) -> LoadedModel:
    info = check_model_file(path)
    lib = llama()
    params = lib.llama_model_default_params()
    params.use_mmap = mmap
    params.use_mlock = mlock
    log.info("loading %s (%s, %s)", path, info.architecture, info.quantization)
    model = lib.llama_model_load_from_file(str(path).encode("utf-8"), params)
    if not model:
        raise ModelLoadError(
            f"{path}: llama.cpp could not load this model (architecture "
            f"'{info.architecture}'; see the log for details)"
        )
    return LoadedModel(path, info, model, mmap, mlock)
