"""Read a GGUF file's header (metadata and tensor table) without loading the model.

Used to check a model file before llama.cpp sees it (a truncated or foreign file gets a clear
message naming the problem instead of a crash or a bare "failed to load"), and by `doctor` and
the memory plan. Reads through mmap; the large token arrays are scanned, not kept.
"""

from __future__ import annotations

import mmap
import struct
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

# Names llama.cpp also recognises as FIM tokens when the GGUF has no explicit ids.
FIM_PREFIX_NAMES = ("<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>")
FIM_SUFFIX_NAMES = ("<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>")
FIM_MIDDLE_NAMES = ("<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>")

# GGUF value types: struct format of the scalar ones.
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
            10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
# Arrays longer than this are summarised by their length (token lists, scores, merges).
_KEEP_ARRAY = 64


class GGUFError(ValueError):
    """The file is not a readable GGUF model; the message names the file and the problem."""


class GGUFInfo(BaseModel):
    path: str
    file_size: int
    version: int
    metadata: dict[str, Any] = Field(default_factory=dict)
    # Lengths of the arrays too long to keep (e.g. "tokenizer.ggml.tokens": 262144).
    array_lengths: dict[str, int] = Field(default_factory=dict)
    n_tensors: int = 0
    n_params: int = 0
    # Tensor type name -> count, for the quantization summary.
    tensor_types: dict[str, int] = Field(default_factory=dict)
    # FIM token texts found by id or by name: {"pre": "<|fim_prefix|>", ...}.
    fim_tokens: dict[str, str] = Field(default_factory=dict)

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", "unknown"))

    @property
    def file_type(self) -> str:
        return str(self.metadata.get("general.type", "model"))

    def arch_value(self, key: str, default: Any = None) -> Any:
        return self.metadata.get(f"{self.architecture}.{key}", default)

    @property
    def context_length(self) -> int | None:
        value = self.arch_value("context_length")
        return int(value) if value is not None else None

    @property
    def has_fim(self) -> bool:
        return {"pre", "suf", "mid"} <= set(self.fim_tokens)

    @property
    def has_chat_template(self) -> bool:
        return bool(self.metadata.get("tokenizer.chat_template"))

    @property
    def quantization(self) -> str:
        ftype = self.metadata.get("general.file_type")
        if isinstance(ftype, int):
            try:
                from gguf import LlamaFileType

                return LlamaFileType(ftype).name.removeprefix("MOSTLY_")
            except (ImportError, ValueError):
                pass
        if self.tensor_types:
            return max(self.tensor_types.items(), key=lambda item: item[1])[0]
        return "unknown"

    def kv_bytes_per_token(self) -> int:
        """Bytes of f16 K and V cache per context token, over all layers."""
        layers = int(self.arch_value("block_count", 0) or 0)
        n_embd = int(self.arch_value("embedding_length", 0) or 0)
        heads = _first_int(self.arch_value("attention.head_count", 1)) or 1
        heads_kv = _first_int(self.arch_value("attention.head_count_kv", heads)) or heads
        key_len = int(self.arch_value("attention.key_length", n_embd // heads) or 0)
        value_len = int(self.arch_value("attention.value_length", n_embd // heads) or 0)
        return layers * heads_kv * (key_len + value_len) * 2


def _first_int(value: Any) -> int:
    # Some architectures store per-layer head counts as an array.
    if isinstance(value, list):
        return int(max(value)) if value else 0
    return int(value or 0)


class _Reader:
    def __init__(self, buf: mmap.mmap, path: str) -> None:
        self.buf = buf
        self.pos = 0
        self.path = path

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.buf):
            raise GGUFError(
                f"{self.path}: file is truncated (needs {self.pos + n} bytes, has {len(self.buf)})"
            )
        data = self.buf[self.pos : self.pos + n]
        self.pos += n
        return data

    def scalar(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        return struct.unpack(fmt, self.take(size))[0]

    def string(self) -> str:
        length = self.scalar("<Q")
        return self.take(length).decode("utf-8", errors="replace")

    def skip_string(self) -> None:
        length = self.scalar("<Q")
        self.take(length)

    def value(self, vtype: int, key: str, info: GGUFInfo) -> Any:
        if vtype in _SCALARS:
            return self.scalar(_SCALARS[vtype])
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            return self.array(key, info)
        raise GGUFError(f"{self.path}: unknown value type {vtype} for key '{key}'")

    def array(self, key: str, info: GGUFInfo) -> Any:
        etype = self.scalar("<I")
        count = self.scalar("<Q")
        if count > len(self.buf):
            raise GGUFError(f"{self.path}: array '{key}' claims {count} items; file is corrupt")
        if key == "tokenizer.ggml.tokens":
            return self._scan_tokens(count, info)
        if count > _KEEP_ARRAY:
            info.array_lengths[key] = count
            if etype in _SCALARS:
                self.take(struct.calcsize(_SCALARS[etype]) * count)
            else:
                for _ in range(count):
                    self.value(etype, key, info)
            return None
        return [self.value(etype, key, info) for _ in range(count)]

    def _scan_tokens(self, count: int, info: GGUFInfo) -> None:
        info.array_lengths["tokenizer.ggml.tokens"] = count
        names = {
            **{n: "pre" for n in FIM_PREFIX_NAMES},
            **{n: "suf" for n in FIM_SUFFIX_NAMES},
            **{n: "mid" for n in FIM_MIDDLE_NAMES},
        }
        tokens: dict[int, str] = {}
        for index in range(count):
            length = self.scalar("<Q")
            raw = self.take(length)
            # FIM tokens are short (DeepSeek's are 19 bytes of UTF-8); checking the length
            # first keeps the scan of a 100k-token vocabulary cheap.
            if length <= 32:
                text = raw.decode("utf-8", errors="replace")
                if text in names:
                    tokens[index] = text
        info.metadata["_fim_by_name"] = tokens
        return None


def read_gguf(path: str | Path) -> GGUFInfo:
    """Read the header of a GGUF file; GGUFError names the file and the problem."""
    path = Path(path)
    where = str(path)
    if not path.exists():
        raise GGUFError(f"{where}: model file does not exist")
    if not path.is_file():
        raise GGUFError(f"{where}: not a file")
    try:
        with path.open("rb") as handle:
            size = path.stat().st_size
            if size < 24:
                raise GGUFError(f"{where}: file is too small to be a GGUF model ({size} bytes)")
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                return _parse(_Reader(buf, where), size)
    except OSError as err:
        raise GGUFError(f"{where}: cannot read model file: {err.strerror or err}") from err


def _parse(reader: _Reader, size: int) -> GGUFInfo:
    where = reader.path
    magic = reader.take(4)
    if magic != b"GGUF":
        raise GGUFError(f"{where}: not a GGUF file (starts with {magic!r}, expected b'GGUF')")
    version = reader.scalar("<I")
    if version not in (2, 3):
        raise GGUFError(f"{where}: unsupported GGUF version {version}")
    n_tensors = reader.scalar("<Q")
    n_kv = reader.scalar("<Q")
    if n_tensors > size or n_kv > size:
        raise GGUFError(f"{where}: header counts are impossible; file is corrupt")
    info = GGUFInfo(path=where, file_size=size, version=version, n_tensors=n_tensors)
    for _ in range(n_kv):
        key = reader.string()
        vtype = reader.scalar("<I")
        info.metadata[key] = reader.value(vtype, key, info)
    _find_fim_tokens(info)
    _read_tensors(reader, info)
    return info


def _find_fim_tokens(info: GGUFInfo) -> None:
    by_name: dict[int, str] = info.metadata.pop("_fim_by_name", {}) or {}
    for part in ("pre", "suf", "mid"):
        token_id = info.metadata.get(f"tokenizer.ggml.fim_{part}_token_id")
        if isinstance(token_id, int) and token_id in by_name:
            info.fim_tokens[part] = by_name[token_id]
    if not info.has_fim:
        for text in by_name.values():
            for part, names in (
                ("pre", FIM_PREFIX_NAMES),
                ("suf", FIM_SUFFIX_NAMES),
                ("mid", FIM_MIDDLE_NAMES),
            ):
                if text in names:
                    info.fim_tokens.setdefault(part, text)


def _read_tensors(reader: _Reader, info: GGUFInfo) -> None:
    try:
        from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
    except ImportError:  # the tensor table is only a summary; the header was checked
        return
    alignment = int(info.metadata.get("general.alignment", 32) or 32)
    data_end = 0
    for _ in range(info.n_tensors):
        reader.skip_string()
        n_dims = reader.scalar("<I")
        if n_dims > 8:
            raise GGUFError(f"{reader.path}: tensor with {n_dims} dimensions; file is corrupt")
        dims = [reader.scalar("<Q") for _ in range(n_dims)]
        ttype = reader.scalar("<I")
        offset = reader.scalar("<Q")
        count = 1
        for dim in dims:
            count *= dim
        info.n_params += count
        try:
            qtype = GGMLQuantizationType(ttype)
        except ValueError as err:
            raise GGUFError(f"{reader.path}: unknown tensor type {ttype}; file is corrupt") from err
        info.tensor_types[qtype.name] = info.tensor_types.get(qtype.name, 0) + 1
        block, type_size = GGML_QUANT_SIZES[qtype]
        data_end = max(data_end, offset + count // block * type_size)
    data_start = -(-reader.pos // alignment) * alignment
    if data_start + data_end > info.file_size:
        raise GGUFError(
            f"{reader.path}: file is truncated: tensor data needs {data_start + data_end} bytes, "
            f"the file has {info.file_size}"
        )
