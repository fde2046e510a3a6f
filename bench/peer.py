"""Where the benchmarks find the default coder's GGUF and the peer (llama-server).

The coder is the embedded default, assembled and verified by the server itself. llama-server is
built once by `../shared/tools/build-llama-server.sh` from the llama.cpp our llama-cpp-python
vendors (about 5 minutes on 2 cores; it prints the binary's path and builds nothing when the
binary exists); `LLAMA_SERVER` names another binary.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from server.engine.embedded import resolve_model_path

ROOT = Path(__file__).resolve().parent.parent
BUILD_SCRIPT = ROOT.parent / "shared" / "tools" / "build-llama-server.sh"
DEFAULT_CODER = "qwen2.5-coder-0.5b"


def default_coder_path() -> Path:
    """The default coder's GGUF (assembled from its part packages if needed)."""
    return resolve_model_path(DEFAULT_CODER)


def llama_server() -> Path | None:
    """The peer's binary: `LLAMA_SERVER`, else the one the shared build script builds."""
    named = os.environ.get("LLAMA_SERVER")
    if named:
        return Path(named)
    if not BUILD_SCRIPT.is_file():
        return None
    done = subprocess.run(["bash", str(BUILD_SCRIPT), sys.executable],
                          capture_output=True, text=True, check=False)
    path = Path(done.stdout.strip().splitlines()[-1]) if done.stdout.strip() else None
    return path if path is not None and path.is_file() else None
