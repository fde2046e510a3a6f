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
import ctypes
import gc
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import psutil

from adapters import testing
from server.engine.embedded import resolve_model_path
from server.engine.llama_model import LoadedModel, llama, load_model
from server.engine.lora import KVSnapshots, set_context_adapters
from server.engine.lora_validation import validate_adapter
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


def prompt_text(target_chars: int = 2400) -> str:
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
    load_ms: dict[str, float] = {}
    check_ms: dict[str, float] = {}
    for name in ("qv8", "all16"):
        check_ms[name] = median_ms(partial(validate_adapter, files[name], base), repeat)

        def load_and_switch(name: str = name) -> None:
            pool.unload("fresh")
            pool.load("fresh", files[name])
            set_context_adapters(session.ctx, pool.active([("fresh", 1.0)]))

        load_ms[name] = median_ms(load_and_switch, repeat)
    pool.unload("fresh")
    set_context_adapters(session.ctx, ())
    session.close()

    def reload(name: str) -> None:
        other = load_model(base)
        params = lib.llama_context_default_params()
        params.n_ctx, params.n_batch, params.n_threads = 2048, 512, threads
        params.n_outputs_max = 1
        ctx = lib.llama_init_from_model(other.ptr, params)
        other.adapters.load(name, files[name])
        set_context_adapters(ctx, other.adapters.active([(name, 1.0)]))
        lib.llama_free(ctx)
        other.close()

    reload_ms = {name: median_ms(partial(reload, name), repeat) for name in ("qv8", "all16")}
    print(
        "| adapter | file | switch the set (loaded) | load a new one + switch "
        "(of which validation) | reload model + context + adapter | reload / load+switch "
        "| reload / switch |"
    )
    print("|---|---|---|---|---|---|---|")
    for name in ("qv8", "all16"):
        full, live = reload_ms[name], load_ms[name]
        size = files[name].stat().st_size / MB
        print(
            f"| {name} | {size:.1f} MiB | {set_ms * 1000:.1f} µs | {live:.1f} ms "
            f"({check_ms[name]:.1f} ms) | {full:.0f} ms | {full / live:.0f}x "
            f"| {full / set_ms:,.0f}x |"
        )


def first_completion_after_swap(
    model: LoadedModel, files: dict[str, Path], threads: int, repeat: int
) -> None:
    section("2. first completion after a swap vs a completion with no swap")
    for name in ("qv8", "all16"):
        model.adapters.load(name, files[name])
    text = prompt_text()
    qv8, all16 = (("qv8", 1.0),), (("all16", 1.0),)
    sessions = {}
    for mode, snapshots in (("KV reset", 0), ("KV snapshot of the set restored", 2)):
        session = LlamaSession(model, n_ctx=2048, n_batch=512, n_threads=threads)
        session.adapters.snapshots = KVSnapshots(max_count=snapshots)
        sessions[mode] = session

    def run(
        session: LlamaSession, pairs: tuple[tuple[str, float], ...], tail: str
    ) -> tuple[float, int, int]:
        params = GenerateParams(max_tokens=8, adapters=pairs)
        started = time.perf_counter()
        g = session.generate(text + tail, params, CancelToken())
        return (time.perf_counter() - started) * 1000, g.prompt_tokens, g.reused_tokens

    # Both sets have seen the prompt once on each context (a snapshot of each exists in
    # snapshot mode); rounds interleave the two contexts, so load from other jobs hits both.
    for session in sessions.values():
        run(session, qv8, "")
        run(session, all16, "")
    no_swap = "no swap (same set as the previous request)"
    rows: dict[str, list[tuple[float, int, int]]] = {}
    for i in range(repeat):
        for mode, session in sessions.items():
            # The last line changes between requests, as it does while typing.
            rows.setdefault(no_swap, []).append(run(session, all16, f"^ {i}"))
            rows.setdefault(f"first request after a swap, {mode}", []).append(
                run(session, qv8, f"^ {i}")
            )
            run(session, all16, f"^ {i}")  # back to all16 for the next round's "no swap"
    kept = sessions["KV snapshot of the set restored"].adapters.snapshots
    print(
        f"snapshots: {kept.saves} saved, {kept.restores} restored, "
        f"{kept.bytes / MB:.1f} MiB kept for {len(text)} characters of prompt"
    )
    for session in sessions.values():
        session.close()
    base = statistics.median(r[0] for r in rows[no_swap])
    print("\n| request (8 tokens generated) | prompt tokens | reused | ms (median) | vs no swap |")
    print("|---|---|---|---|---|")
    for name, found in rows.items():
        ms = statistics.median(r[0] for r in found)
        print(f"| {name} | {found[-1][1]} | {found[-1][2]} | {ms:.0f} | {ms / base:.1f}x |")


def heap_in_use() -> int:
    """Bytes malloc has handed out (glibc mallinfo2): llama.cpp's adapter buffers are
    malloc'd, and RSS alone hides reuse of memory freed earlier in the process."""

    class MallInfo2(ctypes.Structure):
        _fields_ = [
            (name, ctypes.c_size_t)
            for name in (
                "arena",
                "ordblks",
                "smblks",
                "hblks",
                "hblkhd",
                "usmblks",
                "fsmblks",
                "uordblks",
                "fordblks",
                "keepcost",
            )
        ]

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    info = libc.mallinfo2()
    return int(info.uordblks + info.hblkhd)


def memory_per_adapter(model: LoadedModel, files: dict[str, Path]) -> None:
    section("3. memory per loaded adapter vs file size")
    pool = model.adapters
    print(
        "| adapter | file | tensor data | heap per loaded adapter | RSS per loaded adapter "
        "| heap after unloading |"
    )
    print("|---|---|---|---|---|---|")
    for name in ("qv8", "all16"):
        heap0, rss0 = heap_in_use(), rss()
        for i in range(4):
            pool.load(f"{name}-{i}", files[name])
        heap1, rss1 = heap_in_use(), rss()
        for i in range(4):
            pool.unload(f"{name}-{i}")
        heap2 = heap_in_use()
        size = files[name].stat().st_size
        tensors = validate_adapter(files[name], model.path).tensor_bytes
        per_heap, per_rss = (heap1 - heap0) / 4, (rss1 - rss0) / 4
        print(
            f"| {name} | {size / MB:.2f} MiB | {tensors / MB:.2f} MiB | {per_heap / MB:.2f} MiB "
            f"({per_heap / size:.2f}x the file) | {per_rss / MB:.2f} MiB "
            f"| {(heap2 - heap0) / MB:+.2f} MiB |"
        )


def tokens_per_second(model: LoadedModel, threads: int, repeat: int) -> None:
    section("4. tokens/s with 0, 1 and 2 adapters active")
    text = prompt_text(1600)
    configs = {
        "none": (),
        "qv8": (("qv8", 1.0),),
        "qv8 + all16": (("qv8", 1.0), ("all16", 1.0)),
    }
    prompt_rates: dict[str, list[float]] = {k: [] for k in configs}
    gen_rates: dict[str, list[float]] = {k: [] for k in configs}
    session = LlamaSession(model, n_ctx=2048, n_batch=512, n_threads=threads)
    session.adapters.snapshots = KVSnapshots(max_count=0)
    session.generate(text, GenerateParams(max_tokens=4), CancelToken())  # warm up
    # Rounds interleave the sets, so a burst of load from other jobs hits all of them.
    for i in range(repeat):
        for label, pairs in configs.items():
            session.reset()
            params = GenerateParams(max_tokens=32, adapters=pairs)
            out = session.generate(text + f'\n"{i}"', params, CancelToken())
            prompt_rates[label].append(out.prompt_tokens / (out.prompt_ms / 1000))
            if out.generated_tokens > 1:
                gen_rates[label].append(out.generated_tokens / (out.generate_ms / 1000))
    session.close()
    base_p = statistics.median(prompt_rates["none"])
    base_g = statistics.median(gen_rates["none"]) if gen_rates["none"] else 0.0
    print(
        "| active | prompt tokens/s (median, best) | vs none | generation tokens/s "
        "(median, best) | vs none |"
    )
    print("|---|---|---|---|---|")
    for label in configs:
        p, g = prompt_rates[label], gen_rates[label]
        gm = statistics.median(g) if g else 0.0
        print(
            f"| {label} | {statistics.median(p):.0f}, {max(p):.0f} | "
            f"{statistics.median(p) / base_p:.2f} | {gm:.1f}, {max(g, default=0.0):.1f} | "
            f"{gm / base_g if base_g else 0.0:.2f} |"
        )


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
