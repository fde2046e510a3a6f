"""Hostile variants of a real GGUF file, for the fuzz test and its benchmark.

`layout()` walks a valid file and records where each header field lies (counts, key and string
lengths, value and array types, array lengths, tensor names, dimensions, types and offsets, a few
hyperparameters). `mutants()` draws seeded mutations of those fields: truncations, huge lengths,
negative and overflowing counts, offsets past the end or unaligned, wrong value and tensor types,
random byte flips in the header. A field kind is drawn first, so the 49k token lengths of a
vocabulary do not crowd out the few counts. `Workbench` applies one mutant at a time to a
working copy and restores it, so a 98 MB model is copied once, not once per mutant.
"""

from __future__ import annotations

import json
import mmap
import os
import random
import select
import shutil
import struct
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from server.engine.gguf_check import ARRAY as _ARRAY
from server.engine.gguf_check import SCALAR_FORMATS as _SCALARS
from server.engine.gguf_check import STRING as _STRING

# Hyperparameters whose values are mutated too (as uint32 scalars).
_HPARAM_SUFFIXES = (".block_count", ".embedding_length", ".attention.head_count",
                    ".attention.head_count_kv", ".context_length", ".feed_forward_length",
                    "_token_id", ".alignment")
U64 = (1 << 64) - 1


@dataclass(frozen=True)
class Field:
    offset: int
    size: int  # bytes: 4 or 8 for numbers
    kind: str  # see KINDS
    label: str


KINDS = ("magic", "version", "count", "length", "value_type", "element_type", "hparam",
         "n_dims", "dim", "tensor_type", "tensor_offset", "truncate", "flip")


@dataclass
class Layout:
    path: Path
    size: int
    fields: list[Field] = field(default_factory=list)
    header_end: int = 0  # end of the tensor table
    data_offset: int = 0
    alignment: int = 32

    def of_kind(self, kind: str) -> list[Field]:
        return [f for f in self.fields if f.kind == kind]


def layout(path: Path) -> Layout:
    """Where every header field of a valid GGUF file lies."""
    data = path.read_bytes() if path.stat().st_size < 1 << 20 else None
    with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        return _walk(path, data if data is not None else buf)


def _walk(path: Path, buf: bytes | mmap.mmap) -> Layout:
    out = Layout(path=path, size=len(buf))
    pos = 0

    def num(fmt: str) -> int:
        nonlocal pos
        value = struct.unpack_from(fmt, buf, pos)[0]
        pos += struct.calcsize(fmt)
        return value

    def add(kind: str, size: int, label: str) -> None:
        out.fields.append(Field(pos, size, kind, label))

    add("magic", 4, "magic")
    pos = 4
    add("version", 4, "version")
    num("<I")
    add("count", 8, "tensor count")
    n_tensors = num("<Q")
    add("count", 8, "metadata count")
    n_kv = num("<Q")

    def string(label: str) -> str:
        nonlocal pos
        add("length", 8, label)
        n = num("<Q")
        text = bytes(buf[pos : pos + n]).decode("utf-8", errors="replace")
        pos += n
        return text

    for _ in range(n_kv):
        key = string("key length")
        add("value_type", 4, f"value type of {key}")
        vtype = num("<I")
        if vtype == _ARRAY:
            add("element_type", 4, f"element type of {key}")
            etype = num("<I")
            add("length", 8, f"length of array {key}")
            count = num("<Q")
            for index in range(count):
                if etype == _STRING:
                    string(f"item {index} of {key}")
                else:
                    pos += struct.calcsize(_SCALARS[etype])
        elif vtype == _STRING:
            string(f"string {key}")
        else:
            fmt = _SCALARS[vtype]
            if vtype in (4, 10) and key.endswith(_HPARAM_SUFFIXES):
                add("hparam", struct.calcsize(fmt), key)
            value = num(fmt)
            if key == "general.alignment":
                out.alignment = int(value)
    for index in range(n_tensors):
        name = string(f"name of tensor {index}")
        add("n_dims", 4, f"n_dims of {name}")
        n_dims = num("<I")
        for axis in range(n_dims):
            add("dim", 8, f"dim {axis} of {name}")
            num("<Q")
        add("tensor_type", 4, f"type of {name}")
        num("<I")
        add("tensor_offset", 8, f"offset of {name}")
        num("<Q")
    out.header_end = pos
    out.data_offset = -(-pos // out.alignment) * out.alignment
    return out


@dataclass(frozen=True)
class Mutant:
    label: str
    patches: tuple[tuple[int, bytes], ...] = ()
    truncate: int | None = None


def _values(kind: str, original: int, size: int, lay: Layout, offset: int) -> list[int]:
    top = (1 << (8 * size)) - 1
    if kind == "count":
        return [top, top - 1, 1 << 63, (1 << 63) - 1, 1 << 32, original + 1, max(original - 1, 0),
                0, original * 1000, lay.size]
    if kind == "length":
        return [top, 1 << 63, (1 << 63) - 1, 1 << 32, (1 << 31) + 1, lay.size,
                lay.size - offset, original + 1, max(original - 1, 0), 0, original + 4096]
    if kind in ("value_type", "element_type"):
        values = (0, 1, 4, 6, 7, 8, 9, 10, 12, 13, 255, top, original ^ 1)
        return [v for v in values if v != original]
    if kind == "tensor_type":
        values = (0, 1, 2, 4, 8, 12, 14, 30, 39, 40, 255, 1 << 31, top)
        return [v for v in values if v != original]
    if kind == "n_dims":
        return [0, 1, 3, 4, 5, 8, 64, top, original + 1]
    if kind == "dim":
        return [0, 1, top, 1 << 63, 1 << 62, 1 << 32, original * 2, original + 1,
                max(original - 1, 1), original * 1024]
    if kind == "tensor_offset":
        past = lay.size - lay.data_offset
        return [top, 1 << 63, past, past + lay.alignment, original + 1, original + lay.alignment,
                max(original - lay.alignment, 0), 0, original + 1024 * 1024]
    if kind == "hparam":
        return [0, 1, 2, 3, original + 1, max(original - 1, 0), original * 2, 1 << 31, top, 1 << 16]
    if kind == "version":
        return [0, 1, 2, 4, top]
    return [top]


def mutants(lay: Layout, count: int, seed: int) -> list[Mutant]:
    """`count` distinct seeded mutants of the file (never the unchanged file)."""
    rng = random.Random(seed)
    with lay.path.open("rb") as handle:
        head = handle.read(lay.data_offset)
    by_kind = {kind: lay.of_kind(kind) for kind in KINDS}
    kinds = [k for k in KINDS if by_kind[k] or k in ("truncate", "flip")]
    seen: set[Mutant] = set()
    out: list[Mutant] = []
    for _ in range(count * 50):
        if len(out) >= count:
            break
        mutant = _draw(rng, rng.choice(kinds), by_kind, lay, head)
        if mutant is not None and mutant not in seen:
            seen.add(mutant)
            out.append(mutant)
    return out


def _draw(
    rng: random.Random, kind: str, by_kind: dict[str, list[Field]], lay: Layout, head: bytes
) -> Mutant | None:
    if kind == "truncate":
        if rng.random() < 0.75:  # mostly in the header, where the lengths are
            cut = rng.randrange(1, lay.header_end)
        else:
            cut = rng.randrange(lay.header_end, lay.size)
        return Mutant(f"truncated at {cut} of {lay.size}", truncate=cut)
    if kind == "flip":
        patches = []
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(0, lay.header_end)
            patches.append((at, bytes([head[at] ^ (1 << rng.randrange(8))])))
        return Mutant("bits flipped at " + ",".join(str(p[0]) for p in patches), tuple(patches))
    if kind == "magic":
        return Mutant("magic GGUF -> GGUG", ((3, b"G"),))
    target = rng.choice(by_kind[kind])
    fmt = "<I" if target.size == 4 else "<Q"
    original = struct.unpack_from(fmt, head, target.offset)[0]
    value = rng.choice(_values(kind, original, target.size, lay, target.offset))
    if value == original:
        return None
    value &= (1 << (8 * target.size)) - 1
    return Mutant(
        f"{target.label}: {original} -> {value}", ((target.offset, struct.pack(fmt, value)),)
    )


class Workbench:
    """A working copy of one GGUF file that takes one mutant at a time."""

    def __init__(self, original: Path, folder: Path) -> None:
        self.original = original
        self.copy = folder / f"mutant-{original.name}"
        self.short = folder / f"short-{original.name}"
        shutil.copyfile(original, self.copy)
        self.size = original.stat().st_size

    def apply(self, mutant: Mutant) -> Path:
        if mutant.truncate is not None and mutant.truncate < 1 << 20:
            with self.original.open("rb") as src:
                self.short.write_bytes(src.read(mutant.truncate))
            return self.short
        with self.copy.open("r+b") as dst:
            for offset, data in mutant.patches:
                dst.seek(offset)
                dst.write(data)
            if mutant.truncate is not None:
                dst.truncate(mutant.truncate)
        return self.copy

    def restore(self, mutant: Mutant) -> None:
        if mutant.truncate is not None and mutant.truncate < 1 << 20:
            return
        with self.original.open("rb") as src, self.copy.open("r+b") as dst:
            for offset, data in mutant.patches:
                src.seek(offset)
                dst.seek(offset)
                dst.write(src.read(len(data)))
            if mutant.truncate is not None:
                src.seek(mutant.truncate)
                dst.seek(mutant.truncate)
                shutil.copyfileobj(src, dst, 1 << 20)


# --- running mutants -------------------------------------------------------------------------

PROBE = Path(__file__).with_name("gguf_probe.py")
PROBE_TIMEOUT_S = 120.0


@dataclass
class Outcome:
    mutant: Mutant
    # "checked" (refused by the Python checks, in this process), "refused" (the probe's load
    # refused it with a message), "generated" (loaded and generated), "crashed" (the probe
    # process died or hung), "error" (the checks raised something other than their error).
    result: str
    message: str = ""


class Probe:
    """The probe process (tests/gguf_probe.py); restarted after a crash."""

    def __init__(self, base_model: Path, cwd: Path) -> None:
        self.base_model = base_model
        self.cwd = cwd
        self.proc: subprocess.Popen[str] | None = None
        self.starts = 0

    def _start(self) -> subprocess.Popen[str]:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(self.cwd), str(PROBE.parent)]))
        # A crash ends the probe at once (ggml would attach gdb for a backtrace, which can hang).
        env["GGML_NO_BACKTRACE"] = "1"
        self.starts += 1
        return subprocess.Popen(
            [sys.executable, str(PROBE), str(self.base_model)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, cwd=self.cwd, env=env,
        )

    def ask(self, kind: str, path: Path) -> tuple[str, str]:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = self._start()
        proc = self.proc
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(json.dumps({"kind": kind, "path": str(path)}) + "\n")
            proc.stdin.flush()
        except BrokenPipeError:
            pass
        ready, _, _ = select.select([proc.stdout], [], [], PROBE_TIMEOUT_S)
        line = proc.stdout.readline() if ready else ""
        if line:
            answer = json.loads(line)
            return answer["status"], answer.get("message", f"{answer.get('tokens')} tokens")
        proc.kill()
        proc.wait()
        stderr = proc.stderr.read()[-2000:] if proc.stderr else ""
        self.proc = None
        return "crashed", f"exit {proc.returncode}{' (timeout)' if not ready else ''}: {stderr}"

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def check_in_process(kind: str, path: Path) -> str | None:
    """The server's own checks of a file; None if it passes, else the message."""
    from server.engine.llama_model import ModelLoadError, check_model_file
    from server.engine.lora_validation import AdapterError, inspect_adapter

    try:
        if kind == "model":
            check_model_file(path)
        else:
            inspect_adapter(path)
    except (ModelLoadError, AdapterError) as err:
        return str(err)
    return None


def fuzz(
    original: Path, kind: str, count: int, seed: int, folder: Path, probe: Probe
) -> list[Outcome]:
    """Run `count` mutants of `original` (a model, or an adapter of probe.base_model)."""
    lay = layout(original)
    bench = Workbench(original, folder)
    outcomes = []
    for mutant in mutants(lay, count, seed):
        path = bench.apply(mutant)
        try:
            try:
                message = check_in_process(kind, path)
            except Exception as err:  # a bug in the checks: the test reports it
                outcomes.append(Outcome(mutant, "error", f"{type(err).__name__}: {err}"))
                continue
            if message is not None:
                outcomes.append(Outcome(mutant, "checked", message))
                continue
            result, message = probe.ask(kind, path)
            outcomes.append(Outcome(mutant, result, message))
        finally:
            bench.restore(mutant)
    return outcomes
