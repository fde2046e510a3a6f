"""Evaluate the coder on the held-out split, with and without an adapter, in llama.cpp.

Generation goes through the server's own engine (`open_context`: the same context setup,
sampling and stop handling as completions), on the quantized model the server runs. Perplexity
needs a logit row per target token, which the serving context does not keep (it reserves one
row), so a scoring context is opened on the same loaded model. The adapter is loaded with
`llama_adapter_lora_init` and set on both contexts with `llama_set_adapters_lora`, and the
adapter key in GenerateParams keeps the KV cache of one setting from serving the other.

Several adapters can be measured in one run (base first, then each adapter in turn, on the
same examples): the base figures are computed once.

Figures per setting: perplexity of the targets given their prompts (all held-out examples, or
`limit`), and on the generated subset: FIM exact match, edit similarity to the target, and the
parse rate of the method with the completion put in place.
"""

from __future__ import annotations

import difflib
import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from adapters.dataset import Example, Split, load_split
from adapters.progress import Progress
from adapters.render import fit_tokens, render
from server.engine.embedded import resolve_model_path
from server.engine.llama_model import LoadedModel, llama, load_model
from server.engine.lora import (
    ActiveAdapter,
    AdapterLoadError,
    ModelAdapters,
    adapter_key,
    set_context_adapters,
)
from server.engine.lora_validation import AdapterError
from server.engine.registry import RoleSpec, open_context
from server.engine.types import CancelToken, GenerateParams
from smalltalk_grammar import parse

log = logging.getLogger(__name__)

RESULT_FILE = "eval.json"
_SCORE_ROWS = 128  # logit rows per decode call in the scoring context (x 262k floats on Gemma)


class EvalConfig(BaseModel):
    model: str = "gemma3-270m"
    split: Split = "eval"
    # Examples scored for perplexity (None: all) and, of those, how many are generated.
    limit: int | None = Field(default=None, gt=0)
    generate_limit: int | None = Field(default=None, ge=0)
    n_ctx: int = Field(default=2048, gt=0)
    threads: int | None = Field(default=None, gt=0)
    max_tokens_line: int = Field(default=48, gt=0)
    max_tokens_block: int = Field(default=128, gt=0)
    scale: float = 1.0


class Metrics(BaseModel):
    examples: int
    tokens: int
    nll_per_token: float
    perplexity: float
    perplexity_by_kind: dict[str, float]
    generated: int
    fim_examples: int
    fim_exact_match: float | None
    edit_similarity: float | None
    parse_rate: float | None
    seconds: float


class EvalReport(BaseModel):
    dataset: str
    split: str
    model: str
    adapter: str | None
    config: EvalConfig
    base: Metrics
    # The first adapter's figures (None without one), and every adapter's by file stem.
    with_adapter: Metrics | None = None
    adapters: dict[str, Metrics] = Field(default_factory=dict)
    completions: list[dict[str, Any]] = Field(default_factory=list)


class EvalError(RuntimeError):
    pass


class EvalEngine:
    """The coder as the server runs it, plus a scoring context and loaded adapters."""

    def __init__(self, model: str, n_ctx: int = 2048, threads: int | None = None,
                 loaded: LoadedModel | None = None) -> None:
        """`loaded`: a model already loaded (it stays open after close); else `model` loads."""
        import os

        path = loaded.path if loaded is not None else resolve_model_path(model)
        n_threads = threads or os.cpu_count() or 1
        self.spec = RoleSpec(role="coder", name=model, path=path, n_ctx=n_ctx, n_batch=512,
                             n_threads=n_threads, mmap=True, mlock=False)
        self._owns_model = loaded is None
        self.model: LoadedModel = loaded if loaded is not None else load_model(path)
        self.engine = open_context(self.spec, self.model)
        self.n_ctx = self.engine.n_ctx
        self._score_ctx = _scoring_context(self.model, self.n_ctx, n_threads)
        # The model's own adapter pool, as the server uses it: the serving context applies
        # a request's (name, scale) set itself; the scoring context is set here.
        self.adapters: ModelAdapters = self.model.adapters
        self.adapters.attach(self._drop)
        self._loaded: set[str] = set()
        self._wanted: tuple[tuple[str, float], ...] = ()
        self.adapter_key = ""

    @property
    def fim(self) -> Any:
        return self.engine.fim

    def use(self, adapter: Path | None, scale: float = 1.0) -> None:
        """Make `adapter` (None: no adapter) active on both contexts, validated and loaded as
        the server loads adapters."""
        active: tuple[ActiveAdapter, ...] = ()
        self._wanted = ()
        if adapter is not None:
            name = f"eval-{Path(adapter).stem}"
            try:
                self.adapters.load(name, adapter)
            except (AdapterError, AdapterLoadError) as err:
                raise EvalError(str(err)) from err
            self._loaded.add(name)
            self._wanted = ((name, scale),)
            active = self.adapters.active(self._wanted)
        set_context_adapters(self._score_ctx, active)
        self.adapter_key = adapter_key(active)

    def _drop(self, ptr: Any) -> None:
        if self._score_ctx is not None:
            set_context_adapters(self._score_ctx, ())

    def generate(self, prompt: str, max_tokens: int, stop: tuple[str, ...]) -> str:
        """Greedy text after `prompt`, through the serving context; a stop string that ended
        it is kept at its end (the `]` that closes a method is part of an implement target)."""
        params = GenerateParams(max_tokens=max_tokens, stop=stop, adapters=self._wanted,
                                adapter_key=self.adapter_key)
        result = self.engine.generate(prompt, params, CancelToken())
        if result.stop_reason == "error":
            raise EvalError(f"generation failed: {result.error}")
        if result.stop_reason == "stop":
            ended = [s for s in stop if s != "\n"]
            if ended:
                return result.text + ended[0]
        return result.text

    def nll(self, prompt: str, target: str) -> tuple[float, int]:
        """Summed negative log-likelihood of `target` after `prompt`, and its token count."""
        lib = llama()
        prompt_ids = self.model.tokenize(prompt, self.model.add_bos, True)
        target_ids = self.model.tokenize(target, False, False)
        if not target_ids:
            return 0.0, 0
        keep = 1 if self.model.add_bos else 0
        prompt_ids, target_ids = fit_tokens(prompt_ids, target_ids, self.n_ctx, keep)
        tokens = prompt_ids + target_ids
        n_prompt = len(prompt_ids)
        lib.llama_memory_clear(lib.llama_get_memory(self._score_ctx), True)
        # Positions n_prompt-1 .. end-1 predict the target tokens.
        _decode(self._score_ctx, tokens[: n_prompt - 1], 0, logits=False)
        total = 0.0
        n_vocab = self.model.n_vocab
        for start in range(n_prompt - 1, len(tokens) - 1, _SCORE_ROWS):
            chunk = tokens[start : min(start + _SCORE_ROWS, len(tokens) - 1)]
            _decode(self._score_ctx, chunk, start, logits=True)
            rows = np.ctypeslib.as_array(lib.llama_get_logits(self._score_ctx),
                                         shape=(len(chunk) * n_vocab,))
            rows = rows.reshape(len(chunk), n_vocab)
            top = rows.max(axis=1)
            log_z = top + np.log(np.exp(rows - top[:, None]).sum(axis=1, dtype=np.float64))
            nxt = np.array(tokens[start + 1 : start + 1 + len(chunk)])
            total += float((log_z - rows[np.arange(len(chunk)), nxt]).sum())
        return total, len(target_ids)

    def close(self) -> None:
        lib = llama()
        self.engine.close()
        if self._score_ctx is not None:
            lib.llama_free(self._score_ctx)
            self._score_ctx = None
        self.adapters.detach(self._drop)
        for name in self._loaded:
            self.adapters.unload(name)
        if self._owns_model:
            self.model.close()


def _scoring_context(model: LoadedModel, n_ctx: int, threads: int) -> Any:
    lib = llama()
    params = lib.llama_context_default_params()
    params.n_ctx = n_ctx
    params.n_batch = 512
    params.n_ubatch = 512
    params.n_threads = threads
    params.n_threads_batch = threads
    params.n_outputs_max = _SCORE_ROWS
    params.no_perf = True
    ctx = lib.llama_init_from_model(model.ptr, params)
    if not ctx:
        raise EvalError(f"{model.path}: llama.cpp could not create a scoring context")
    return ctx


def _decode(ctx: Any, tokens: list[int], pos0: int, logits: bool) -> None:
    lib = llama()
    for start in range(0, len(tokens), 512 if not logits else _SCORE_ROWS):
        part = tokens[start : start + (512 if not logits else _SCORE_ROWS)]
        batch = lib.llama_batch_init(len(part), 0, 1)
        try:
            batch.n_tokens = len(part)
            for i, token in enumerate(part):
                batch.token[i] = token
                batch.pos[i] = pos0 + start + i
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = 0
                batch.logits[i] = logits
            rc = lib.llama_decode(ctx, batch)
            if rc != 0:
                raise EvalError(f"llama_decode returned {rc} while scoring")
        finally:
            lib.llama_batch_free(batch)


# --- metrics ---------------------------------------------------------------------------------


def cut_completion(example: Example, text: str) -> str:
    """A completion as the server would keep it: one line in line mode; in block mode up to
    the end of the method (the `]` line), which implement targets include."""
    if example.mode == "line":
        return text.split("\n", 1)[0]
    end = text.find("\n]")
    if end < 0:
        return text
    return text[: end + 2] if example.middle.endswith("\n]") else text[:end]


def parses(example: Example, completion: str) -> bool:
    body = completion[:-2] if completion.endswith("\n]") else completion
    source = example.method_before + body + example.method_after
    parsed = parse(source)
    return len(parsed.methods) == 1 and not any(
        d.severity == "error" for d in parsed.diagnostics
    )


def edit_similarity(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def pick(examples: Sequence[Example], limit: int | None) -> list[Example]:
    """A deterministic subset, kinds interleaved so a small limit still sees each kind."""
    by_kind: dict[str, list[Example]] = {}
    for example in sorted(examples, key=lambda e: e.id):
        by_kind.setdefault(example.kind, []).append(example)
    ordered: list[Example] = []
    queues = [list(v) for _, v in sorted(by_kind.items())]
    while any(queues):
        for queue in queues:
            if queue:
                ordered.append(queue.pop(0))
    return ordered[:limit] if limit else ordered


def measure(engine: EvalEngine, examples: list[Example], generate: int, config: EvalConfig,
            record: list[dict[str, Any]] | None = None, progress: bool = True) -> Metrics:
    started = time.monotonic()
    nll_total, tokens = 0.0, 0
    by_kind: dict[str, list[float]] = {}
    setting = engine.adapter_key or "base"
    scoring = Progress(f"eval {setting}: scoring", len(examples), "examples", enabled=progress)
    for example in examples:
        prompt, target = render(example, engine.fim)
        nll, n = engine.nll(prompt, target)
        nll_total += nll
        tokens += n
        kind = by_kind.setdefault(example.kind, [0.0, 0.0])
        kind[0] += nll
        kind[1] += n
        scoring.update(1, tokens=n)
    scoring.finish()
    n_generate = min(generate, len(examples))
    writing = Progress(f"eval {setting}: generating", n_generate, "examples", enabled=progress)
    exact: list[bool] = []
    similarity: list[float] = []
    parsed: list[bool] = []
    for example in examples[:generate]:
        prompt, target = render(example, engine.fim)
        line = example.mode == "line"
        # Line suggestions end at the line end; block ones at the `]` closing the method.
        raw = engine.generate(
            prompt,
            config.max_tokens_line if line else config.max_tokens_block,
            ("\n",) if line else ("\n]",),
        )
        completion = cut_completion(example, raw)
        if example.kind == "fim":
            exact.append(completion.rstrip() == target.rstrip())
        similarity.append(edit_similarity(completion, target))
        parsed.append(parses(example, completion))
        if record is not None:
            record.append({"id": example.id, "kind": example.kind, "method": example.method,
                           "adapter": engine.adapter_key or None, "target": target,
                           "completion": completion})
        writing.update(1, extra=f"similarity {sum(similarity) / len(similarity):.3f}")
    if n_generate:
        writing.finish()
    per_token = nll_total / tokens if tokens else math.nan
    return Metrics(
        examples=len(examples),
        tokens=tokens,
        nll_per_token=per_token,
        perplexity=math.exp(per_token) if tokens else math.nan,
        perplexity_by_kind={k: math.exp(v[0] / v[1]) for k, v in by_kind.items() if v[1]},
        generated=len(similarity),
        fim_examples=len(exact),
        fim_exact_match=sum(exact) / len(exact) if exact else None,
        edit_similarity=sum(similarity) / len(similarity) if similarity else None,
        parse_rate=sum(parsed) / len(parsed) if parsed else None,
        seconds=time.monotonic() - started,
    )


def evaluate(
    dataset_dir: Path,
    adapter: Path | Sequence[Path] | None,
    config: EvalConfig | None = None,
    out: Path | None = None,
    engine: EvalEngine | None = None,
    progress: bool = True,
) -> EvalReport:
    """Base figures and each adapter's (one path or several, in order) on a split; written as
    JSON to `out` when given."""
    config = config or EvalConfig()
    adapters = _adapter_list(adapter)
    examples = pick(load_split(Path(dataset_dir), config.split), config.limit)
    if not examples:
        raise EvalError(f"{dataset_dir}: the {config.split} split is empty")
    own = engine is None
    engine = engine or EvalEngine(config.model, config.n_ctx, config.threads)
    generate = len(examples) if config.generate_limit is None else config.generate_limit
    completions: list[dict[str, Any]] = []
    tuned: dict[str, Metrics] = {}
    try:
        engine.use(None)
        base = measure(engine, examples, generate, config, completions, progress)
        for path in adapters:
            engine.use(path, config.scale)
            tuned[path.stem] = measure(engine, examples, generate, config, completions,
                                       progress)
        engine.use(None)
    finally:
        if own:
            engine.close()
    report = EvalReport(
        dataset=str(dataset_dir),
        split=config.split,
        model=config.model,
        adapter=str(adapters[0]) if adapters else None,
        config=config,
        base=base,
        with_adapter=tuned[adapters[0].stem] if adapters else None,
        adapters=tuned,
        completions=completions,
    )
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(report.model_dump_json(indent=2), encoding="utf-8")
    return report


def _adapter_list(adapter: Path | Sequence[Path] | None) -> list[Path]:
    """The adapter files to measure, checked before any model work: each must exist, and
    their stems (the report's keys) must differ."""
    if adapter is None:
        return []
    paths = [Path(adapter)] if isinstance(adapter, (str, Path)) else [Path(a) for a in adapter]
    for path in paths:
        if not path.is_file():
            raise EvalError(f"{path}: no such adapter file")
    stems = [path.stem for path in paths]
    if len(set(stems)) != len(stems):
        raise EvalError(f"adapters with the same file name cannot be told apart: {stems}")
    return paths
