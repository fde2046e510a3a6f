"""The coder's base weights as a PyTorch model, for training a LoRA on CPU.

A GGUF file (the embedded default, or any GGUF path) is loaded by transformers with
`gguf_file=` (dequantized to float32); a folder with a `config.json` is a Hugging Face
checkpoint. Converting the GGUF takes minutes on a small machine (its tokenizer alone about
45 s), so the converted model is kept in the user cache, keyed by the GGUF's path, size and
modification time, and later runs load it in seconds. A conversion that cannot be cached (a
full disk) is only logged.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from server.engine.embedded import ModelNotFound, resolve_model_path
from server.engine.gguf_info import FIM_MIDDLE_NAMES, FIM_PREFIX_NAMES, FIM_SUFFIX_NAMES, read_gguf
from server.engine.types import FimTokens

log = logging.getLogger(__name__)


class BaseModelError(RuntimeError):
    """The base model cannot be loaded for training; the message names it and says why."""


@dataclass
class HFBase:
    model: Any  # a transformers causal LM, float32, eval mode
    tokenizer: Any
    name: str  # as configured
    path: Path  # the GGUF file or checkpoint folder
    architecture: str  # GGUF architecture ("gemma3") or the HF model_type
    fim: FimTokens | None
    load_seconds: float
    gguf: Path | None  # the GGUF file, when the base is one (export checks against it)


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "smalltalk-lsp" / "transformers"


def _cache_dir(gguf: Path) -> Path:
    stat = gguf.stat()
    key = f"{gguf.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    return cache_root() / f"{gguf.stem}-{hashlib.sha1(key.encode()).hexdigest()[:12]}"


def resolve_base(name: str, workspace: Path | None = None) -> Path:
    try:
        path = resolve_model_path(name, workspace)
    except ModelNotFound as err:
        raise BaseModelError(str(err)) from err
    if not path.exists():
        raise BaseModelError(f"base model '{name}': {path} does not exist")
    return path


# Repository-level tokens, as llama.cpp finds them by name (its fim_rep / fim_sep).
REPO_NAME_NAMES = ("<|repo_name|>", "<reponame>", "<REPO>")
FILE_SEP_NAMES = ("<|file_sep|>", "<file_sep>", "<FILE_SEP>")


def _fim_from_tokenizer(tokenizer: Any) -> FimTokens | None:
    vocab = tokenizer.get_vocab()
    found = [next((n for n in names if n in vocab), None)
             for names in (FIM_PREFIX_NAMES, FIM_SUFFIX_NAMES, FIM_MIDDLE_NAMES)]
    if any(n is None for n in found):
        return None
    return _with_repository(
        FimTokens(prefix=str(found[0]), suffix=str(found[1]), middle=str(found[2])), tokenizer
    )


def _with_repository(fim: FimTokens, tokenizer: Any) -> FimTokens:
    """The FIM tokens with the model's repository tokens, when its vocabulary has both (the
    prompt stage then lays context out as repository files, as serving does)."""
    vocab = tokenizer.get_vocab()
    rep = next((n for n in REPO_NAME_NAMES if n in vocab), "")
    sep = next((n for n in FILE_SEP_NAMES if n in vocab), "")
    if not (rep and sep):
        return fim
    return FimTokens(fim.prefix, fim.suffix, fim.middle, repo_name=rep, file_sep=sep)


def load_base(
    name: str, workspace: Path | None = None, threads: int | None = None, use_cache: bool = True
) -> HFBase:
    """Load the base model `name` (embedded name, GGUF path or HF folder) for training."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    path = resolve_base(name, workspace)
    started = time.monotonic()
    gguf: Path | None = None
    fim: FimTokens | None
    if path.is_dir():
        model, tokenizer = _load_hf(path, None)
        architecture = str(getattr(model.config, "model_type", "unknown"))
        fim = _fim_from_tokenizer(tokenizer)
    else:
        gguf = path
        try:
            info = read_gguf(path)
        except Exception as err:
            raise BaseModelError(f"base model '{name}': {path} is not a GGUF model: {err}") from err
        architecture = info.architecture
        fim = (
            FimTokens(info.fim_tokens["pre"], info.fim_tokens["suf"], info.fim_tokens["mid"])
            if info.has_fim
            else None
        )
        cached = _cache_dir(path)
        if use_cache and (cached / "config.json").is_file():
            log.info("loading the converted %s from %s", path.name, cached)
            model, tokenizer = _load_hf(cached, None)
        else:
            log.info("converting %s with transformers (once; then cached)", path.name)
            model, tokenizer = _load_hf(path.parent, path.name)
            if use_cache:
                _store(model, tokenizer, cached)
    if fim is not None and gguf is not None:
        fim = _with_repository(fim, tokenizer)
    model.eval()
    return HFBase(
        model=model,
        tokenizer=tokenizer,
        name=name,
        path=path,
        architecture=architecture,
        fim=fim,
        load_seconds=time.monotonic() - started,
        gguf=gguf,
    )


def _load_hf(folder: Path, gguf_file: str | None) -> tuple[Any, Any]:
    import torch

    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as err:
        raise BaseModelError(
            f"training needs transformers and peft: pip install -e '.[train]' ({err})"
        ) from err

    where = folder / gguf_file if gguf_file else folder
    kwargs: dict[str, Any] = {"gguf_file": gguf_file} if gguf_file else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), **kwargs)
        model = AutoModelForCausalLM.from_pretrained(
            str(folder), dtype=torch.float32, low_cpu_mem_usage=True, **kwargs
        )
    except Exception as err:  # transformers raises many kinds; all mean "cannot load"
        raise BaseModelError(
            f"transformers cannot load the base model {where}: {type(err).__name__}: {err}"
        ) from err
    return model, tokenizer


def _store(model: Any, tokenizer: Any, target: Path) -> None:
    """Save the converted model into the cache (a temporary folder renamed into place)."""
    tmp = target.with_name(target.name + ".tmp")
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        # The weights are dequantized float32 already; transformers still calls the model
        # "quantized with gguf" and refuses to save it, and its config note would make the
        # cached copy look for the GGUF again. Both are dropped for the save.
        config = model.config
        saved = getattr(config, "quantization_config", None)
        quantizer = getattr(model, "hf_quantizer", None)
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        model.hf_quantizer = None
        try:
            model.save_pretrained(str(tmp))
        finally:
            model.hf_quantizer = quantizer
            if saved is not None:
                config.quantization_config = saved
        tokenizer.save_pretrained(str(tmp))
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
        log.info("cached the converted model in %s", target)
    except (OSError, RuntimeError) as err:
        shutil.rmtree(tmp, ignore_errors=True)
        log.warning("could not cache the converted model in %s: %s", target, err)
