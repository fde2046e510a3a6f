"""Train the sample project's own adapter on CPU and compare the coder with and without it on
the held-out classes, side by side in one run.

    .venv/bin/python bench/bench_training.py [--steps 60] [--lr 1e-3] [--threads 1] [--teach 0]

The stages are the ones `smalltalk-lsp adapters dataset|teach|train|export|eval` runs:
a dataset of tests/fixtures/sample/tonel (classes held out whole), optionally reasoner notes
(`--teach N` methods), a LoRA trained with PEFT on the Gemma 3 270M weights (transformers,
float32), exported to a GGUF LoRA and evaluated in llama.cpp on the quantized model the server
runs: perplexity of every held-out target, and FIM exact match, edit similarity and parse rate
on `--generate` of them. Work files go to a temporary folder (or `--keep DIR`).

One thread by default: on cores shared with other jobs, the spinning thread barriers of torch
and llama.cpp make two threads several times slower than one; on an idle machine pass
`--threads 2` (or the number of cores).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from adapters.dataset import DatasetConfig, build_dataset, write_dataset  # noqa: E402
from adapters.evaluate import EvalConfig, Metrics, evaluate  # noqa: E402
from adapters.export import export_run  # noqa: E402
from adapters.hf_base import load_base  # noqa: E402
from adapters.teach import TeachConfig, teach  # noqa: E402
from adapters.train import TrainConfig, train  # noqa: E402

SAMPLE = ROOT / "tests" / "fixtures" / "sample" / "tonel"


def _row(label: str, base: float | None, tuned: float | None, fmt: str = "{:.3f}") -> str:
    if base is None or tuned is None:
        return f"  {label:<24}{'-':>10}{'-':>10}"
    ratio = f"{tuned / base:.2f}x" if base else "-"
    return f"  {label:<24}{fmt.format(base):>10}{fmt.format(tuned):>10}{ratio:>9}"


def report(base: Metrics, tuned: Metrics) -> None:
    print(f"  {'':<24}{'base':>10}{'adapter':>10}{'ratio':>9}")
    print(_row("perplexity", base.perplexity, tuned.perplexity, "{:.2f}"))
    for kind in sorted(base.perplexity_by_kind):
        print(_row(f"  perplexity ({kind})", base.perplexity_by_kind[kind],
                   tuned.perplexity_by_kind.get(kind), "{:.2f}"))
    print(_row("nll per token", base.nll_per_token, tuned.nll_per_token))
    print(_row(f"FIM exact match ({base.fim_examples})", base.fim_exact_match,
               tuned.fim_exact_match, "{:.2f}"))
    print(_row(f"edit similarity ({base.generated})", base.edit_similarity,
               tuned.edit_similarity))
    print(_row(f"parse rate ({base.generated})", base.parse_rate, tuned.parse_rate, "{:.2f}"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--alpha", type=int, default=16)
    parser.add_argument("--targets", default="q_proj,k_proj,v_proj,o_proj")
    parser.add_argument("--max-seq-len", type=int, default=320)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--teach", type=int, default=0, help="methods the reasoner explains")
    parser.add_argument("--generate", type=int, default=12,
                        help="held-out examples generated for exact match / parse rate")
    parser.add_argument("--keep", type=Path, help="keep the work files in this folder")
    args = parser.parse_args()

    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-training-"))
    dataset_dir = work / "dataset"
    started = time.monotonic()
    manifest = write_dataset(build_dataset(SAMPLE, DatasetConfig()), dataset_dir)
    print(f"dataset: {manifest.counts['train']['total']} train examples "
          f"({manifest.methods['train']} methods of {', '.join(manifest.classes['train'])}), "
          f"{manifest.counts['eval']['total']} held out "
          f"({manifest.methods['eval']} methods of {', '.join(manifest.classes['eval'])})")
    kinds = ["fim", "implement"]
    if args.teach:
        taught = teach(dataset_dir, TeachConfig(limit=args.teach, threads=args.threads))
        print(f"teach: {taught.written} notes from the reasoner ({taught.skipped} unusable)")
        kinds += ["explain", "design"]

    base = load_base("gemma3-270m", threads=args.threads)
    print(f"base: {base.path.name} in PyTorch in {base.load_seconds:.1f} s")
    config = TrainConfig(
        steps=args.steps, learning_rate=args.lr, rank=args.rank, alpha=args.alpha,
        target_modules=args.targets.split(","), max_seq_len=args.max_seq_len,
        checkpoint_every=max(args.steps // 4, 1), kinds=kinds, threads=args.threads,
        warmup_steps=min(5, args.steps // 10),
    )
    result = train(dataset_dir, work / "run", config, base=base, restart=True)
    head = statistics.mean(result.losses[:10])
    tail = statistics.mean(result.losses[-10:])
    print(f"train: {config.steps} steps, rank {config.rank}, alpha {config.alpha}, "
          f"{','.join(config.target_modules)}, lr {config.learning_rate:g}, max "
          f"{config.max_seq_len} tokens ({result.tokens_per_step:.0f} per step): "
          f"{result.seconds:.0f} s, {result.seconds / max(config.steps, 1):.1f} s/step; "
          f"loss {head:.3f} (first 10) -> {tail:.3f} (last 10)")
    exported = export_run(work / "run", name="sample-style", out_dir=work / "adapters")
    print(f"export: {exported.path} ({exported.tensors} tensors, {exported.bytes / 1e6:.1f} MB)")
    del base

    eval_config = EvalConfig(generate_limit=args.generate, threads=args.threads)
    evaluated = evaluate(dataset_dir, Path(exported.path), eval_config,
                         out=work / "eval.json")
    assert evaluated.with_adapter is not None
    print(f"\nheld-out classes in llama.cpp (Q4_K_M base), {evaluated.base.examples} examples, "
          f"{evaluated.base.tokens} target tokens:")
    report(evaluated.base, evaluated.with_adapter)
    print(f"\nreport: {work / 'eval.json'}; total {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
