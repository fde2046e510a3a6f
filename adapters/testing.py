"""Write real GGUF LoRA adapters for a base model, for tests and benchmarks.

Adapters are generated at test time (never committed as binaries) with the `gguf` package, in
the layout llama.cpp and PEFT use: `<base tensor>.lora_a` with numpy shape (r, in) and
`<base tensor>.lora_b` with numpy shape (out, r), `adapter.lora.alpha`, `general.type =
adapter`, `adapter.type = lora`. The random adapters are seeded, so the same arguments write the
same file; their effect is known in size: every adapted weight W (out, in) gets
scale * alpha / r * B @ A with entries of standard deviation about `strength` (scaled by 1/sqrt(in)
so that a layer's output moves by about `strength` times its input's RMS). Also writes broken
adapters for the validation tests: another architecture, a truncated file, wrong shapes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import gguf
import numpy as np

from server.engine.lora_validation import base_table

# Weights adapted by default: attention and MLP projections of every block.
DEFAULT_TARGETS = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")
_BLOCK = re.compile(r"^blk\.(\d+)\.([a-z_]+)\.weight$")


def lora_targets(
    base_model: str | Path,
    targets: Sequence[str] = DEFAULT_TARGETS,
    layers: Sequence[int] | None = None,
) -> list[tuple[str, int, int]]:
    """(base tensor name, in, out) of every 2-D block weight whose kind is in `targets`."""
    table = base_table(base_model)
    found = []
    for name, entry in table.tensors.items():
        match = _BLOCK.match(name)
        if not match or match.group(2) not in targets or len(entry.dims) != 2:
            continue
        if layers is not None and int(match.group(1)) not in layers:
            continue
        n_in, n_out = entry.dims
        found.append((name, int(n_in), int(n_out)))
    return sorted(found, key=lambda item: (int(item[0].split(".")[1]), item[0]))


def write_lora(
    path: str | Path,
    base_model: str | Path,
    *,
    rank: int = 4,
    seed: int = 0,
    strength: float = 0.5,
    alpha: float | None = None,
    targets: Sequence[str] = DEFAULT_TARGETS,
    layers: Sequence[int] | None = None,
    architecture: str | None = None,
    name: str | None = None,
    zero: bool = False,
) -> Path:
    """Write a seeded random rank-`rank` LoRA for `base_model` and return its path.

    `zero` writes B = 0 (an adapter with no effect). `architecture` overrides the one written
    into the file (the base model's by default), for refusal tests."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = base_table(base_model)
    arch = architecture or table.architecture or "unknown"
    alpha = float(rank) if alpha is None else alpha
    rng = np.random.default_rng(seed)
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
    writer.add_name(name or path.stem)
    weights = lora_targets(base_model, targets, layers)
    if not weights:
        raise ValueError(f"{base_model}: no weights named {list(targets)} to adapt")
    for tensor, n_in, n_out in weights:
        # A (r, in) ~ N(0, 1/in) keeps A @ x at the input's RMS; B (out, r) ~ N(0, s^2/r)
        # makes (B @ A) @ x about `strength` times the input's RMS per output.
        a = rng.normal(0.0, 1.0 / np.sqrt(n_in), size=(rank, n_in)).astype(np.float32)
        if zero:
            b = np.zeros((n_out, rank), dtype=np.float32)
        else:
            b = rng.normal(0.0, strength / np.sqrt(rank), size=(n_out, rank)).astype(np.float32)
        # llama.cpp scales B @ A by alpha / r; undo it so `strength` means the same at any rank.
        b *= rank / alpha
        writer.add_tensor(f"{tensor}.lora_a", a)
        writer.add_tensor(f"{tensor}.lora_b", b)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def write_truncated(path: str | Path, base_model: str | Path, keep: float = 0.6) -> Path:
    """A valid adapter cut to `keep` of its size (a partial download or copy)."""
    path = write_lora(path, base_model, rank=2, targets=("attn_q",), layers=[0, 1])
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: int(len(data) * keep)])
    return Path(path)


def write_wrong_architecture(path: str | Path, base_model: str | Path, arch: str = "llama") -> Path:
    """An adapter whose metadata names another architecture (tensors fit the base)."""
    return write_lora(path, base_model, rank=2, targets=("attn_q",), layers=[0], architecture=arch)


def write_wrong_shapes(path: str | Path, base_model: str | Path) -> Path:
    """An adapter for the right architecture whose lora_a has the wrong input width."""
    path = Path(path)
    table = base_table(base_model)
    tensor, n_in, n_out = lora_targets(base_model, ("attn_q",), [0])[0]
    writer = gguf.GGUFWriter(str(path), table.architecture or "unknown")
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, 2.0)
    writer.add_tensor(f"{tensor}.lora_a", np.zeros((2, n_in + 16), dtype=np.float32))
    writer.add_tensor(f"{tensor}.lora_b", np.zeros((n_out, 2), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
