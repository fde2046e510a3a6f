"""Load GGUF files the way the server does, in a process of its own (the fuzz test's probe).

Run as `python tests/gguf_probe.py BASE_MODEL`; reads one JSON request per line on stdin,
{"kind": "model" | "adapter", "path": ...}, and answers one JSON line each on stdout:
{"status": "refused", "message": ...} when the server's checks (or llama.cpp) refuse the file,
{"status": "generated", "tokens": n} when it loaded and generated. A model is checked and loaded
through server.engine.llama_model (check first, llama.cpp only after); an adapter is checked and
loaded into BASE_MODEL through its ModelAdapters, then used for a generation ("raw-model" and
"raw-adapter" skip the checks: the benchmark's comparison). If llama.cpp
crashes on a file, this process dies and the test sees it; the test's own process does not.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from server.engine.gguf_info import GGUFInfo
from server.engine.llama_model import LoadedModel, ModelLoadError, llama, load_model
from server.engine.lora import AdapterError, AdapterLoadError
from server.engine.session import LlamaSession
from server.engine.types import CancelToken, GenerateParams

PROMPT = "Object subclass: #Account"


def generate(model: LoadedModel, adapters: tuple[tuple[str, float], ...] = ()) -> int:
    session = LlamaSession(model, n_ctx=128, n_batch=32, n_threads=1)
    try:
        params = GenerateParams(max_tokens=4, adapters=adapters)
        result = session.generate(PROMPT, params, CancelToken())
        if result.error:
            raise RuntimeError(result.error)
        return result.generated_tokens
    finally:
        session.close()


def probe_model(path: Path) -> dict[str, Any]:
    try:
        model = load_model(path)
    except ModelLoadError as err:
        return {"status": "refused", "message": str(err)}
    try:
        return {"status": "generated", "tokens": generate(model)}
    finally:
        model.close()


def probe_adapter(base: LoadedModel, path: Path) -> dict[str, Any]:
    try:
        base.adapters.load("probe", path)
    except (AdapterError, AdapterLoadError) as err:
        return {"status": "refused", "message": str(err)}
    try:
        return {"status": "generated", "tokens": generate(base, (("probe", 1.0),))}
    finally:
        base.adapters.unload("probe")


def probe_unchecked(base: LoadedModel | None, kind: str, path: Path) -> dict[str, Any]:
    """The same load without the server's checks: straight into llama.cpp (the benchmark's
    comparison)."""
    lib = llama()
    if kind == "raw-adapter":
        assert base is not None
        ptr = lib.llama_adapter_lora_init(base.ptr, str(path).encode("utf-8"))
        if not ptr:
            return {"status": "refused", "message": "llama.cpp refused the adapter"}
        lib.llama_adapter_lora_free(ptr)
        return {"status": "generated", "tokens": 0}
    params = lib.llama_model_default_params()
    ptr = lib.llama_model_load_from_file(str(path).encode("utf-8"), params)
    if not ptr:
        return {"status": "refused", "message": "llama.cpp refused the model"}
    model = LoadedModel(path, GGUFInfo(path=str(path), file_size=0, version=0), ptr, True, False)
    try:
        return {"status": "generated", "tokens": generate(model)}
    finally:
        model.close()


def main() -> int:
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    # Answers go to the original stdout; anything llama.cpp prints goes to stderr.
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    base: LoadedModel | None = None
    for line in sys.stdin:
        request = json.loads(line)
        path = Path(request["path"])
        kind = request["kind"]
        if kind in ("adapter", "raw-adapter") and base is None:
            base = load_model(Path(sys.argv[1]))
        if kind == "model":
            answer = probe_model(path)
        elif kind == "adapter":
            assert base is not None
            answer = probe_adapter(base, path)
        else:
            answer = probe_unchecked(base, kind, path)
        print(json.dumps(answer), file=answers, flush=True)
    if base is not None:
        base.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
