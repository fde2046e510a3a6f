"""GGUF header reading on files written here with the `gguf` package (no model needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFWriter

from server.engine.gguf_info import GGUFError, read_gguf


def write_gguf(path: Path, tokens: list[str], fim_ids: dict[str, int] | None = None) -> None:
    writer = GGUFWriter(str(path), "llama")
    writer.add_context_length(16384)
    writer.add_embedding_length(64)
    writer.add_block_count(2)
    writer.add_head_count(4)
    writer.add_head_count_kv(2)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_chat_template("{% for m in messages %}{{ m.content }}{% endfor %}")
    for part, token_id in (fim_ids or {}).items():
        writer.add_uint32(f"tokenizer.ggml.fim_{part}_token_id", token_id)
    writer.add_tensor("token_embd.weight", np.zeros((len(tokens), 64), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_fim_tokens_by_id(tmp_path):
    tokens = ["<unk>", "a", "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", "b"]
    tokens += [f"t{i}" for i in range(100)]
    path = tmp_path / "fim.gguf"
    write_gguf(path, tokens, {"pre": 2, "suf": 3, "mid": 4})
    info = read_gguf(path)
    assert info.fim_tokens == {
        "pre": "<|fim_prefix|>",
        "suf": "<|fim_suffix|>",
        "mid": "<|fim_middle|>",
    }
    assert info.has_fim and info.has_chat_template
    assert info.context_length == 16384
    assert info.n_params == len(tokens) * 64
    assert info.kv_bytes_per_token() == 2 * 2 * (16 + 16) * 2


def test_fim_tokens_by_name_deepseek_style(tmp_path):
    tokens = ["<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>", "x"]
    tokens += [f"t{i}" for i in range(80)]
    path = tmp_path / "ds.gguf"
    write_gguf(path, tokens)
    info = read_gguf(path)
    assert info.fim_tokens == {
        "pre": "<｜fim▁begin｜>",
        "suf": "<｜fim▁hole｜>",
        "mid": "<｜fim▁end｜>",
    }


def test_no_fim_tokens(tmp_path):
    path = tmp_path / "plain.gguf"
    write_gguf(path, ["a", "b", "c"])
    assert not read_gguf(path).has_fim


def test_tensor_data_cut_short_is_truncated(tmp_path):
    path = tmp_path / "plain.gguf"
    write_gguf(path, [f"t{i}" for i in range(200)])
    data = path.read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[: len(data) - 100])
    with pytest.raises(GGUFError, match="truncated"):
        read_gguf(cut)
