"""Check a GGUF LoRA adapter before llama.cpp sees it, against the base model it is meant for.

llama.cpp refuses a bad adapter with a log line and a NULL pointer; here each check has a name
and a message that says what is wrong (a truncated file, another architecture, a tensor the
base does not have, a rank or width that does not fit), so the user can fix the file while the
base model keeps serving.

The GGUF file itself (header, lengths, tensor table and offsets) is read and checked by the one
reader models use too, server.engine.gguf_check. Shapes are in ggml order (ne0 first), as llama.cpp
compares them: a base weight is (in, out), `lora_a` is (in, r) and `lora_b` is (r, out), i.e.
numpy (r, in) and (out, r) as PEFT's `lora_A` / `lora_B`.
"""

from __future__ import annotations

import threading
from pathlib import Path

from pydantic import BaseModel, Field

from server.engine.gguf_check import GGUFCheckError, GGUFTable, TensorEntry, read_checked

# Names of the checks, in the order they run; AdapterError.check is one of them.
CHECKS = ("file", "gguf", "type", "lora", "tensors", "architecture", "names", "shapes")

TOKEN_EMBD = "token_embd.weight"


class AdapterError(ValueError):
    """An adapter failed a check; `check` names it (see CHECKS) and the message says why."""

    def __init__(self, path: str | Path, check: str, detail: str) -> None:
        super().__init__(f"{path}: {check} check failed: {detail}")
        self.path = str(path)
        self.check = check
        self.detail = detail


def read_table(path: str | Path) -> GGUFTable:
    """Read and check a GGUF file with the one reader (server.engine.gguf_check); AdapterError
    "file" if it is missing or unreadable, "gguf" naming the failed GGUF check otherwise."""
    try:
        return read_checked(path)
    except GGUFCheckError as err:
        check = "file" if err.check == "file" else "gguf"
        detail = err.detail if check == "file" else f"{err.check}: {err.detail}"
        raise AdapterError(path, check, detail) from err


# --- base models ------------------------------------------------------------------------------

_base_lock = threading.Lock()
_base_cache: dict[tuple[str, int, int], GGUFTable] = {}


def base_table(path: str | Path) -> GGUFTable:
    """The tensor table of a base model, read once per file version (path, size, mtime)."""
    path = Path(path).resolve()
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    with _base_lock:
        table = _base_cache.get(key)
    if table is None:
        table = read_table(path)
        with _base_lock:
            _base_cache[key] = table
    return table


# --- adapters ---------------------------------------------------------------------------------


class LoraPair(BaseModel):
    base_tensor: str
    a_dims: tuple[int, ...]
    b_dims: tuple[int, ...]

    @property
    def rank(self) -> int:
        # token_embd's A is a lookup table (r, n_vocab) in ggml order; elsewhere A is (in, r).
        if self.base_tensor == TOKEN_EMBD:
            return self.a_dims[0]
        return self.a_dims[1] if len(self.a_dims) > 1 else 0


class AdapterInfo(BaseModel):
    """What a checked adapter file holds."""

    path: str
    file_size: int
    architecture: str
    alpha: float | None = None
    # general.name of the adapter, if it has one.
    title: str | None = None
    pairs: list[LoraPair] = Field(default_factory=list)
    tensor_bytes: int = 0

    @property
    def ranks(self) -> list[int]:
        return sorted({pair.rank for pair in self.pairs})


def inspect_adapter(path: str | Path) -> AdapterInfo:
    """The checks that need no base model: a readable GGUF file, `general.type = adapter`,
    `adapter.type = lora`, and a `.lora_a` / `.lora_b` pair of 2-D tensors of equal rank for
    every adapted weight. Raises AdapterError naming the failed check."""
    table = read_table(path)
    where = table.path
    meta = table.metadata
    gtype = meta.get("general.type")
    if gtype != "adapter":
        raise AdapterError(where, "type", f"general.type is {gtype!r}, expected 'adapter'")
    atype = meta.get("adapter.type")
    if atype != "lora":
        raise AdapterError(where, "lora", f"adapter.type is {atype!r}, expected 'lora'")
    arch = table.architecture
    if not arch:
        raise AdapterError(where, "architecture", "general.architecture is missing")
    pairs: dict[str, dict[str, TensorEntry]] = {}
    for name, entry in table.tensors.items():
        base, dot, part = name.rpartition(".")
        if not dot or part not in ("lora_a", "lora_b"):
            raise AdapterError(where, "tensors", f"tensor '{name}' is not a .lora_a/.lora_b tensor")
        pairs.setdefault(base, {})[part] = entry
    if not pairs:
        raise AdapterError(where, "tensors", "the file holds no LoRA tensors")
    result: list[LoraPair] = []
    for base, parts in sorted(pairs.items()):
        missing = {"lora_a", "lora_b"} - parts.keys()
        if missing:
            raise AdapterError(where, "tensors", f"'{base}' has no .{missing.pop()} tensor")
        a, b = parts["lora_a"], parts["lora_b"]
        if len(a.dims) != 2 or len(b.dims) != 2:
            raise AdapterError(where, "tensors", f"'{base}' LoRA tensors must be 2-D")
        rank_a = a.dims[0] if base == TOKEN_EMBD else a.dims[1]
        if rank_a != b.dims[0]:
            raise AdapterError(
                where,
                "tensors",
                f"'{base}': lora_a has rank {rank_a} but lora_b has rank {b.dims[0]} "
                f"(numpy shapes {_np(a.dims)} and {_np(b.dims)})",
            )
        result.append(LoraPair(base_tensor=base, a_dims=a.dims, b_dims=b.dims))
    alpha = meta.get("adapter.lora.alpha")
    title = meta.get("general.name")
    return AdapterInfo(
        path=where,
        file_size=table.file_size,
        architecture=arch,
        alpha=float(alpha) if isinstance(alpha, int | float) else None,
        title=str(title) if title is not None else None,
        pairs=result,
        tensor_bytes=sum(entry.n_bytes for entry in table.tensors.values()),
    )


def check_against_base(info: AdapterInfo, base: GGUFTable) -> None:
    """Architecture, tensor names and shapes against the base model; AdapterError if not."""
    where = info.path
    if base.architecture != info.architecture:
        raise AdapterError(
            where,
            "architecture",
            f"adapter is for '{info.architecture}', the base model "
            f"{Path(base.path).name} is '{base.architecture}'",
        )
    for pair in info.pairs:
        weight = base.tensors.get(pair.base_tensor)
        if weight is None:
            raise AdapterError(
                where,
                "names",
                f"the base model {Path(base.path).name} has no tensor '{pair.base_tensor}'",
            )
        if len(weight.dims) != 2:
            raise AdapterError(where, "shapes", f"base tensor '{weight.name}' is not a matrix")
        n_in, n_out = weight.dims
        a, b = pair.a_dims, pair.b_dims
        # llama.cpp applies token_embd's LoRA as a lookup: B is (out, r) over n_in columns.
        if pair.base_tensor == TOKEN_EMBD:
            ok = n_in == b[1] and n_out == a[1]
        else:
            ok = n_in == a[0] and n_out == b[1]
        if not ok:
            raise AdapterError(
                where,
                "shapes",
                f"'{pair.base_tensor}' is {_np(weight.dims)} (out, in) in the base model, but "
                f"lora_a is {_np(a)} and lora_b is {_np(b)}; expected lora_a (r, {n_in}) and "
                f"lora_b ({n_out}, r)",
            )


def validate_adapter(path: str | Path, base_model: str | Path) -> AdapterInfo:
    """Every check of an adapter file against a base model file; AdapterError if one fails."""
    info = inspect_adapter(path)
    try:
        base = base_table(base_model)
    except (AdapterError, OSError) as err:
        raise AdapterError(path, "architecture", f"cannot read the base model: {err}") from err
    check_against_base(info, base)
    return info


def _np(dims: tuple[int, ...]) -> tuple[int, ...]:
    """ggml dims as the numpy/PyTorch shape a user sees in PEFT."""
    return tuple(reversed(dims))
