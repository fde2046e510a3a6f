"""`smalltalk-lsp adapters dataset|teach|train|export|eval`: train a project's own LoRA.

    smalltalk-lsp adapters dataset PROJECT            -> PROJECT/.smalltalk-lsp/training/dataset
    smalltalk-lsp adapters teach DATASET              (optional) reasoner notes -> teach.jsonl
    smalltalk-lsp adapters train DATASET              -> .../training/run (resumes if killed)
    smalltalk-lsp adapters export RUN --name NAME     -> PROJECT/.smalltalk-lsp/adapters/NAME.gguf
    smalltalk-lsp adapters eval DATASET --adapter F   -> held-out figures, base vs adapter
                                                      (--adapter again: several side by side)

Each stage prints a JSON summary on stdout; progress bars and errors go to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

HELP = "build a dataset from a project, train a LoRA adapter on CPU, export it, evaluate it"

log = logging.getLogger(__name__)


def _csv(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="stage", required=True)

    p = sub.add_parser("dataset", help="training examples from a project's methods")
    p.add_argument("project", type=Path, help="the project folder (or one file)")
    p.add_argument("--out", type=Path, help="dataset folder "
                   "(default: PROJECT/.smalltalk-lsp/training/dataset)")
    p.add_argument("--eval-fraction", type=float, default=0.25,
                   help="share of classes held out for evaluation (default 0.25)")
    p.add_argument("--fim-per-method", type=int, default=2)
    p.add_argument("--context-chars", type=int, default=1500,
                   help="file text before the cursor in a FIM prompt")
    p.add_argument("--suffix-chars", type=int, default=400,
                   help="file text after the cursor in a FIM prompt")
    p.add_argument("--snippet-chars", type=int, default=None,
                   help="project context in a FIM prompt (default: serving's)")
    p.add_argument("--context", choices=["class", "project"], default="class",
                   help="project context in FIM prompts: the class's definition and selectors "
                        "(serving with retrieval off), or serving's retrieval provider over "
                        "the whole project without an index")
    p.add_argument("--split-by", choices=["class", "package"], default="class",
                   help="hold out whole classes, or whole packages (sha256 of the name)")
    p.add_argument("--seed", type=int, default=0)

    p = sub.add_parser("teach", help="the reasoning model writes explanations and design notes")
    p.add_argument("dataset", type=Path)
    p.add_argument("--model", help="reasoning model, name or GGUF (default: models.reasoning "
                   "from the project's settings)")
    p.add_argument("--limit", type=int, default=16, help="methods to teach (default 16)")
    p.add_argument("--kinds", type=_csv, default=["explain", "design"])
    p.add_argument("--max-tokens", type=int, default=160)
    p.add_argument("--threads", type=int)
    p.add_argument("--no-progress", action="store_true")

    p = sub.add_parser("train", help="train a LoRA with peft on CPU (resumes a killed run)")
    p.add_argument("dataset", type=Path)
    p.add_argument("--out", type=Path, help="run folder (default: beside the dataset, 'run')")
    p.add_argument("--base-model",
                   help="embedded name, GGUF path or Hugging Face checkpoint folder (default: "
                        "models.coder_training_checkpoint or models.code_generation from the "
                        "project's settings)")
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--alpha", type=int, default=16)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--target-modules", type=_csv, default=["q_proj", "v_proj"],
                   help="comma-separated (q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,"
                        "down_proj)")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--max-seq-len", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--warmup-steps", type=int, default=0)
    p.add_argument("--checkpoint-every", type=int, default=10)
    p.add_argument("--kinds", type=_csv, default=["fim", "implement", "explain", "design"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int)
    p.add_argument("--minutes", type=float, default=None,
                   help="time budget: stop (checkpointed, adapter written) after this long; "
                   "the same command again continues")
    p.add_argument("--restart", action="store_true", help="discard the run's checkpoints")
    p.add_argument("--no-progress", action="store_true")

    p = sub.add_parser("export", help="PEFT adapter -> GGUF LoRA and manifest")
    p.add_argument("run", type=Path, help="a train run folder (or its adapter/ folder)")
    p.add_argument("--name", help="adapter name (default: the project folder's name)")
    p.add_argument("--out", type=Path, help="adapters folder "
                   "(default: PROJECT/.smalltalk-lsp/adapters)")
    p.add_argument("--base", help="the GGUF base the server runs (default: the run's base)")
    p.add_argument("--description", default="")

    p = sub.add_parser("eval", help="held-out figures with and without an adapter")
    p.add_argument("dataset", type=Path)
    p.add_argument("--adapter", type=Path, action="append", default=[],
                   help="a GGUF LoRA (omit for the base alone; repeat to compare several on "
                        "the same examples, the base measured once)")
    p.add_argument("--model", help="coder model, name or GGUF (default: "
                   "models.code_generation from the project's settings)")
    p.add_argument("--split", choices=["eval", "train"], default="eval")
    p.add_argument("--limit", type=int, help="examples to score (default: all)")
    p.add_argument("--generate", type=int, help="of those, examples to generate (default: all)")
    p.add_argument("--threads", type=int)
    p.add_argument("--out", type=Path, help="JSON report (default: DATASET/eval.json)")
    p.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    from adapters.dataset import DatasetError
    from adapters.evaluate import EvalError
    from adapters.export import ExportError
    from adapters.hf_base import BaseModelError
    from adapters.train import TrainError

    stages = {"dataset": _dataset, "teach": _teach, "train": _train, "export": _export,
              "eval": _eval}
    try:
        summary = stages[args.stage](args)
    except (DatasetError, TrainError, BaseModelError, ExportError, EvalError, ValueError,
            OSError) as err:
        print(f"smalltalk-lsp adapters {args.stage}: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"smalltalk-lsp adapters {args.stage}: interrupted; rerun to resume",
              file=sys.stderr)
        return 130
    print(json.dumps(summary, indent=2))
    return 0


def _dataset(args: argparse.Namespace) -> dict[str, Any]:
    from adapters.dataset import DatasetConfig, build_dataset, write_dataset

    extra = {} if args.snippet_chars is None else {"snippet_chars": args.snippet_chars}
    config = DatasetConfig(eval_fraction=args.eval_fraction, fim_per_method=args.fim_per_method,
                           context_chars=args.context_chars, suffix_chars=args.suffix_chars,
                           split_by=args.split_by, context=args.context,
                           seed=args.seed, **extra)
    project = args.project
    out = args.out or _project_dir(project) / ".smalltalk-lsp" / "training" / "dataset"
    manifest = write_dataset(build_dataset(project, config), out)
    return {"dataset": str(out), "counts": manifest.counts, "packages": manifest.packages,
            "classes": {k: len(v) for k, v in manifest.classes.items()},
            "methods": manifest.methods, "duplicates_dropped": manifest.duplicates_dropped}


def _teach(args: argparse.Namespace) -> dict[str, Any]:
    from adapters.teach import TeachConfig, teach

    model = args.model or _setting(args.dataset, "reasoning")
    config = TeachConfig(model=model, limit=args.limit, kinds=args.kinds,
                         max_tokens=args.max_tokens, threads=args.threads)
    return teach(args.dataset, config, progress=not args.no_progress).model_dump()


def _train(args: argparse.Namespace) -> dict[str, Any]:
    from adapters.train import TrainConfig, train

    base_model = args.base_model or _setting(args.dataset, "training")
    config = TrainConfig(
        base_model=base_model, rank=args.rank, alpha=args.alpha, dropout=args.dropout,
        target_modules=args.target_modules, steps=args.steps, learning_rate=args.lr,
        max_seq_len=args.max_seq_len, batch_size=args.batch_size,
        warmup_steps=args.warmup_steps, checkpoint_every=args.checkpoint_every,
        kinds=args.kinds, seed=args.seed, threads=args.threads, minutes=args.minutes,
    )
    out = args.out or args.dataset.parent / "run"
    result = train(args.dataset, out, config, progress=not args.no_progress,
                   restart=args.restart)
    summary = result.model_dump()
    losses = summary.pop("losses")
    summary["first_loss"] = losses[0] if losses else None
    summary["last_loss"] = losses[-1] if losses else None
    return summary


def _export(args: argparse.Namespace) -> dict[str, Any]:
    from adapters.export import ExportError, export_run

    run_dir = args.run.parent if args.run.name == "adapter" else args.run
    if not (run_dir / "train.json").is_file():
        raise ExportError(f"{args.run}: not a finished train run (no train.json)")
    return export_run(run_dir, name=args.name, out_dir=args.out, base=args.base,
                      description=args.description).model_dump()


def _eval(args: argparse.Namespace) -> dict[str, Any]:
    from adapters.evaluate import EvalConfig, evaluate

    model = args.model or _setting(args.dataset, "code_generation")
    config = EvalConfig(model=model, split=args.split, limit=args.limit,
                        generate_limit=args.generate, threads=args.threads)
    out = args.out or args.dataset / "eval.json"
    report = evaluate(args.dataset, args.adapter, config, out=out,
                      progress=not args.no_progress)
    summary: dict[str, Any] = {"report": str(out), "base": report.base.model_dump()}
    if report.with_adapter is not None:
        summary["adapter"] = report.with_adapter.model_dump()
    if len(report.adapters) > 1:
        summary["adapters"] = {k: m.model_dump() for k, m in report.adapters.items()}
    return summary


def _setting(dataset: Path, key: str) -> str:
    """A model from the settings of the dataset's project (`smalltalk-lsp.toml` there or the
    user's), as an embedded name or an absolute path. `training` is the coder's training
    checkpoint if one is set, else the coder."""
    from adapters.dataset import DatasetError, read_manifest
    from server.config import load_settings
    from server.engine.embedded import EMBEDDED, resolve_model_path

    project = Path(read_manifest(dataset).project)
    loaded = load_settings(project, trusted=True)  # the project the user named
    for problem in loaded.problems:
        log.warning("settings: %s", problem)
    models = loaded.settings.models
    if key == "training":
        key = "code_generation"
        value = models.coder_training_checkpoint or models.code_generation
    else:
        value = getattr(models, key)
    if value.strip().lower() in ("", "off", "none"):
        raise DatasetError(f"models.{key} is off in the settings of {project}; name a model "
                           "on the command line")
    if value.strip().lower() in EMBEDDED:
        return value.strip()
    return str(resolve_model_path(value, project))


def _project_dir(project: Path) -> Path:
    return project if project.is_dir() else project.parent
