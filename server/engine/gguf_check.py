"""The one GGUF reader: every model and adapter file is read and checked here before llama.cpp
sees it.

llama.cpp's GGUF loader is C++ and has had memory-safety bugs reachable from a crafted file
(CVE-2025-49847, a vocabulary overflow; heap writes from byte tokens; loader crashes on bad
counts). This module reads the header and tensor table in Python through mmap and refuses a
file that breaks any of the checks below, naming the check that failed:

- file: the path is a readable regular file;
- magic, version: `GGUF`, version 2 or 3;
- counts: tensor and metadata counts that fit the file (each entry takes bytes);
- metadata: every key and string length and every array length inside the file, known value
  types, no nested arrays, no duplicate keys, the types of the keys llama.cpp relies on;
- tensors: names (unique, shorter than ggml's 64 bytes), 1-4 dimensions, sizes that do not
  overflow, known types whose block size divides the row;
- offsets: the alignment a power of two; every tensor's data aligned, inside the file, and not
  overlapping another's;
- vocabulary (models): the token list, scores and token types of one length, equal to the
  embedding tensor's rows, short and unique token texts, special token ids inside the
  vocabulary;
- hparams (models): positive layer, width and head counts that divide as llama.cpp asserts.

The large token arrays are scanned, not kept (Gemma 3 has 262k tokens); `gguf.GGUFReader` builds
numpy fields for all of them and takes about 30 s there, this reader well under a second.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Names of the checks, in the order they run; GGUFCheckError.check is one of them.
CHECKS = (
    "file", "magic", "version", "counts", "metadata", "tensors", "offsets", "vocabulary", "hparams",
)

# GGUF value types: struct format of the scalar ones.
SCALAR_FORMATS = _SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
            10: "<Q", 11: "<q", 12: "<d"}
STRING = _STRING = 8
ARRAY = _ARRAY = 9
_INTEGERS = frozenset({0, 1, 2, 3, 4, 5, 10, 11})
_TYPE_NAMES = {0: "uint8", 1: "int8", 2: "uint16", 3: "int16", 4: "uint32", 5: "int32",
               6: "float32", 7: "bool", 8: "string", 9: "array", 10: "uint64", 11: "int64",
               12: "float64"}
# Arrays longer than this are summarised by their length (token lists, scores, merges).
KEEP_ARRAY = 64
# ggml's limits (GGML_MAX_NAME, GGML_MAX_DIMS).
MAX_NAME = 64
MAX_DIMS = 4
# llama.cpp asserts (aborts the process) beyond these (LLAMA_MAX_LAYERS, LLAMA_MAX_EXPERTS).
MAX_LAYERS = 512
MAX_EXPERTS = 1024
# No real key or token text comes near these; llama.cpp copies token texts through int32 sizes.
MAX_KEY = 1 << 16
MAX_TOKEN_TEXT = 1 << 16
_INT64_MAX = (1 << 63) - 1
# Smallest possible metadata entry (key length, value type, a one-byte value) and tensor entry
# (name length, n_dims, one dimension, type, offset).
_MIN_KV_BYTES = 8 + 4 + 1
_MIN_TENSOR_BYTES = 8 + 4 + 8 + 4 + 8
TOKEN_EMBD = "token_embd.weight"
TOKENS = "tokenizer.ggml.tokens"
# Keys whose type llama.cpp assumes: (allowed value types, allowed array element types).
_KEY_TYPES: dict[str, tuple[frozenset[int], frozenset[int]]] = {
    "general.architecture": (frozenset({_STRING}), frozenset()),
    "general.type": (frozenset({_STRING}), frozenset()),
    "general.alignment": (frozenset({4}), frozenset()),
    TOKENS: (frozenset({_ARRAY}), frozenset({_STRING})),
    "tokenizer.ggml.scores": (frozenset({_ARRAY}), frozenset({5, 6})),
    "tokenizer.ggml.token_type": (frozenset({_ARRAY}), frozenset({5})),
    "tokenizer.ggml.merges": (frozenset({_ARRAY}), frozenset({_STRING})),
    "tokenizer.ggml.model": (frozenset({_STRING}), frozenset()),
    "tokenizer.chat_template": (frozenset({_STRING}), frozenset()),
    # llama.cpp reads these with getters that abort the process on another type.
    "adapter.type": (frozenset({_STRING}), frozenset()),
    "adapter.lora.alpha": (frozenset({6}), frozenset()),
    "split.no": (frozenset({2}), frozenset()),
    "split.count": (frozenset({2}), frozenset()),
}
# Arrays that llama.cpp indexes by token id, so must be as long as the token list.
_PER_TOKEN = ("tokenizer.ggml.scores", "tokenizer.ggml.token_type")


class GGUFCheckError(ValueError):
    """A GGUF file failed a check; `check` names it (see CHECKS) and `detail` says why."""

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
    """A checked GGUF file: metadata (scalars, strings, short arrays), array lengths, and the
    tensor table."""

    path: str
    file_size: int
    version: int
    metadata: dict[str, Any] = field(default_factory=dict)
    # Lengths of the arrays too long to keep (e.g. "tokenizer.ggml.tokens": 262144).
    array_lengths: dict[str, int] = field(default_factory=dict)
    # Value type of each key (and element type of arrays), as GGUF numbers them.
    value_types: dict[str, tuple[int, int | None]] = field(default_factory=dict)
    tensors: dict[str, TensorEntry] = field(default_factory=dict)
    data_offset: int = 0
    # id -> text of the vocabulary tokens whose text was asked for (`keep_tokens`).
    kept_tokens: dict[int, str] = field(default_factory=dict)

    @property
    def architecture(self) -> str | None:
        value = self.metadata.get("general.architecture")
        return str(value) if value is not None else None

    @property
    def file_type(self) -> str:
        return str(self.metadata.get("general.type", "model"))

    def array_length(self, key: str) -> int | None:
        value = self.metadata.get(key)
        if isinstance(value, list):
            return len(value)
        return self.array_lengths.get(key)


class _Reader:
    def __init__(self, buf: mmap.mmap, path: str, keep_tokens: frozenset[str]) -> None:
        self.buf = buf
        self.size = len(buf)
        self.pos = 0
        self.path = path
        self.keep_tokens = keep_tokens
        self.kept: dict[int, str] = {}

    def fail(self, check: str, detail: str) -> GGUFCheckError:
        return GGUFCheckError(self.path, check, detail)

    def need(self, n: int, what: str, check: str = "metadata") -> None:
        if n < 0 or self.pos + n > self.size:
            raise self.fail(
                check, f"{what} needs {n} bytes at byte {self.pos}, past the end of the file "
                f"({self.size} bytes; truncated or corrupt)"
            )

    def scalar(self, fmt: str, what: str, check: str = "metadata") -> Any:
        size = struct.calcsize(fmt)
        self.need(size, what, check)
        value = struct.unpack_from(fmt, self.buf, self.pos)[0]
        self.pos += size
        return value

    def string(self, what: str, limit: int, check: str = "metadata") -> str:
        length = self.scalar("<Q", f"the length of {what}", check)
        if length > limit:
            raise self.fail(check, f"{what} claims {length} bytes (at most {limit})")
        self.need(length, what, check)
        raw = bytes(self.buf[self.pos : self.pos + length])
        self.pos += length
        return raw.decode("utf-8", errors="replace")

    def value(self, vtype: int, key: str, table: GGUFTable) -> Any:
        if vtype in _SCALARS:
            return self.scalar(_SCALARS[vtype], f"the value of '{key}'")
        if vtype == _STRING:
            return self.string(f"the string value of '{key}'", self.size)
        if vtype == _ARRAY:
            return self.array(key, table)
        raise self.fail("metadata", f"unknown value type {vtype} for key '{key}'")

    def array(self, key: str, table: GGUFTable) -> Any:
        etype = self.scalar("<I", f"the element type of '{key}'")
        count = self.scalar("<Q", f"the length of '{key}'")
        table.value_types[key] = (_ARRAY, etype)
        if etype == _ARRAY:
            raise self.fail("metadata", f"'{key}' is an array of arrays (not supported)")
        if etype in _SCALARS:
            item = struct.calcsize(_SCALARS[etype])
        elif etype == _STRING:
            item = 8
        else:
            raise self.fail("metadata", f"unknown element type {etype} of array '{key}'")
        if count > (self.size - self.pos) // item:
            raise self.fail(
                "metadata",
                f"array '{key}' claims {count} items, more than the rest of the file holds "
                "(truncated or corrupt)",
            )
        if count <= KEEP_ARRAY:
            return [self.value(etype, key, table) for _ in range(count)]
        table.array_lengths[key] = count
        if etype == _STRING:
            self.skip_strings(count, key)
        else:
            self.pos += item * count
        return None

    def skip_strings(self, count: int, key: str) -> None:
        """Skip `count` strings, checking each length; keep the tokens asked for."""
        buf, pos, size = self.buf, self.pos, self.size
        unpack = struct.Struct("<Q").unpack_from
        tokens = key == TOKENS
        keep = self.keep_tokens if tokens else frozenset()
        limit = MAX_TOKEN_TEXT if tokens else size
        # llama.cpp maps token texts to ids and aborts when two are equal (an empty text
        # counts as "[EMPTY_<id>]").
        seen: dict[bytes, int] = {}
        for index in range(count):
            if pos + 8 > size:
                self.pos = pos
                self.need(8, f"item {index} of '{key}'")
            length = unpack(buf, pos)[0]
            pos += 8
            if length > limit or pos + length > size:
                self.pos = pos
                raise self.fail(
                    "vocabulary" if tokens else "metadata",
                    f"item {index} of '{key}' claims {length} bytes ("
                    + (f"at most {limit}" if length > limit else "past the end of the file")
                    + ")",
                )
            if tokens:
                text_bytes = bytes(buf[pos : pos + length]) or f"[EMPTY_{index}]".encode()
                first = seen.setdefault(text_bytes, index)
                if first != index:
                    self.pos = pos
                    raise self.fail(
                        "vocabulary",
                        f"token {index} has the same text as token {first} ({text_bytes[:40]!r})",
                    )
            if keep and length <= 32:
                text = bytes(buf[pos : pos + length]).decode("utf-8", errors="replace")
                if text in keep:
                    self.kept[index] = text
            pos += length
        self.pos = pos


def read_checked(path: str | Path, keep_tokens: Iterable[str] = ()) -> GGUFTable:
    """Read and check a GGUF file (model or adapter); GGUFCheckError names the failed check.
    `keep_tokens`: token texts whose ids to report in `kept_tokens` (e.g. FIM tokens)."""
    path = Path(path)
    where = str(path)
    if not path.exists():
        raise GGUFCheckError(where, "file", "the file does not exist")
    if not path.is_file():
        raise GGUFCheckError(where, "file", "not a regular file")
    try:
        size = path.stat().st_size
        if size < 24:
            raise GGUFCheckError(where, "magic", f"file is too small to be GGUF ({size} bytes)")
        with path.open("rb") as handle:
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                reader = _Reader(buf, where, frozenset(keep_tokens))
                table = _parse(reader, size)
                table.kept_tokens = reader.kept
    except OSError as err:
        raise GGUFCheckError(where, "file", f"cannot read: {err.strerror or err}") from err
    _check_table(table)
    return table


def _parse(reader: _Reader, size: int) -> GGUFTable:
    magic = bytes(reader.buf[0:4])
    reader.pos = 4
    if magic != b"GGUF":
        raise reader.fail("magic", f"not a GGUF file (starts with {magic!r}, expected b'GGUF')")
    version = reader.scalar("<I", "the version", "version")
    if version not in (2, 3):
        raise reader.fail("version", f"unsupported GGUF version {version} (2 or 3)")
    n_tensors = reader.scalar("<q", "the tensor count", "counts")
    n_kv = reader.scalar("<q", "the metadata count", "counts")
    for count, what, least in (
        (n_tensors, "tensors", _MIN_TENSOR_BYTES),
        (n_kv, "metadata entries", _MIN_KV_BYTES),
    ):
        if count < 0 or count > size // least:
            raise reader.fail("counts", f"the header claims {count} {what} in a {size}-byte file")
    table = GGUFTable(path=reader.path, file_size=size, version=version)
    for index in range(n_kv):
        key = reader.string(f"the name of metadata entry {index}", MAX_KEY)
        if key in table.value_types:
            raise reader.fail("metadata", f"key '{key}' appears twice")
        vtype = reader.scalar("<I", f"the value type of '{key}'")
        table.value_types[key] = (vtype, None)
        table.metadata[key] = reader.value(vtype, key, table)
    infos = []
    for index in range(n_tensors):
        name = reader.string(f"the name of tensor {index}", MAX_NAME - 1, "tensors")
        n_dims = reader.scalar("<I", f"the dimension count of tensor '{name}'", "tensors")
        if not 1 <= n_dims <= MAX_DIMS:
            raise reader.fail("tensors", f"tensor '{name}' has {n_dims} dimensions (1 to 4)")
        dims = tuple(
            reader.scalar("<Q", f"a dimension of tensor '{name}'", "tensors") for _ in range(n_dims)
        )
        ttype = reader.scalar("<I", f"the type of tensor '{name}'", "tensors")
        offset = reader.scalar("<Q", f"the offset of tensor '{name}'", "tensors")
        infos.append((name, dims, ttype, offset))
    _check_metadata_types(reader, table)
    alignment = table.metadata.get("general.alignment", 32)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise reader.fail("offsets", f"general.alignment {alignment!r} is not a power of two")
    table.data_offset = -(-reader.pos // alignment) * alignment
    _read_tensors(reader, table, infos, alignment)
    return table


def _check_metadata_types(reader: _Reader, table: GGUFTable) -> None:
    for key, (vtype, etype) in table.value_types.items():
        expected = _KEY_TYPES.get(key)
        if expected is None and key.startswith("tokenizer.ggml.") and key.endswith("_token_id"):
            expected = (_INTEGERS, frozenset())
        if expected is None:
            continue
        types, elements = expected
        if vtype not in types or (vtype == _ARRAY and etype not in elements):
            got = _TYPE_NAMES.get(vtype, str(vtype))
            if vtype == _ARRAY:
                got += f" of {_TYPE_NAMES.get(etype or 0, str(etype))}"
            raise reader.fail("metadata", f"'{key}' has type {got}")


def _read_tensors(
    reader: _Reader,
    table: GGUFTable,
    infos: list[tuple[str, tuple[int, ...], int, int]],
    alignment: int,
) -> None:
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType  # with numpy: on use only

    where = reader.path
    data_size = table.file_size - table.data_offset
    spans: list[tuple[int, int, str]] = []
    for name, dims, ttype, offset in infos:
        if name in table.tensors:
            raise reader.fail("tensors", f"tensor '{name}' appears twice")
        try:
            qtype = GGMLQuantizationType(ttype)
            block, type_size = GGML_QUANT_SIZES[qtype]
        except (ValueError, KeyError) as err:
            raise GGUFCheckError(where, "tensors", f"tensor '{name}' has unknown type {ttype}") \
                from err
        count = 1
        for dim in dims:
            if dim == 0 or dim > _INT64_MAX:
                raise reader.fail("tensors", f"tensor '{name}' has a dimension of {dim}")
            count *= dim
        if count > _INT64_MAX:
            raise reader.fail("tensors", f"tensor '{name}' has {count} elements (overflows)")
        if dims[0] % block:
            raise reader.fail(
                "tensors", f"tensor '{name}' rows of {dims[0]} are not whole {qtype.name} blocks "
                f"of {block}"
            )
        n_bytes = count // block * type_size
        if offset % alignment:
            raise reader.fail(
                "offsets", f"tensor '{name}' at data offset {offset} is not aligned to {alignment}"
            )
        if offset > data_size or n_bytes > data_size - offset:
            raise reader.fail(
                "offsets",
                f"tensor '{name}' ends at byte {table.data_offset + offset + n_bytes}, past the "
                f"end of the file ({table.file_size} bytes; truncated or corrupt)",
            )
        spans.append((offset, offset + n_bytes, name))
        table.tensors[name] = TensorEntry(name, dims, qtype.name, offset, n_bytes)
    spans.sort()
    for (_, end, first), (start, _, second) in zip(spans, spans[1:], strict=False):
        if start < end:
            raise reader.fail("offsets", f"tensors '{first}' and '{second}' overlap")


def _check_table(table: GGUFTable) -> None:
    """The checks of a model file (vocabulary, hyperparameters); adapters have neither."""
    if table.file_type != "model":
        return
    _check_vocabulary(table)
    _check_hparams(table)


def _check_vocabulary(table: GGUFTable) -> None:
    n_vocab = table.array_length(TOKENS)
    if n_vocab is None:
        return  # llama.cpp refuses a model without a vocabulary itself ("no vocab")
    fail = GGUFCheckError
    if n_vocab == 0:
        raise fail(table.path, "vocabulary", f"'{TOKENS}' is empty")
    for key in _PER_TOKEN:
        length = table.array_length(key)
        if length is not None and length != n_vocab:
            raise fail(
                table.path, "vocabulary", f"'{key}' has {length} entries for {n_vocab} tokens"
            )
    for name in (TOKEN_EMBD, "output.weight"):
        tensor = table.tensors.get(name)
        if tensor is not None and (len(tensor.dims) < 2 or tensor.dims[1] != n_vocab):
            raise fail(
                table.path,
                "vocabulary",
                f"'{name}' has shape {tensor.dims} (ggml order) for {n_vocab} tokens",
            )
    for key, value in table.metadata.items():
        if key.startswith("tokenizer.ggml.") and key.endswith("_token_id"):
            if isinstance(value, int) and not -1 <= value < n_vocab:
                raise fail(
                    table.path, "vocabulary", f"'{key}' is {value}, outside {n_vocab} tokens"
                )


def _check_hparams(table: GGUFTable) -> None:
    arch = table.architecture
    if arch is None:
        return  # llama.cpp refuses it ("general.architecture" missing) without crashing
    meta = table.metadata

    def ints(key: str) -> list[int] | None:
        value = meta.get(f"{arch}.{key}")
        if value is None:
            return None
        values = value if isinstance(value, list) else [value]
        if not values or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            raise GGUFCheckError(table.path, "hparams", f"'{arch}.{key}' is not an integer")
        return values

    fail = GGUFCheckError
    for key, top in (
        ("block_count", MAX_LAYERS), ("embedding_length", 1 << 31), ("context_length", 1 << 31)
    ):
        values = ints(key)
        if values is not None and not all(0 < v <= top for v in values):
            raise fail(table.path, "hparams", f"'{arch}.{key}' is {meta[f'{arch}.{key}']}")
    experts = (ints("expert_count") or [0])[0]
    used = (ints("expert_used_count") or [0])[0]
    if experts > MAX_EXPERTS or used > experts or (experts > 0 and used == 0):
        raise fail(
            table.path, "hparams", f"{used} of {experts} experts used (at most {MAX_EXPERTS})"
        )
    n_embd = (ints("embedding_length") or [0])[0]
    heads = ints("attention.head_count")
    heads_kv = ints("attention.head_count_kv")
    key_length = ints("attention.key_length")
    if heads is not None and (not all(0 <= h < 1 << 20 for h in heads) or max(heads) == 0):
        raise fail(table.path, "hparams", f"'{arch}.attention.head_count' is {heads}")
    if heads_kv is not None and not all(0 <= h < 1 << 20 for h in heads_kv):
        raise fail(table.path, "hparams", f"'{arch}.attention.head_count_kv' is {heads_kv}")
    if heads and heads_kv:
        for head, head_kv in zip(heads, heads_kv, strict=False):
            if head and (head_kv == 0 or head % head_kv):
                raise fail(
                    table.path, "hparams",
                    f"{head} attention heads do not share {head_kv} key/value heads evenly",
                )
    if heads and n_embd and key_length is None and n_embd % max(heads):
        raise fail(
            table.path,
            "hparams",
            f"an embedding of {n_embd} does not split into {max(heads)} heads",
        )
