"""Train a LoRA on the coder's base weights with PEFT, on CPU, resumably.

One example per micro-step (no padding), the loss on the target tokens only, AdamW on the LoRA
weights. The example order is a seeded permutation per epoch, so step N always sees the same
examples and a resumed run continues exactly. Every `checkpoint_every` steps the LoRA weights,
the optimizer state and the losses go into `checkpoints/step-N/`, written in a temporary folder
and renamed into place: a failed write (a full disk) leaves the earlier checkpoints intact.

Run folder: run.json (settings, dataset hash), checkpoints/step-N/, adapter/ (PEFT format, the
input of export), train.json (losses, timings).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import os
import random
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, Field

from adapters.dataset import TRAIN_FILE, DatasetError, Example, read_examples, read_manifest
from adapters.hf_base import HFBase, load_base
from adapters.progress import Progress, rss_bytes
from adapters.render import fit_tokens, render

log = logging.getLogger(__name__)

TEACH_FILE = "teach.jsonl"
RUN_FILE = "run.json"
RESULT_FILE = "train.json"
ADAPTER_DIR = "adapter"
CHECKPOINTS_DIR = "checkpoints"
_STEP_DIR = re.compile(r"^step-(\d+)$")
# Settings that must not change when a run resumes (steps and checkpointing may).
_FIXED = ("base_model", "rank", "alpha", "dropout", "target_modules", "max_seq_len",
          "learning_rate", "batch_size", "warmup_steps", "weight_decay", "seed", "kinds")


class TrainError(RuntimeError):
    """Training cannot go on; the message says why and what is intact."""


class TrainConfig(BaseModel):
    # An embedded model name, a GGUF path or a Hugging Face checkpoint folder.
    base_model: str = "gemma3-270m"
    rank: int = Field(default=8, gt=0)
    alpha: int = Field(default=16, gt=0)
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "v_proj"])
    steps: int = Field(default=100, gt=0)
    learning_rate: float = Field(default=2e-4, gt=0)
    max_seq_len: int = Field(default=512, ge=16)
    # Examples per optimizer step (gradients accumulated one example at a time).
    batch_size: int = Field(default=1, gt=0)
    warmup_steps: int = Field(default=0, ge=0)
    weight_decay: float = Field(default=0.0, ge=0.0)
    checkpoint_every: int = Field(default=10, gt=0)
    keep_checkpoints: int = Field(default=2, gt=0)
    seed: int = 0
    threads: int | None = Field(default=None, gt=0)
    # A time budget in minutes (None: none): training stops after the step that reaches it,
    # with a checkpoint and the adapter written; the same command with a larger budget (or
    # none) resumes from there.
    minutes: float | None = Field(default=None, gt=0)
    # Example kinds to train on; teach examples (explain, design) come from teach.jsonl.
    kinds: list[str] = Field(default_factory=lambda: ["fim", "implement", "explain", "design"])


class TrainResult(BaseModel):
    run_dir: str
    dataset: str
    project: str
    adapter_dir: str
    steps: int
    resumed_from: int
    # True when the --minutes budget ended the run before `config.steps`.
    stopped_by_budget: bool = False
    peak_rss_bytes: int = 0
    losses: list[float]
    examples: int
    tokens_per_step: float
    seconds: float
    load_seconds: float
    base_model: str
    base_path: str
    base_gguf: str | None
    architecture: str
    config: dict[str, Any]


@dataclass
class _Encoded:
    ids: list[int]
    n_target: int


# --- data ------------------------------------------------------------------------------------


def training_examples(dataset_dir: Path, kinds: list[str]) -> tuple[list[Example], str]:
    """The train split (and teach examples, if any) of a dataset, and a hash of what was read."""
    read_manifest(dataset_dir)
    examples = read_examples(dataset_dir / TRAIN_FILE)
    teach = dataset_dir / TEACH_FILE
    if teach.is_file():
        examples += [e for e in read_examples(teach) if e.split == "train"]
    examples = [e for e in examples if e.kind in kinds]
    digest = hashlib.sha256("".join(sorted(e.id for e in examples)).encode()).hexdigest()
    return examples, digest


def encode(examples: list[Example], base: HFBase, max_len: int) -> list[_Encoded]:
    tokenizer = base.tokenizer
    found = []
    for example in examples:
        prompt, target = render(example, base.fim)
        prompt_ids = tokenizer(prompt, add_special_tokens=True)["input_ids"]
        target_ids = tokenizer(target, add_special_tokens=False)["input_ids"]
        if not target_ids:
            continue
        bos = tokenizer.bos_token_id
        keep = 1 if prompt_ids and bos is not None and prompt_ids[0] == bos else 0
        prompt_ids, target_ids = fit_tokens(prompt_ids, target_ids, max_len, keep)
        found.append(_Encoded(prompt_ids + target_ids, len(target_ids)))
    return found


def example_index(step: int, micro: int, batch: int, n: int, seed: int) -> int:
    """Which example micro-step `micro` of optimizer step `step` trains on."""
    k = step * batch + micro
    epoch, at = divmod(k, n)
    order = list(range(n))
    random.Random(f"{seed}:{epoch}").shuffle(order)
    return order[at]


# --- checkpoints -----------------------------------------------------------------------------


def _checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    folder = run_dir / CHECKPOINTS_DIR
    if not folder.is_dir():
        return []
    found = []
    for child in folder.iterdir():
        match = _STEP_DIR.match(child.name)
        if match and (child / "state.json").is_file():
            found.append((int(match.group(1)), child))
    return sorted(found)


def latest_checkpoint(run_dir: Path) -> tuple[int, Path] | None:
    found = _checkpoints(run_dir)
    return found[-1] if found else None


def _fsync_dir(folder: Path) -> None:
    for path in folder.iterdir():
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())


def save_checkpoint(
    run_dir: Path, step: int, model: Any, optimizer: Any, losses: list[float], keep: int
) -> Path:
    """Write checkpoint `step` atomically; on failure remove the partial one and raise
    TrainError naming the last good checkpoint."""
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    folder = run_dir / CHECKPOINTS_DIR
    target = folder / f"step-{step:06d}"
    tmp = folder / f".tmp-step-{step:06d}"
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        weights = {k: v.detach().contiguous() for k, v in get_peft_model_state_dict(model).items()}
        save_file(weights, str(tmp / "adapter_model.safetensors"))
        torch.save(optimizer.state_dict(), str(tmp / "optimizer.pt"))
        (tmp / "state.json").write_text(json.dumps({"step": step, "losses": losses}))
        _fsync_dir(tmp)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        last = latest_checkpoint(run_dir)
        intact = f"{last[1]} (step {last[0]}) is intact" if last else "no earlier checkpoint"
        raise TrainError(
            f"could not write the checkpoint of step {step} in {folder}: "
            f"{err.strerror or err}; {intact}; free space and run again to resume"
        ) from err
    for old_step, old in _checkpoints(run_dir)[:-keep]:
        if old_step != step:
            shutil.rmtree(old, ignore_errors=True)
    return target


def load_checkpoint(path: Path, model: Any, optimizer: Any) -> tuple[int, list[float]]:
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    try:
        state = json.loads((path / "state.json").read_text())
        set_peft_model_state_dict(model, load_file(str(path / "adapter_model.safetensors")))
        optimizer.load_state_dict(torch.load(str(path / "optimizer.pt"), weights_only=True))
    except (OSError, ValueError, RuntimeError, KeyError) as err:
        raise TrainError(f"checkpoint {path} cannot be read: {err}") from err
    return int(state["step"]), [float(x) for x in state["losses"]]


def _check_run(run_dir: Path, config: TrainConfig, data_hash: str, restart: bool) -> None:
    """Refuse to resume a run made with other settings or data."""
    run_file = run_dir / RUN_FILE
    wanted = {"config": config.model_dump(include=set(_FIXED)), "data": data_hash}
    if run_file.is_file() and not restart:
        try:
            found = json.loads(run_file.read_text())
        except ValueError:
            found = None
        if found != wanted and latest_checkpoint(run_dir) is not None:
            raise TrainError(
                f"{run_dir} holds a run with other settings or data; use another output "
                "folder, or restart (--restart) to discard its checkpoints"
            )
    if restart:
        shutil.rmtree(run_dir / CHECKPOINTS_DIR, ignore_errors=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    run_file.write_text(json.dumps(wanted, indent=2))


# --- the loop --------------------------------------------------------------------------------


def peft_model(base: HFBase, config: TrainConfig) -> Any:
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(config.seed)
    lora = LoraConfig(
        r=config.rank,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=list(config.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )
    try:
        # A copy: the loaded base stays clean for the next run in this process.
        return get_peft_model(copy.deepcopy(base.model), lora)
    except ValueError as err:
        raise TrainError(f"cannot put LoRA on {config.target_modules}: {err}") from err


def _lr(config: TrainConfig, step: int) -> float:
    if config.warmup_steps and step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    return config.learning_rate


def train(
    dataset_dir: Path,
    run_dir: Path,
    config: TrainConfig | None = None,
    base: HFBase | None = None,
    progress: bool = True,
    restart: bool = False,
) -> TrainResult:
    """Train (or resume) a LoRA run; returns where the PEFT adapter is. TrainError on failure,
    DatasetError for a bad dataset, BaseModelError for a base model that cannot load."""
    config = config or TrainConfig()
    dataset_dir, run_dir = Path(dataset_dir), Path(run_dir)
    project = read_manifest(dataset_dir).project
    examples, data_hash = training_examples(dataset_dir, config.kinds)
    if not examples:
        raise DatasetError(f"{dataset_dir}: no training examples of kinds {config.kinds}")
    _check_run(run_dir, config, data_hash, restart)
    if config.threads:
        torch.set_num_threads(config.threads)
    base = base or load_base(config.base_model, threads=config.threads)
    encoded = encode(examples, base, config.max_seq_len)
    if not encoded:
        raise DatasetError(f"{dataset_dir}: every training example has an empty target")
    model = peft_model(base, config)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        params, lr=config.learning_rate, weight_decay=config.weight_decay
    )
    start, losses = 0, list[float]()
    last = latest_checkpoint(run_dir)
    if last is not None:
        start, losses = load_checkpoint(last[1], model, optimizer)
        log.info("resuming %s from step %d", run_dir, start)
    started = time.monotonic()
    tokens = 0
    model.train()
    budget = config.minutes * 60 if config.minutes else None
    bar = Progress("training", config.steps, "steps", initial=start, enabled=progress,
                   budget_s=budget)
    peak = rss_bytes()
    done = start
    stopped = False
    for step in range(start, config.steps):
        for group in optimizer.param_groups:
            group["lr"] = _lr(config, step)
        # Dropout draws depend on the step only, so a resumed run repeats a fresh one.
        torch.manual_seed(config.seed * 1_000_003 + step)
        total = 0.0
        step_tokens = 0
        for micro in range(config.batch_size):
            item = encoded[example_index(step, micro, config.batch_size, len(encoded),
                                         config.seed)]
            loss = _loss(model, item) / config.batch_size
            loss.backward()
            total += float(loss.detach())
            step_tokens += len(item.ids)
        tokens += step_tokens
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if not math.isfinite(total):
            raise TrainError(f"the loss became {total} at step {step + 1}; lower the rate")
        losses.append(total)
        done = step + 1
        peak = max(peak, rss_bytes())
        bar.update(1, tokens=step_tokens,
                   extra=f"loss {sum(losses[-10:]) / len(losses[-10:]):.3f}")
        stopped = budget is not None and time.monotonic() - started >= budget
        if done % config.checkpoint_every == 0 or done == config.steps or stopped:
            save_checkpoint(run_dir, done, model, optimizer, losses, config.keep_checkpoints)
        if stopped and done < config.steps:
            log.warning("the %.1f-minute budget ends training at step %d of %d; run the "
                        "same command again to continue", config.minutes, done,
                        config.steps)
            break
        stopped = False
    bar.finish()
    seconds = time.monotonic() - started
    adapter_dir = _save_adapter(model, run_dir, config)
    result = TrainResult(
        run_dir=str(run_dir),
        dataset=str(dataset_dir),
        project=project,
        adapter_dir=str(adapter_dir),
        steps=done,
        resumed_from=start,
        stopped_by_budget=stopped,
        peak_rss_bytes=peak,
        losses=losses,
        examples=len(encoded),
        tokens_per_step=tokens / max(done - start, 1),
        seconds=seconds,
        load_seconds=base.load_seconds,
        base_model=config.base_model,
        base_path=str(base.path),
        base_gguf=str(base.gguf) if base.gguf else None,
        architecture=base.architecture,
        config=config.model_dump(),
    )
    (run_dir / RESULT_FILE).write_text(result.model_dump_json(indent=2))
    return result


def _loss(model: Any, item: _Encoded) -> torch.Tensor:
    ids = torch.tensor([item.ids], dtype=torch.long)
    # Only the logits that predict target tokens: the last n_target + 1 positions, less the
    # last. Gemma's 262k vocabulary makes full logits the largest tensor of the step.
    out = model(input_ids=ids, logits_to_keep=item.n_target + 1, use_cache=False)
    logits = out.logits[0, :-1].float()
    target = ids[0, -item.n_target :]
    return torch.nn.functional.cross_entropy(logits, target)


def _save_adapter(model: Any, run_dir: Path, config: TrainConfig) -> Path:
    target = run_dir / ADAPTER_DIR
    tmp = run_dir / f".tmp-{ADAPTER_DIR}"
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(str(tmp))
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise TrainError(
            f"could not write the adapter into {target}: {err.strerror or err}; the "
            f"checkpoint of step {config.steps} is intact, run again to write it"
        ) from err
    return target
