"""Parsing throughput of smalltalk_grammar on a large generated tree of Smalltalk sources.

    .venv/bin/python bench/bench_parse.py [--files 5000] [--tonel-mb 20]

1. Replicates the sample project (tests/fixtures/sample, every format) into a temporary
   directory, renaming the classes in each copy, until it holds at least --files files; walks
   it with iter_project and parses every file: files/s, methods/s, MB/s.
2. Replicates only the Tonel sources to --tonel-mb megabytes and parses them in one process and
   in two worker processes (the target: 20 MB of Tonel in under 10 s on 2 cores): once with the
   results kept in the workers (parsing alone), once with the results sent back to this
   process as JSON and rebuilt into SourceFile objects here (what a caller would get).
3. Re-parses one large Tonel document after a one-character edit with DocumentParser, side by
   side with a full parse of the same text.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from smalltalk_grammar import DocumentParser, SourceFile, iter_project, parse, parse_file
from smalltalk_grammar.parsing import paused_gc

SAMPLE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "sample"


def _sources(only: str | None = None) -> list[tuple[Path, bytes]]:
    """The sample's files worth parsing (and FileTree READMEs), bad inputs left out."""
    root = SAMPLE / only if only else SAMPLE
    paths = list(iter_project(root))
    paths += [p.parent / "README.md" for p in paths if (p.parent / "README.md").is_file()]
    return [
        (path.relative_to(SAMPLE), path.read_bytes())
        for path in sorted(paths)
        if "bad" not in path.relative_to(SAMPLE).parts
    ]


def _copy_name(text: str, copy: int) -> str:
    # Every class of the sample starts with SR (or TSR): give each copy its own classes.
    return text.replace("SR", f"SR{copy}x")


def replicate(target: Path, sources: list[tuple[Path, bytes]], *, files: int = 0, size: int = 0):
    """Write copies of `sources` under `target` until both `files` and `size` are reached."""
    written = total = copy = 0
    while written < files or total < size:
        for rel, data in sources:
            path = target / f"copy{copy}" / _copy_name(str(rel), copy)
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                content = _copy_name(data.decode("utf-8"), copy).encode("utf-8")
            except UnicodeDecodeError:
                content = data  # the Latin-1 sample stays as it is
            path.write_bytes(content)
            if path.name != "README.md":
                written += 1
                total += len(content)
        copy += 1
    return written, total


def _parse_all(paths: list[Path]) -> list[SourceFile]:
    # As parse_path does it, with the cyclic GC paused for the whole walk, but without its
    # shared facts cache: the copies repeat the sample's methods, which would flatter it.
    with paused_gc():
        return [parse_file(p) for p in paths]


def _count_methods(paths: list[Path]) -> tuple[int, float]:
    # Results stay in the worker: parsing alone.
    start = time.process_time()
    methods = sum(len(r.methods) for r in _parse_all(paths))
    return methods, time.process_time() - start


def _as_json(paths: list[Path]) -> tuple[list[str], float]:
    # Pickling pydantic models is slow (Python code per object); their JSON is written in
    # Rust, and read back in Rust by SourceFile.model_validate_json.
    start = time.process_time()
    with paused_gc():
        out = [r.model_dump_json(by_alias=True) for r in _parse_all(paths)]
    return out, time.process_time() - start


def _in_workers(paths: list[Path], workers: int) -> tuple[float, float, int]:
    """Parse in `workers` processes (started before the clock), each keeping its results.
    Answers wall seconds, the largest worker CPU seconds, and the methods parsed."""
    chunks = [paths[i::workers] for i in range(workers)]
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_count_methods, [[]] * workers))  # start and import in every worker
        start = time.perf_counter()
        done = list(pool.map(_count_methods, chunks))
        wall = time.perf_counter() - start
    return wall, max(cpu for _, cpu in done), sum(m for m, _ in done)


def _returned_from_workers(
    paths: list[Path], workers: int
) -> tuple[list[SourceFile], float, float, float]:
    """Parse in `workers` processes and rebuild every result here, chunk by chunk as they
    arrive (so this process reads while the workers parse). Answers the results, wall
    seconds, the workers' CPU seconds (all of them together) and this process's CPU seconds."""
    pieces = 8 * workers
    chunks = [paths[i::pieces] for i in range(pieces)]
    results: list[SourceFile] = []
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_as_json, [[]] * workers))
        start, cpu = time.perf_counter(), time.process_time()
        worker_cpu = 0.0
        with paused_gc():
            for out, used in pool.map(_as_json, chunks):
                worker_cpu += used
                results.extend(SourceFile.model_validate_json(item) for item in out)
        return results, time.perf_counter() - start, worker_cpu, time.process_time() - cpu


def _server_scan(root: Path, workers: bool) -> tuple[float, int]:
    """The language server's cold scan of `root` (parse, index the summaries, write the parse
    cache), in this process or in worker processes. Answers wall seconds and files parsed."""
    from server.project_model import ProjectModel
    from server.workspace import CACHE_DIR, WorkspaceIndex

    shutil.rmtree(root / CACHE_DIR, ignore_errors=True)
    index = WorkspaceIndex(ProjectModel(), [root], use_workers=workers)
    start = time.perf_counter()
    stats = index.scan()
    wall = time.perf_counter() - start
    index.close()
    shutil.rmtree(root / CACHE_DIR, ignore_errors=True)
    return wall, stats.parsed


def _timed(paths: list[Path]) -> tuple[list[SourceFile], float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    results = _parse_all(paths)
    return results, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--files", type=int, default=5000)
    args.add_argument("--tonel-mb", type=float, default=20.0)
    opts = args.parse_args()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"cpus: {os.cpu_count()}, load average at start: {load:.1f}")
    with tempfile.TemporaryDirectory(prefix="bench-parse-") as tmp:
        mixed = Path(tmp, "mixed")
        replicate(mixed, _sources(), files=opts.files)
        paths = list(iter_project(mixed))
        size = sum(p.stat().st_size for p in paths)
        results, elapsed, cpu = _timed(paths)
        methods = sum(len(r.methods) for r in results)
        formats = sorted({r.format for r in results})
        print(
            f"all formats ({', '.join(formats)}): {len(paths)} files, {size / 1e6:.1f} MB, "
            f"{methods} methods in {elapsed:.2f} s wall ({cpu:.2f} s CPU): "
            f"{len(paths) / elapsed:.0f} files/s, {methods / elapsed:.0f} methods/s, "
            f"{size / 1e6 / elapsed:.2f} MB/s (by CPU time: {len(paths) / cpu:.0f} files/s, "
            f"{methods / cpu:.0f} methods/s, {size / 1e6 / cpu:.2f} MB/s)"
        )

        tonel = Path(tmp, "tonel")
        count, size = replicate(tonel, _sources("tonel"), size=int(opts.tonel_mb * 1e6))
        tonel_paths = list(iter_project(tonel))
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        results, one, one_cpu = _timed(tonel_paths)
        methods = sum(len(r.methods) for r in results)
        del results
        two, two_cpu, methods_two = _in_workers(tonel_paths, 2)
        assert methods_two == methods
        back, back_wall, back_workers, back_here = _returned_from_workers(tonel_paths, 2)
        assert sum(len(r.methods) for r in back) == methods
        del back
        scan_one, parsed = _server_scan(tonel, workers=False)
        scan_two, parsed_two = _server_scan(tonel, workers=True)
        assert parsed == parsed_two == len(tonel_paths)
        mb = size / 1e6
        print(
            f"Tonel {mb:.1f} MB ({count} files, {methods} methods), target under 10 s on 2 "
            f"cores (load average {load:.1f}):\n"
            f"  1 process:   {one:.2f} s wall, {one_cpu:.2f} s CPU "
            f"({mb / one:.2f} MB/s wall, {mb / one_cpu:.2f} MB/s CPU; "
            f"{methods / one_cpu:,.0f} methods/s CPU)\n"
            f"  2 processes, results kept in the workers: {two:.2f} s wall, {two_cpu:.2f} s CPU "
            f"in the busier worker ({mb / two:.2f} MB/s wall); wall speed-up {one / two:.2f}x\n"
            f"  2 processes, results sent back as JSON and rebuilt here: {back_wall:.2f} s wall, "
            f"{back_workers:.2f} s CPU in the workers, {back_here:.2f} s CPU here "
            f"({mb / back_wall:.2f} MB/s wall); wall speed-up {one / back_wall:.2f}x\n"
            f"  the language server's cold scan (parse, index, write the cache): "
            f"{scan_one:.2f} s in one process, {scan_two:.2f} s with worker processes "
            f"({scan_one / scan_two:.2f}x)"
        )

    # One big Tonel document (all the sample's Tonel methods, many times over) edited once.
    body = "\n".join(
        _copy_name(data.decode("utf-8").split("\n}\n", 1)[-1], i)
        for i in range(60)
        for _, data in _sources("tonel")
        if b"Class {" in data
    )
    text = "Class {\n\t#name : #Big,\n\t#superclass : #Object,\n\t#category : #Bench\n}\n" + body
    start = time.perf_counter()
    full = parse(text)
    full_time = time.perf_counter() - start
    doc = DocumentParser("big.class.st")
    doc.parse(text)
    where = text.index("^ name") + 2
    start = time.perf_counter()
    edited = doc.edit(where, where + 4, "name2")
    edit_time = time.perf_counter() - start
    assert len(edited.methods) == len(full.methods)
    print(
        f"Tonel document {len(text) / 1e6:.2f} MB, {len(full.methods)} methods: full parse "
        f"{full_time * 1000:.0f} ms, re-parse after an edit {edit_time * 1000:.0f} ms "
        f"({full_time / edit_time:.1f}x faster)"
    )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"load average at the end: {load:.1f}")


if __name__ == "__main__":
    main()
