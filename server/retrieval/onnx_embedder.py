"""The embedding model on onnxruntime, int8: about twice the torch rate at the same length.

The ONNX file is made here, once per machine, from the sentence-transformers folder's own
weights (torch exports the transformer with mean pooling and normalisation, onnxruntime
quantizes its weights to int8 per channel) and kept in the user cache beside a record of its
size and sha256. A file that does not match its record, or that onnxruntime cannot load, is
rebuilt with a warning. A fresh build is checked against the torch model on a few texts
before it is used; nothing is downloaded. Measured in bench/bench_indexing.py (BENCHMARKS.md).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

ONNX_FORMAT = 1
# A fresh int8 build must agree this well (cosine, per text) with the torch model it came
# from; per-channel int8 gives about 0.99 on method texts, per-tensor int8 0.83.
MIN_COSINE = 0.95
_PROBES = (
    "Foo >> bar [accessing]\nbar\n\t^ bar",
    "OrderedCollection >> addAll: [adding]\naddAll: aCollection\n\t\"Add every element.\"\n"
    "\taCollection do: [ :each | self add: each ].\n\t^ aCollection",
    "Point class >> x:y: [instance creation]\nx: xValue y: yValue\n\t^ self basicNew "
    "setX: xValue setY: yValue",
)


class OnnxBuildError(RuntimeError):
    """The ONNX model cannot be made or does not agree with the torch model."""


def user_embedding_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "smalltalk-lsp" / "embeddings"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _source_id(model_dir: Path) -> str:
    """Names the weights the file is made from: folder, and size and time of each file."""
    parts = [str(model_dir.resolve())]
    for path in sorted(model_dir.glob("*")):
        if path.is_file():
            stat = path.stat()
            parts.append(f"{path.name}:{stat.st_size}:{int(stat.st_mtime)}")
    return hashlib.blake2b("\n".join(parts).encode(), digest_size=8).hexdigest()


def onnx_path(model_dir: Path, cache: Path | None = None) -> Path:
    return (cache or user_embedding_cache()) / _source_id(model_dir) / "model-int8.onnx"


def _record_path(path: Path) -> Path:
    return path.with_suffix(".json")


def _check(path: Path) -> str | None:
    """Why the cached file cannot be used, or None when it matches its record."""
    record_path = _record_path(path)
    if not path.is_file() or not record_path.is_file():
        return None if not path.exists() and not record_path.exists() else "incomplete"
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        return f"unreadable record: {err}"
    if record.get("format") != ONNX_FORMAT:
        return "made by another version"
    if record.get("size") != path.stat().st_size or record.get("sha256") != _sha256(path):
        return "size or sha256 differs from its record"
    return None


def _export(model_dir: Path, target: Path) -> None:
    """torch -> ONNX (fp32, pooled and normalised) -> int8 weights, written to `target`."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoModel

    class Pooled(torch.nn.Module):
        def __init__(self, bert: Any) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                               token_type_ids=token_type_ids).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2, dim=1)

    bert = AutoModel.from_pretrained(str(model_dir), attn_implementation="eager").eval()
    dummy = torch.ones(2, 8, dtype=torch.long)
    mask = dummy.clone()
    mask[1, 5:] = 0  # a padded row, so the traced graph keeps the attention mask
    names = ["input_ids", "attention_mask", "token_type_ids"]
    axes: dict[str, dict[int, str]] = {n: {0: "batch", 1: "tokens"} for n in names}
    axes["embedding"] = {0: "batch"}
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        fp32 = Path(tmp) / "model-fp32.onnx"
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's tracing notes, not faults
            torch.onnx.export(Pooled(bert), (dummy, mask, torch.zeros_like(dummy)), str(fp32),
                              dynamo=False, opset_version=17, input_names=names,
                              output_names=["embedding"], dynamic_axes=axes)
        quiet = _DropAdvice()  # the quantizer's advice to pre-process, on the root logger
        logging.getLogger().addFilter(quiet)
        try:
            quantize_dynamic(str(fp32), str(target), weight_type=QuantType.QInt8,
                             per_channel=True)
        finally:
            logging.getLogger().removeFilter(quiet)


class _DropAdvice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


def _reference(model_dir: Path, texts: Sequence[str], max_tokens: int) -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(model_dir), device="cpu")
    model.max_seq_length = max_tokens
    return np.asarray(model.encode(list(texts), normalize_embeddings=True), dtype=np.float32)


def build(model_dir: Path, path: Path, max_tokens: int) -> None:
    """Make the int8 file and its record; OnnxBuildError if it disagrees with torch."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Two servers may build at once: each writes its own file, the last rename wins.
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        _export(model_dir, tmp)
        made = OnnxEmbedder(model_dir, tmp, max_tokens).embed(_PROBES)
    except OnnxBuildError:
        raise
    except Exception as err:  # export and quantization fail with many error types
        tmp.unlink(missing_ok=True)
        raise OnnxBuildError(f"cannot make the ONNX embedding model: {err}") from err
    cosines = np.sum(made * _reference(model_dir, _PROBES, max_tokens), axis=1)
    if float(cosines.min()) < MIN_COSINE:
        tmp.unlink(missing_ok=True)
        raise OnnxBuildError(f"the int8 ONNX model disagrees with the torch model "
                             f"(cosine {float(cosines.min()):.3f} < {MIN_COSINE})")
    record = {"format": ONNX_FORMAT, "size": tmp.stat().st_size, "sha256": _sha256(tmp),
              "source": str(model_dir)}
    record_tmp = tmp.with_suffix(".json")
    record_tmp.write_text(json.dumps(record, indent=1), encoding="utf-8")
    os.replace(tmp, path)
    os.replace(record_tmp, _record_path(path))
    log.info("made the int8 ONNX embedding model %s", path)


def ensure_onnx(model_dir: Path, max_tokens: int, cache: Path | None = None) -> Path:
    """The cached int8 file for `model_dir`, made or remade when missing or damaged."""
    path = onnx_path(model_dir, cache)
    problem = _check(path)
    if problem is None and path.is_file():
        return path
    if problem is not None:
        log.warning("ONNX embedding model %s is damaged (%s): rebuilding it", path, problem)
    build(model_dir, path, max_tokens)
    return path


class OnnxEmbedder:
    """int8 all-MiniLM on onnxruntime: one intra-op thread per call, so calls from two
    threads run on two cores (the indexer's workers) and a query never takes more than one."""

    concurrent = True

    def __init__(self, model_dir: Path, path: Path, max_tokens: int) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self._session = ort.InferenceSession(str(path), options,
                                             providers=["CPUExecutionProvider"])
        self._tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self._tokenizer.enable_truncation(max_tokens)
        self._tokenizer.no_padding()
        self.dimension = int(self._session.get_outputs()[0].shape[-1] or 384)
        self.name = ""

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One run per text: int8 activations are scaled per run, so a text batched with
        others (and their padding) would get a slightly different vector each time; alone,
        a unit's vector is the same in any batch and as a query."""
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, encoded in enumerate(self._tokenizer.encode_batch(list(texts))):
            ids = np.array([encoded.ids], dtype=np.int64)
            out[row] = self._session.run(None, {
                "input_ids": ids, "attention_mask": np.ones_like(ids),
                "token_type_ids": np.zeros_like(ids)})[0][0]
        return out


def load_onnx(model_dir: Path, max_tokens: int, cache: Path | None = None) -> OnnxEmbedder:
    """Load the cached file; one that onnxruntime refuses is rebuilt once."""
    path = ensure_onnx(model_dir, max_tokens, cache)
    try:
        return OnnxEmbedder(model_dir, path, max_tokens)
    except Exception as err:  # onnxruntime raises its own exception types
        log.warning("ONNX embedding model %s is damaged (%s): rebuilding it", path, err)
        build(model_dir, path, max_tokens)
        return OnnxEmbedder(model_dir, path, max_tokens)
