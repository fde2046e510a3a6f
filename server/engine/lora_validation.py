"""Check a GGUF LoRA adapter before llama.cpp sees it, against the base model it is meant for.

llama.cpp refuses a bad adapter with a log line and a NULL pointer; here each check has a name
and a message that says what is wrong (a truncated file, another architecture, a tensor the
base does not have, a rank or width that does not fit), so the user can fix the file while the
base model keeps serving.

The GGUF tensor tables are read by a small reader of our own: `gguf.GGUFReader` builds numpy
fields for every token string and takes about 30 s on Gemma 3's 262k-token vocabulary, while
this reader skips them in well under a second. Shapes are in ggml order (ne0 first), as llama.cpp
compares them: a base weight is (in, out), `lora_a` is (in, r) and `lora_b` is (r, out), i.e.
numpy (r, in) and (out, r) as PEFT's `lora_A` / `lora_B`.
"""

from __future__ import annotations

import mmap
import struct
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

# Names of the checks, in the order they run; AdapterError.check is one of them.
CHECKS = ("file", "gguf", "type", "lora", "tensors", "architecture", "names", "shapes")

_SCALARS = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
_STRING, _ARRAY = 8, 9
TOKEN_EMBD = "token_embd.weight"
# Longer arrays (token lists, merges) are skipped, not kept.
_KEEP_ARRAY = 64


class AdapterError(ValueError):
    """An adapter failed a check; `check` names it (see CHECKS) and the message says why."""

    def __init__(self, path: str | Path, check: str, detail: str) -> None:
        super().__init__(f"{path}: {check} check failed: {detail}")
        self.path = str(path)
        self.check = check
        self.detail = detail


@dataclass(frozen=True)
class TensorEntry:
    name: str
    dims: tuple[int, ...]  # ggml order: dims[0] is the row length (a weight's input width)
    type_name: str
    offset: int  # from the start of the data section
    n_bytes: int


@dataclass
class GGUFTable:
    """A GGUF file's metadata (scalars, strings, short arrays) and tensor table."""

    path: str
    file_size: int
    metadata: dict[str, Any] = field(default_factory=dict)
    tensors: dict[str, TensorEntry] = field(default_factory=dict)
    data_offset: int = 0

    @property
    def architecture(self) -> str | None:
        value = self.metadata.get("general.architecture")
        return str(value) if value is not None else None


class _Reader:
    def __init__(self, buf: mmap.mmap, path: str) -> None:
        self.buf = buf
        self.pos = 0
        self.path = path

    def need(self, n: int) -> None:
        if n < 0 or self.pos + n > len(self.buf):
            raise AdapterError(
                self.path, "gguf", f"file is truncated (the header runs past {len(self.buf)} bytes)"
            )

    def scalar(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        self.need(size)
        value = struct.unpack_from(fmt, self.buf, self.pos)[0]
        self.pos += size
        return value

    def string(self) -> str:
        n = self.scalar("<Q")
        self.need(n)
        raw = self.buf[self.pos : self.pos + n]
        self.pos += n
        return raw.decode("utf-8", errors="replace")

    def skip_strings(self, count: int) -> None:
        buf, pos, size = self.buf, self.pos, len(self.buf)
        unpack = struct.Struct("<Q").unpack_from
        for _ in range(count):
            if pos + 8 > size:
                break
            pos += 8 + unpack(buf, pos)[0]
        self.pos = pos
        self.need(0)

    def value(self, vtype: int, key: str) -> Any:
        if vtype in _SCALARS:
            return self.scalar(_SCALARS[vtype])
        if vtype == _STRING:
            return self.string()
        if vtype != _ARRAY:
            raise AdapterError(self.path, "gguf", f"unknown value type {vtype} for key '{key}'")
        etype = self.scalar("<I")
        count = self.scalar("<Q")
        if count > len(self.buf):
            raise AdapterError(self.path, "gguf", f"array '{key}' claims {count} items")
        if count <= _KEEP_ARRAY:
            return [self.value(etype, key) for _ in range(count)]
        if etype in _SCALARS:
            n = struct.calcsize(_SCALARS[etype]) * count
            self.need(n)
            self.pos += n
        elif etype == _STRING:
            self.skip_strings(count)
        else:
            for _ in range(count):
                self.value(etype, key)
        return None


def read_table(path: str | Path) -> GGUFTable:
    """Read a GGUF file's metadata and tensor table; AdapterError ("file" or "gguf") if the file
    is missing, not a GGUF file, or truncated (its tensor data ends past the end of the file)."""
    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise AdapterError(where, "file", "no such file")
    try:
        size = path.stat().st_size
        if size < 24:
            raise AdapterError(where, "gguf", f"file is too small to be GGUF ({size} bytes)")
        with path.open("rb") as handle:
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                return _parse(_Reader(buf, where), size)
    except OSError as err:
        raise AdapterError(where, "file", f"cannot read: {err.strerror or err}") from err


def _parse(reader: _Reader, size: int) -> GGUFTable:
    where = reader.path
    reader.need(4)
    magic = bytes(reader.buf[0:4])
    reader.pos = 4
    if magic != b"GGUF":
        raise AdapterError(where, "gguf", f"not a GGUF file (starts with {magic!r})")
    version = reader.scalar("<I")
    if version not in (2, 3):
        raise AdapterError(where, "gguf", f"unsupported GGUF version {version}")
    n_tensors = reader.scalar("<Q")
    n_kv = reader.scalar("<Q")
    if n_tensors > size or n_kv > size:
        raise AdapterError(where, "gguf", "impossible header counts; the file is corrupt")
    table = GGUFTable(path=where, file_size=size)
    for _ in range(n_kv):
        key = reader.string()
        vtype = reader.scalar("<I")
        table.metadata[key] = reader.value(vtype, key)
    infos = []
    for _ in range(n_tensors):
        name = reader.string()
        n_dims = reader.scalar("<I")
        if n_dims > 8:
            raise AdapterError(where, "gguf", f"tensor '{name}' has {n_dims} dimensions")
        dims = tuple(reader.scalar("<Q") for _ in range(n_dims))
        ttype = reader.scalar("<I")
        offset = reader.scalar("<Q")
        infos.append((name, dims, ttype, offset))
    alignment = int(table.metadata.get("general.alignment", 32) or 32)
    table.data_offset = -(-reader.pos // alignment) * alignment
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType  # with numpy: on use only

    for name, dims, ttype, offset in infos:
        try:
            qtype = GGMLQuantizationType(ttype)
        except ValueError as err:
            raise AdapterError(where, "gguf", f"tensor '{name}' has unknown type {ttype}") from err
        block, type_size = GGML_QUANT_SIZES[qtype]
        count = 1
        for dim in dims:
            count *= dim
        n_bytes = count // block * type_size
        end = table.data_offset + offset + n_bytes
        if end > size:
            raise AdapterError(
                where,
                "gguf",
                f"file is truncated: tensor '{name}' ends at byte {end}, the file has {size}",
            )
        table.tensors[name] = TensorEntry(name, dims, qtype.name, offset, n_bytes)
    return table


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
