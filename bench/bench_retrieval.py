"""Retrieval on a generated 50,000-method Tonel project.

    .venv/bin/python bench/bench_retrieval.py [--methods 50000] [--subset 1000] [--queries 300]

1. Generates a Tonel project (classes of 50 methods, a class hierarchy, selectors shared
   between classes so implementors and senders exist) and parses it into a ProjectModel.
2. Embedding rate of the real model (all-MiniLM-L6-v2) on a subset of the units, on one and
   on two torch threads; the full build time with the real model is extrapolated from it.
3. Builds the real 50,000-method index (SQLite, FAISS, lexical) with a cheap hashing embedder
   of the same dimension: what the build costs besides the model, at full size.
4. Incremental update after editing one method of one file: re-parse, diff, embed the one
   changed method with the real model, update SQLite and FAISS; then the FAISS file write.
5. Context builder p50/p95: cursors in existing methods (the stored vector is the query) and
   in new methods (the real model embeds the code before the cursor in the background; the
   first request goes without similarity, the next has it), and what waiting would cost.
6. Flat against IVF search at this size (time and recall@10), and index size on disk and in
   memory.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import re
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from server.project_model import ProjectModel  # noqa: E402
from server.retrieval.context import build_context  # noqa: E402
from server.retrieval.embedder import load_embedder  # noqa: E402
from server.retrieval.index import RetrievalIndex  # noqa: E402
from server.retrieval.units import units_of_files  # noqa: E402
from server.retrieval.vectors import VectorIndex  # noqa: E402
from smalltalk_grammar import parse_file  # noqa: E402

NOUNS = ("account balance order item customer invoice price tax date territory licence store "
         "right title stream report entry ledger payment discount currency amount rate period "
         "region catalogue product stock supplier shipment address name code status").split()
VERBS = ("add remove compute find update validate print select collect register cancel "
         "renew apply check convert merge split total schedule notify archive").split()
METHODS_PER_CLASS = 50


# --- the generated project -----------------------------------------------------------------


def _selectors(rng: random.Random, count: int) -> list[str]:
    found: set[str] = set()
    while len(found) < count:
        verb, noun, other = rng.choice(VERBS), rng.choice(NOUNS), rng.choice(NOUNS)
        shape = rng.random()
        if shape < 0.3:
            found.add(f"{verb}{noun.capitalize()}")
        elif shape < 0.7:
            found.add(f"{verb}{noun.capitalize()}:")
        elif shape < 0.9:
            found.add(f"{verb}{noun.capitalize()}:{other}:")
        else:
            found.add(f"is{noun.capitalize()}{other.capitalize()}")
    return sorted(found)


def _pattern(selector: str) -> str:
    parts = selector.split(":")[:-1]
    if not parts:
        return selector
    return " ".join(f"{p}: a{p[0].upper()}{p[1:]}Arg{i}" for i, p in enumerate(parts))


def _send(selector: str, receiver: str, rng: random.Random) -> str:
    parts = selector.split(":")[:-1]
    if not parts:
        return f"{receiver} {selector}"
    return receiver + " " + " ".join(f"{p}: {rng.choice(['each', 'aValue', '1', 'nil'])}"
                                     for p in parts)


def _method(cls: str, selector: str, ivars: list[str], vocabulary: list[str],
            rng: random.Random) -> str:
    body = []
    if rng.random() < 0.4:
        body.append(f'\t"{rng.choice(VERBS).capitalize()} the {rng.choice(NOUNS)} of the '
                    f'receiver for the {rng.choice(NOUNS)}"')
    body.append("\t| aValue result |")
    for _ in range(rng.randint(1, 5)):
        kind = rng.random()
        if kind < 0.35:
            body.append(f"\taValue := {_send(rng.choice(vocabulary), 'self', rng)}.")
        elif kind < 0.6:
            target, receiver = rng.choice(ivars), rng.choice(ivars)
            body.append(f"\t{target} := {_send(rng.choice(vocabulary), receiver, rng)}.")
        elif kind < 0.8:
            body.append(f"\tresult := {rng.choice(ivars)} select: [ :each | "
                        f"{_send(rng.choice(vocabulary), 'each', rng)} ].")
        else:
            body.append(f"\taValue ifNil: [ ^ {_send(rng.choice(vocabulary), 'self', rng)} ].")
    body.append(f"\t^ {rng.choice(['result', 'aValue', 'self'] + ivars)}")
    category = rng.choice(["accessing", "computing", "testing", "printing", "private",
                           "operations", "validation"])
    return (f"{{ #category : #{category} }}\n{cls} >> {_pattern(selector)} [\n"
            + "\n".join(body) + "\n]\n")


def generate(root: Path, methods: int, seed: int = 7) -> int:
    """Write the project; answer the number of files."""
    rng = random.Random(seed)
    vocabulary = _selectors(rng, max(200, methods // 4))
    classes = max(1, methods // METHODS_PER_CLASS)
    names: list[str] = []
    for c in range(classes):
        noun = rng.choice(NOUNS).capitalize()
        name = f"Gen{noun}{c}"
        superclass = rng.choice(names[-20:]) if names and rng.random() < 0.6 else "Object"
        ivars = sorted({rng.choice(NOUNS) for _ in range(rng.randint(2, 6))})
        package = root / f"Generated-Package{c // 20}"
        package.mkdir(parents=True, exist_ok=True)
        chosen = rng.sample(vocabulary, min(METHODS_PER_CLASS, len(vocabulary)))
        text = [f'"\nI am a {noun.lower()} that keeps {", ".join(ivars)}.\n"\n',
                f"Class {{\n\t#name : #{name},\n\t#superclass : #{superclass},\n",
                "\t#instVars : [ " + ", ".join(f"'{v}'" for v in ivars) + " ],\n",
                f"\t#category : #'Generated-Package{c // 20}'\n}}\n"]
        for selector in chosen:
            text.append("\n" + _method(name, selector, ivars, vocabulary, rng))
        (package / f"{name}.class.st").write_text("".join(text))
        names.append(name)
    return classes


# --- a cheap embedder for the full-size build ------------------------------------------------


class HashingEmbedder:
    """Signed hashing of words into 384 dimensions: costs microseconds, not milliseconds, per
    unit. Only for measuring everything except the model at full size."""

    name = "bench-hashing-384"
    dimension = 384

    def embed(self, texts):
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"[a-z]+", text.lower()):
                h = hash(word)
                out[row, h % self.dimension] += 1.0 if (h >> 20) & 1 else -1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-6)


# --- measurements ---------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", type=int, default=50_000)
    parser.add_argument("--subset", type=int, default=512,
                        help="units embedded with the real model to measure its rate")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--dir", type=Path, default=None, help="where to generate (temporary)")
    args = parser.parse_args()
    rng = random.Random(1)
    # The machine is shared: the load says how far the figures are from a quiet one.
    print("load average at start: {:.1f} {:.1f} {:.1f} (2 cores)".format(*os.getloadavg()))

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp) / "project"
        started = time.perf_counter()
        classes = generate(root, args.methods)
        print(f"generated {classes} classes, {args.methods} methods in "
              f"{time.perf_counter() - started:.1f}s")
        started = time.perf_counter()
        paths = sorted(root.rglob("*.st"))
        project = ProjectModel(parse_file(p) for p in paths)
        parse_s = time.perf_counter() - started
        units = units_of_files(project.files(), str(root))
        methods = sum(1 for u in units if u.kind == "method")
        print(f"parsed {len(paths)} files, {methods} methods in {parse_s:.1f}s; "
              f"{len(units)} units")

        # 2. The real model's embedding rate on a subset.
        # The torch embedder on 1 and 2 torch threads, as the figures in BENCHMARKS.md were
        # measured; the server's default (int8 ONNX) is measured by bench/bench_indexing.py.
        real = load_embedder("all-minilm-l6-v2", runtime="torch", max_tokens=None)
        import torch

        subset = [u.text for u in rng.sample(units, min(args.subset, len(units)))]
        rates, cpu_rates = {}, {}
        for threads in (1, 2):
            torch.set_num_threads(threads)
            real.embed(subset[:32])
            started, cpu_started = time.perf_counter(), time.process_time()
            for i in range(0, len(subset), 32):
                real.embed(subset[i:i + 32])
            rates[threads] = len(subset) / (time.perf_counter() - started)
            cpu_rates[threads] = len(subset) / (time.process_time() - cpu_started)
        torch.set_num_threads(1)
        print(f"\nreal model embedding rate on {len(subset)} units (batches of 32): "
              f"{rates[1]:.1f} units/s on 1 thread, {rates[2]:.1f} units/s on 2 threads "
              f"(ratio 2/1: {rates[2] / rates[1]:.2f}); per CPU-second: {cpu_rates[1]:.1f} "
              f"(1 thread), {cpu_rates[2]:.1f} (2 threads) - wall rates shrink with the load")

        # 3. The full-size build with the cheap embedder.
        index = RetrievalIndex(root, HashingEmbedder())
        stats = index.sync_project(project)
        started = time.perf_counter()
        index.save()
        save_s = time.perf_counter() - started
        build_s = stats.seconds
        cheap_embed_s = _time_embed(HashingEmbedder(), [u.text for u in units])
        overhead_s = build_s - cheap_embed_s
        extrapolated = {t: parse_s + overhead_s + save_s + len(units) / r
                        for t, r in rates.items()}
        print(f"\nfull build of {len(units)} units with the hashing embedder: {build_s:.1f}s "
              f"({len(units) / build_s:.0f} units/s), of which hashing {cheap_embed_s:.1f}s; "
              f"FAISS file written in {save_s:.2f}s")
        print(f"  index work besides embedding: {overhead_s:.1f}s "
              f"({len(units) / max(overhead_s, 1e-9):.0f} units/s)")
        for t in (1, 2):
            print(f"  full build with the real model, extrapolated ({t} thread{'s' * (t > 1)}): "
                  f"{extrapolated[t]:.0f}s = parse {parse_s:.1f}s + embedding "
                  f"{len(units) / rates[t]:.0f}s + index {overhead_s + save_s:.1f}s "
                  f"-> {len(units) / extrapolated[t]:.0f} units/s")
        index.close()

        # Reopen from disk: the start of a server on an indexed workspace, and its memory:
        # Python objects (records, lexical index) traced, FAISS's vectors by their size.
        started = time.perf_counter()
        index = RetrievalIndex(root, HashingEmbedder())
        open_s = time.perf_counter() - started
        assert index.repairs == [], index.repairs
        index.close()
        gc.collect()
        tracemalloc.start()
        index = RetrievalIndex(root, HashingEmbedder())
        python_bytes = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        faiss_bytes = index.vectors.memory_bytes() if index.vectors else 0
        kind = index.vectors.kind if index.vectors else "-"
        print(f"\nreopened from disk in {open_s:.2f}s ({kind} index); size on disk "
              f"{mib(index.disk_bytes())}; in memory {mib(python_bytes + faiss_bytes)} = FAISS "
              f"{mib(faiss_bytes)} + Python records and lexical index {mib(python_bytes)}")

        # 4. Incremental update after editing one method of one file (real model embeds).
        index.embedder = real  # only the edited method is embedded, by the real model
        times, save_times = [], []
        edited = rng.sample(paths, 5)
        for n, path in enumerate(edited):
            text = path.read_text()
            text = text.replace("\t^ ", f"\tself touch{n}.\n\t^ ", 1)
            path.write_text(text)
            started = time.perf_counter()
            source = parse_file(path)
            project.put(source)
            update = index.update_sources([source])
            times.append(time.perf_counter() - started)
            assert update.embedded == 1, update
            started = time.perf_counter()
            index.save()
            save_times.append(time.perf_counter() - started)
        print(f"\nincremental update after editing one method (parse the file, diff "
              f"{METHODS_PER_CLASS + 1} units, embed 1, SQLite + FAISS): median "
              f"{statistics.median(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms; "
              f"FAISS file write {statistics.median(save_times) * 1000:.0f} ms; "
              f"total {statistics.median(times) * 1000 + statistics.median(save_times) * 1000:.0f}"
              f" ms (target < 1000 ms)")

        # 5. Context builder queries.
        method_list = [(p, m) for p in project.paths() for m in project.file(p).methods]
        texts: dict[str, str] = {}
        existing, fresh = [], []
        for _ in range(args.queries):
            path, method = rng.choice(method_list)
            text = texts.setdefault(path, Path(path).read_text())
            body = text.find("\n", method.start_offset) + 1
            offset = rng.randint(body, max(body, method.end_offset - 2))
            started = time.perf_counter()
            ctx = build_context(project, path, text, offset, 1024, index, [])
            existing.append((time.perf_counter() - started) * 1000)
            assert ctx.items and ctx.tokens <= 1024
        ready_ms, follow, blocking = [], [], []
        for n in range(max(20, args.queries // 5)):
            path, method = rng.choice(method_list)
            text = texts.setdefault(path, Path(path).read_text())
            cls = method.class_name
            addition = (f"\n{{ #category : #computing }}\n{cls} >> freshMethod{n}: aValue [\n"
                        f"\t| total |\n\ttotal := self {rng.choice(VERBS)}")
            new_text = text + addition
            started = time.perf_counter()
            ctx = build_context(project, path, new_text, len(new_text), 1024, index, [])
            fresh.append((time.perf_counter() - started) * 1000)
            assert not ctx.similarity  # its query is being embedded in the background
            index.wait_for_queries()
            ready_ms.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            ctx = build_context(project, path, new_text + "e", len(new_text) + 1, 1024, index, [])
            follow.append((time.perf_counter() - started) * 1000)
            assert ctx.similarity
            other = new_text.replace(f"freshMethod{n}:", f"otherMethod{n}:")
            started = time.perf_counter()
            ctx = build_context(project, path, other, len(other), 1024, index, [],
                                wait_for_embedding=True)
            blocking.append((time.perf_counter() - started) * 1000)
        both = existing + fresh + follow
        print(f"\ncontext builder (budget 1024 tokens), {len(existing)} cursors in existing "
              f"methods: p50 {percentile(existing, .5):.1f} ms, p95 "
              f"{percentile(existing, .95):.1f} ms")
        print(f"  {len(fresh)} cursors in new methods, first request (query embedded in the "
              f"background): p50 {percentile(fresh, .5):.1f} ms, p95 "
              f"{percentile(fresh, .95):.1f} ms; query vector ready after p50 "
              f"{percentile(ready_ms, .5):.0f} ms; next request (with similarity) p50 "
              f"{percentile(follow, .5):.1f} ms, p95 {percentile(follow, .95):.1f} ms")
        print(f"  the same cursors waiting for the model instead: p50 "
              f"{percentile(blocking, .5):.1f} ms, p95 {percentile(blocking, .95):.1f} ms "
              f"(ratio waiting/background p50: "
              f"{percentile(blocking, .5) / percentile(fresh, .5):.1f})")
        print(f"  all {len(both)} requests: p50 {percentile(both, .5):.1f} ms, p95 "
              f"{percentile(both, .95):.1f} ms (target p95 < 30 ms)")

        # 6. Flat against IVF at this size.
        assert index.store is not None
        ids, vectors = index.store.vectors(384)
        flat = VectorIndex(384, ivf_threshold=10**9)
        flat.rebuild(ids, vectors)
        started = time.perf_counter()
        ivf = VectorIndex(384, ivf_threshold=1)
        ivf.rebuild(ids, vectors)
        ivf_build = time.perf_counter() - started
        probes = vectors[rng.sample(range(len(ids)), 200)]
        sizes = [n for n in (5_000, 10_000, 20_000, 50_000) if n < len(ids)] + [len(ids)]
        table = []
        for n in sizes:
            part = VectorIndex(384, ivf_threshold=10**9)
            part.rebuild(ids[:n], vectors[:n])
            runs = []
            for probe in probes[:100]:
                started = time.perf_counter()
                part.search(probe, 10)
                runs.append((time.perf_counter() - started) * 1000)
            table.append(f"{n}: {percentile(runs, .5):.2f}")
        print("\nflat search p50 by size (vectors: ms): " + ", ".join(table))
        flat_t, ivf_t, recall = [], [], []
        for probe in probes:
            started = time.perf_counter()
            exact = {i for i, _ in flat.search(probe, 10)}
            flat_t.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            approx = {i for i, _ in ivf.search(probe, 10)}
            ivf_t.append((time.perf_counter() - started) * 1000)
            recall.append(len(exact & approx) / 10)
        print(f"\nvector search over {len(ids)} vectors, k=10: flat p50 "
              f"{percentile(flat_t, .5):.2f} ms p95 {percentile(flat_t, .95):.2f} ms; IVF "
              f"(nprobe 16) p50 {percentile(ivf_t, .5):.2f} ms p95 {percentile(ivf_t, .95):.2f}"
              f" ms, recall@10 {statistics.mean(recall):.2f}, trained in {ivf_build:.1f}s "
              f"(ratio flat/IVF p50: {percentile(flat_t, .5) / percentile(ivf_t, .5):.1f})")
        index.close()
    print("load average at end: {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()))


def _time_embed(embedder: HashingEmbedder, texts: list[str]) -> float:
    started = time.perf_counter()
    for i in range(0, len(texts), 32):
        embedder.embed(texts[i:i + 32])
    return time.perf_counter() - started


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
