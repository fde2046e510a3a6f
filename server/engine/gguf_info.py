"""A model file's header as `doctor`, the memory plan and the engine use it (architecture,
context length, FIM tokens, quantization).

Reading goes through the one checked reader, server.engine.gguf_check: a file that fails a check
is refused (GGUFError names the file and the check) before llama.cpp sees it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from server.engine.gguf_check import GGUFCheckError, read_checked

# Names llama.cpp also recognises as FIM tokens when the GGUF has no explicit ids.
FIM_PREFIX_NAMES = ("<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>")
FIM_SUFFIX_NAMES = ("<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>")
FIM_MIDDLE_NAMES = ("<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>")

_FIM_NAMES = frozenset(FIM_PREFIX_NAMES + FIM_SUFFIX_NAMES + FIM_MIDDLE_NAMES)
# One error for every GGUF problem, models and adapters alike.
GGUFError = GGUFCheckError


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


def read_gguf(path: str | Path) -> GGUFInfo:
    """Read and check a GGUF file's header (server.engine.gguf_check); GGUFError names the file
    and the check that failed."""
    table = read_checked(path, keep_tokens=_FIM_NAMES)
    info = GGUFInfo(
        path=table.path,
        file_size=table.file_size,
        version=table.version,
        metadata=table.metadata,
        array_lengths=table.array_lengths,
        n_tensors=len(table.tensors),
    )
    for tensor in table.tensors.values():
        count = 1
        for dim in tensor.dims:
            count *= dim
        info.n_params += count
        info.tensor_types[tensor.type_name] = info.tensor_types.get(tensor.type_name, 0) + 1
    _find_fim_tokens(info, table.kept_tokens)
    return info


def _find_fim_tokens(info: GGUFInfo, by_name: dict[int, str]) -> None:
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
