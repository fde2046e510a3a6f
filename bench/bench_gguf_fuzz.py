"""The GGUF fuzz run at length, with llama.cpp's own loader beside it.

Mutants (tests/gguf_mutants.py: truncations, huge lengths, negative and overflowing counts,
offsets past the end, wrong types, bit flips) of the embedded SmolLM2 model and of a real LoRA
adapter for it go two ways, side by side in one run, each in a probe process:

- checked: the server's path (server.engine.gguf_check, then llama.cpp only if the file passed);
- unchecked: the same file straight into llama.cpp (llama_model_load_from_file /
  llama_adapter_lora_init), as it would be without the checks.

Prints, per file and path, how many mutants were refused, loaded and generated, or crashed the
process. The mutants are drawn by a fixed seed from the file's own header fields.

    PYTHONPATH=. .venv/bin/python bench/bench_gguf_fuzz.py --mutants 1000
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from gguf_mutants import Probe, Workbench, check_in_process, layout, mutants  # noqa: E402

from adapters import testing  # noqa: E402
from server.engine.embedded import resolve_model_path  # noqa: E402


def run(original: Path, kind: str, count: int, seed: int, folder: Path, base: Path) -> None:
    checked_probe = Probe(base, ROOT)
    raw_probe = Probe(base, ROOT)
    bench = Workbench(original, folder)
    checked: Counter[str] = Counter()
    raw: Counter[str] = Counter()
    crashes: list[str] = []
    started = time.perf_counter()
    for mutant in mutants(layout(original), count, seed):
        path = bench.apply(mutant)
        try:
            message = check_in_process(kind, path)
            if message is not None:
                checked["refused (Python checks)"] += 1
            else:
                result, _ = checked_probe.ask(kind, path)
                checked[result] += 1
                if result == "crashed":
                    crashes.append(mutant.label)
            result, _ = raw_probe.ask(f"raw-{kind}", path)
            raw[result] += 1
        finally:
            bench.restore(mutant)
    elapsed = time.perf_counter() - started
    checked_probe.close()
    raw_probe.close()
    print(f"\n{original.name} ({kind}), {count} mutants, seed {seed}, {elapsed:.0f} s")
    print(f"  checked (server):    {dict(checked)}")
    print(f"  unchecked llama.cpp: {dict(raw)}")
    print(f"  crashes: checked {checked['crashed']}, unchecked {raw['crashed']}")
    for label in crashes:
        print(f"  CHECKED PATH CRASHED: {label}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mutants", type=int, default=1000, help="per file")
    parser.add_argument("--seed", type=int, default=100)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} cores")
    base = resolve_model_path("smollm2-135m")
    with tempfile.TemporaryDirectory(prefix="gguf-fuzz-") as tmp:
        folder = Path(tmp)
        adapter = testing.write_lora(folder / "house.gguf", base, rank=2, layers=[0, 1], seed=1)
        run(base, "model", args.mutants, args.seed, folder, base)
        run(adapter, "adapter", args.mutants, args.seed + 1, folder, base)
    return 0


if __name__ == "__main__":
    sys.exit(main())
