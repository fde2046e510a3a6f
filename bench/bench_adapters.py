"""LoRA hot-swap on the embedded coder (Gemma 3 270M), measured side by side in one run.

    .venv/bin/python bench/bench_adapters.py [--threads 2] [--repeat 3]

Adapters are written at run time with adapters.testing (seeded random LoRAs): "qv8" (rank 8
on attn_q/attn_v of every block, the shape a training run here produces) and "all16" (rank 16
on all seven projections of every block).

1. Swapping adapters in the live model vs reloading the model with the adapter: the set
   switch alone (llama_set_adapters_lora), loading a new adapter into the live model and
   switching to it (validation + llama_adapter_lora_init + set), against freeing the model and
   loading model, context and adapter again (what `Llama(lora_path=...)` amounts to).
2. The first completion after a swap vs a completion with no swap, on a ~1,000-token prompt
   of the sample project whose last line changes (as between keystrokes): no swap (KV prefix
   reused), after a swap with the KV cache reset, and after swapping back with the set's KV
   snapshot restored.
3. Memory per loaded adapter (process RSS before and after loading 4 copies) vs its file size.
4. Tokens/s with 0, 1 and 2 adapters active (prompt evaluation and generation).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from adapters import testing
from adapters.runtime import KVSnapshots, set_context_adapters
from adapters.validation import validate_adapter
from server.engine.embedded import resolve_model_path
from server.engine.llama_model import LoadedModel, llama, load_model
from server.engine.session import LlamaSession
from server.engine.types import CancelToken, GenerateParams

SAMPLE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "sample" / "tonel"
MB = 1024 * 1024


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def rss() -> int:
    gc.collect()
    return int(psutil.Process().memory_info().rss)


def prompt_text(target_chars: int = 3600) -> str:
    text = ""
    for path in sorted(SAMPLE.rglob("*.st")):
        text += path.read_text(encoding="utf-8") + "\n"
        if len(text) >= target_chars:
            break
    return text[:target_chars] + "\n\nSRStore >> isEmpty [\n\t"


def section(title: str) -> None:
    print(f"\n## {title}\n")


def swap_vs_reload(
    model: LoadedModel, base: Path, files: dict[str, Path], threads: int, repeat: int
) -> None:
    section("1. swap in the live model vs reload the model with the adapter")
    lib = llama()
    session = LlamaSession(model, n_ctx=2048, n_batch=512, n_threads=threads)
    pool = model.adapters
    pool.load("qv8", files["qv8"])
    pool.load("all16", files["all16"])
    a, b = pool.active([("qv8", 1.0)]), pool.active([("all16", 1.0)])

    def switch() -> None:
        set_context_adapters(session.ctx, a)
        set_context_adapters(session.ctx, b)

    set_ms = median_ms(switch, 1000) / 2

    def load_and_switch(name: str) -> Callable[[], None]:
        def run() -> None:
            pool.unload("fresh")
            pool.load("fresh", files[name])
            set_context_adapters(session.ctx, pool.active([("fresh", 1.0)]))

        return run

    load_ms = {name: median_ms(load_and_switch(name), repeat) for name in ("qv8", "all16")}
    pool.unload("fresh")
    set_context_adapters(session.ctx, ())

    def reload(name: str) -> Callable[[], None]:
        def run() -> None:
            other = load_model(base)
            params = lib.llama_context_default_params()
            params.n_ctx, params.n_batch, params.n_threads = 2048, 512, threads
            params.n_outputs_max = 1
            ctx = lib.llama_init_from_model(other.ptr, params)
            validate_adapter(files[name], base)
            other.adapters.load(name, files[name])
            set_context_adapters(ctx, other.adapters.active([(name, 1.0)]))
            lib.llama_free(ctx)
            other.close()

        return run

    reload_ms = {name: median_ms(reload(name), repeat) for name in ("qv8", "all16")}
    session.close()
    print(
        "| adapter | switch the set (loaded) | load + switch in the live model "
        "| reload model + context + adapter | reload / load+switch | reload / switch |"
    )
    print("|---|---|---|---|---|---|")
    for name in ("qv8", "all16"):
        full, live = reload_ms[name], load_ms[name]
        print(
            f"| {name} | {set_ms * 1000:.1f} µs | {live:.1f} ms | {full:.0f} ms "
            f"| {full / live:.0f}x | {full / set_ms:,.0f}x |"
        )


def first_completion_after_swap(
    model: LoadedModel, files: dict[str, Path], threads: int, repeat: int
) -> None:
    section("2. first completion after a swap vs a completion with no swap")
    for name in ("qv8", "all16"):
        model.adapters.load(name, files[name])
    text = prompt_text()
    results: dict[str, list[tuple[float, int, int]]] = {}
    for mode, snapshots in (("reset", 0), ("snapshot", 2)):
        session = LlamaSession(model, n_ctx=2048, n_batch=512, n_threads=threads)
        session.adapters.snapshots = KVSnapshots(max_count=snapshots)

        def run(
            pairs: tuple[tuple[str, float], ...], tail: str, session: LlamaSession = session
        ) -> tuple[float, int, int]:
            params = GenerateParams(max_tokens=16, adapters=pairs)
            started = time.perf_counter()
            g = session.generate(text + tail, params, CancelToken())
            return (time.perf_counter() - started) * 1000, g.prompt_tokens, g.reused_tokens

        qv8, all16 = (("qv8", 1.0),), (("all16", 1.0),)
        run(qv8, "")  # warm: qv8's KV holds the prompt
        for i in range(repeat):
            results.setdefault("no swap", []).append(run(qv8, f"^ {i}"))
            results.setdefault(f"swap to another set ({mode})", []).append(run(all16, f"^ {i}"))
            results.setdefault(f"swap back ({mode})", []).append(run(qv8, f"^ {i} "))
        if snapshots:
            print(
                f"snapshots: {session.adapters.snapshots.saves} saved, "
                f"{session.adapters.snapshots.restores} restored, "
                f"{session.adapters.snapshots.bytes / MB:.1f} MiB kept"
            )
        session.close()
    base = statistics.median(r[0] for r in results["no swap"])
    print("\n| request | prompt tokens | reused | total ms (median) | vs no swap |")
    print("|---|---|---|---|---|")
    for name, rows in results.items():
        ms = statistics.median(r[0] for r in rows)
        print(f"| {name} | {rows[-1][1]} | {rows[-1][2]} | {ms:.0f} | {ms / base:.1f}x |")


def memory_per_adapter(model: LoadedModel, files: dict[str, Path]) -> None:
    section("3. memory per loaded adapter vs file size")
    pool = model.adapters
    for name in ("qv8", "all16"):
        for i in range(4):
            pool.unload(f"{name}-{i}")
        before = rss()
        for i in range(4):
            pool.load(f"{name}-{i}", files[name])
        after = rss()
        for i in range(4):
            pool.unload(f"{name}-{i}")
        freed = rss()
        size = files[name].stat().st_size
        per = (after - before) / 4
        print(
            f"- {name}: file {size / MB:.2f} MiB; RSS +{per / MB:.2f} MiB per loaded adapter "
            f"({per / size:.2f}x the file); after unloading all 4, RSS "
            f"{(freed - before) / MB:+.1f} MiB vs before loading"
        )


def tokens_per_second(model: LoadedModel, threads: int, repeat: int) -> None:
    section("4. tokens/s with 0, 1 and 2 adapters active")
    text = prompt_text(2400)
    print("| active | prompt tokens/s | generation tokens/s |")
    print("|---|---|---|")
    for label, pairs in (
        ("none", ()),
        ("qv8", (("qv8", 1.0),)),
        ("qv8 + all16", (("qv8", 1.0), ("all16", 1.0))),
    ):
        prompt_rates, gen_rates = [], []
        session = LlamaSession(model, n_ctx=2048, n_batch=512, n_threads=threads)
        for i in range(repeat):
            session.reset()
            params = GenerateParams(max_tokens=48, adapters=pairs)
            # A stop-free prompt: generation runs the full 48 tokens unless EOS.
            g = session.generate(text + f'\n"{i}"', params, CancelToken())
            prompt_rates.append(g.prompt_tokens / (g.prompt_ms / 1000))
            if g.generated_tokens > 1:
                gen_rates.append(g.generated_tokens / (g.generate_ms / 1000))
        session.close()
        gen = f"{statistics.median(gen_rates):.1f}" if gen_rates else "n/a"
        print(f"| {label} | {statistics.median(prompt_rates):.0f} | {gen} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    base = resolve_model_path("gemma3-270m")
    load = psutil.getloadavg()[0]
    print(f"# LoRA hot-swap on {base.name}, {args.threads} threads, load average {load:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        files = {
            "qv8": testing.write_lora(
                folder / "qv8.gguf",
                base,
                rank=8,
                targets=("attn_q", "attn_v"),
                seed=1,
                strength=0.1,
            ),
            "all16": testing.write_lora(folder / "all16.gguf", base, rank=16, seed=2, strength=0.1),
        }
        model = load_model(base)
        try:
            swap_vs_reload(model, base, files, args.threads, args.repeat)
            first_completion_after_swap(model, files, args.threads, args.repeat)
            memory_per_adapter(model, files)
            tokens_per_second(model, args.threads, args.repeat)
        finally:
            model.close()
    print(f"\nload average at the end: {psutil.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
