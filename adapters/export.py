"""A PEFT LoRA (the train stage's `adapter/` folder) -> a GGUF LoRA that llama.cpp loads on the
quantized base, with its manifest, into an adapters folder the server watches.

PEFT names map to GGUF tensor names (`model.layers.3.self_attn.q_proj` -> `blk.3.attn_q.weight`;
`lora_A` -> `.lora_a`, `lora_B` -> `.lora_b`, shapes unchanged: numpy (r, in) and (out, r)), and
every pair is checked against the base GGUF's tensor before anything is written. llama.cpp
scales B @ A by `adapter.lora.alpha` / r, as PEFT does (rsLoRA and DoRA are refused). The file
is written next to its target and renamed into place, so the server never sees half a file.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import gguf
import numpy as np
from pydantic import BaseModel

from server.engine.lora_validation import AdapterError, AdapterInfo, base_table, validate_adapter
from server.lora.manifest import AdapterManifest, write_manifest

log = logging.getLogger(__name__)

_PEFT_KEY = re.compile(
    r"(?:^|\.)layers\.(\d+)\.(self_attn|mlp)\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|"
    r"down_proj)\.lora_([AB])(?:\.default)?\.weight$"
)
GGUF_NAMES = {
    "q_proj": "attn_q",
    "k_proj": "attn_k",
    "v_proj": "attn_v",
    "o_proj": "attn_output",
    "gate_proj": "ffn_gate",
    "up_proj": "ffn_up",
    "down_proj": "ffn_down",
}


class ExportError(ValueError):
    """The adapter cannot be exported; the message names the tensor or setting."""


class ExportResult(BaseModel):
    path: str
    manifest: str
    name: str
    architecture: str
    rank: int
    alpha: float
    tensors: int
    bytes: int


def gguf_name(peft_key: str) -> tuple[str, str]:
    """(`blk.N.attn_q.weight`, "lora_a"|"lora_b") for a PEFT LoRA weight name."""
    match = _PEFT_KEY.search(peft_key)
    if match is None:
        raise ExportError(
            f"PEFT tensor '{peft_key}' has no GGUF counterpart (only the attention and MLP "
            f"projections {sorted(GGUF_NAMES)} can be exported)"
        )
    layer, _, module, part = match.groups()
    return f"blk.{layer}.{GGUF_NAMES[module]}.weight", f"lora_{part.lower()}"


def read_peft(adapter_dir: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    adapter_dir = Path(adapter_dir)
    config_path = adapter_dir / "adapter_config.json"
    weights_path = adapter_dir / "adapter_model.safetensors"
    if not config_path.is_file() or not weights_path.is_file():
        raise ExportError(
            f"{adapter_dir}: not a PEFT adapter (needs adapter_config.json and "
            "adapter_model.safetensors; the train stage writes them into <run>/adapter)"
        )
    from safetensors.numpy import load_file

    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
        weights = load_file(str(weights_path))
    except (OSError, ValueError) as err:
        raise ExportError(f"{adapter_dir}: cannot read the PEFT adapter: {err}") from err
    return config, weights


def convert(config: dict[str, Any], weights: dict[str, np.ndarray], base_gguf: Path
            ) -> tuple[dict[str, np.ndarray], int, float]:
    """GGUF tensors of a PEFT LoRA, checked against the base; (tensors, rank, alpha)."""
    if config.get("peft_type", "LORA") != "LORA":
        raise ExportError(f"only LoRA adapters export, this one is {config.get('peft_type')}")
    if config.get("use_rslora") or config.get("use_dora"):
        raise ExportError("rsLoRA and DoRA scale differently from llama.cpp's LoRA; retrain "
                          "without them")
    rank = int(config.get("r", 0))
    alpha = float(config.get("lora_alpha", rank))
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        raise ExportError("per-module ranks or alphas (rank_pattern/alpha_pattern) do not "
                          "export: llama.cpp has one alpha per adapter")
    table = base_table(base_gguf)
    tensors: dict[str, np.ndarray] = {}
    for key, value in sorted(weights.items()):
        base_name, part = gguf_name(key)
        array = np.ascontiguousarray(value, dtype=np.float32)
        base = table.tensors.get(base_name)
        if base is None:
            raise ExportError(f"{key} -> {base_name}: the base model {base_gguf.name} has no "
                              "such tensor (was the adapter trained on another model?)")
        n_in, n_out = base.dims[0], base.dims[1]
        want = (rank, n_in) if part == "lora_a" else (n_out, rank)
        if array.shape != want:
            raise ExportError(f"{key}: shape {array.shape}, but {base_name} in the base model "
                              f"needs {part} of shape {want} (rank {rank})")
        tensors[f"{base_name}.{part}"] = array
    if not tensors:
        raise ExportError("the PEFT adapter holds no LoRA weights")
    for name in tensors:
        pair = name[:-1] + ("b" if name.endswith("a") else "a")
        if pair not in tensors:
            raise ExportError(f"{name} has no matching {pair}")
    return tensors, rank, alpha


def write_gguf(path: Path, tensors: dict[str, np.ndarray], architecture: str, alpha: float,
               name: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        writer = gguf.GGUFWriter(str(tmp), architecture)
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
        writer.add_name(name)
        for tensor_name, array in tensors.items():
            writer.add_tensor(tensor_name, array)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def export_adapter(
    adapter_dir: Path,
    base_gguf: Path,
    out_dir: Path,
    name: str,
    description: str = "",
    base_model: str | None = None,
    training: dict[str, Any] | None = None,
) -> ExportResult:
    """Convert, check, write `<out_dir>/<name>.gguf` and its manifest; validate the result as
    the server will."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise ExportError(f"adapter name '{name}': use letters, digits, '.', '_' and '-'")
    base_gguf = Path(base_gguf)
    config, weights = read_peft(Path(adapter_dir))
    try:
        architecture = base_table(base_gguf).architecture
    except AdapterError as err:
        raise ExportError(f"cannot read the base model: {err}") from err
    if not architecture:
        raise ExportError(f"{base_gguf}: no general.architecture")
    tensors, rank, alpha = convert(config, weights, base_gguf)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.gguf"
    write_gguf(path, tensors, architecture, alpha, name)
    try:
        info = validate_adapter(path, base_gguf)
    except AdapterError as err:
        path.unlink(missing_ok=True)
        raise ExportError(f"the exported adapter failed validation: {err}") from err
    manifest = _write_manifest(path, info, base_model or base_gguf.name, description, training)
    return ExportResult(
        path=str(path),
        manifest=str(manifest),
        name=name,
        architecture=architecture,
        rank=rank,
        alpha=alpha,
        tensors=len(tensors),
        bytes=path.stat().st_size,
    )


def _write_manifest(path: Path, info: AdapterInfo, base_model: str, description: str,
                    training: dict[str, Any] | None) -> Path:
    manifest = AdapterManifest(
        name=path.stem,
        base_model=base_model,
        base_architecture=info.architecture,
        purpose="completion",
        description=description,
        training=training or {},
    )
    return write_manifest(path, manifest)


def export_run(
    run_dir: Path,
    name: str | None = None,
    out_dir: Path | None = None,
    base: str | None = None,
    description: str = "",
) -> ExportResult:
    """Export a finished train run: base GGUF, project and training facts from its train.json;
    by default into the project's `.smalltalk-lsp/adapters/` under the project's name."""
    from adapters.train import ADAPTER_DIR, RESULT_FILE, TrainResult
    from server.engine.embedded import resolve_model_path

    run_dir = Path(run_dir)
    try:
        result = TrainResult.model_validate_json((run_dir / RESULT_FILE).read_text("utf-8"))
    except (OSError, ValueError) as err:
        raise ExportError(f"{run_dir}: not a finished train run ({RESULT_FILE}: {err})") from err
    if base is not None:
        base_gguf = resolve_model_path(base)
    elif result.base_gguf:
        base_gguf = Path(result.base_gguf)
    else:
        raise ExportError(f"{run_dir} was trained from a Hugging Face checkpoint; give the GGUF "
                          "of the same model that the server runs (--base)")
    project = Path(result.project)
    name = name or _safe_name(project.name)
    losses = result.losses
    training = {
        "dataset": result.dataset,
        "steps": result.steps,
        "rank": result.config.get("rank"),
        "alpha": result.config.get("alpha"),
        "target_modules": result.config.get("target_modules"),
        "learning_rate": result.config.get("learning_rate"),
        "max_seq_len": result.config.get("max_seq_len"),
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "examples": result.examples,
    }
    return export_adapter(
        run_dir / ADAPTER_DIR,
        base_gguf,
        out_dir or project / ".smalltalk-lsp" / "adapters",
        name,
        description=description or f"conventions of {project.name}",
        base_model=result.base_model,
        training=training,
    )


def _safe_name(text: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "project"
    return cleaned if cleaned[0].isalnum() else f"a{cleaned}"
