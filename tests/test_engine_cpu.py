"""Free cores for generation (server.engine.cpu) and the context that uses them."""

from __future__ import annotations

import os
import time

from server.engine import cpu
from server.engine.types import CancelToken, GenerateParams


def test_generation_threads_follow_the_free_cores_within_their_bounds(monkeypatch):
    monkeypatch.setattr(cpu, "physical_cores", lambda: 8)
    assert cpu.generation_threads(4, 16, others_busy=0.0) == 8  # idle: every physical core
    assert cpu.generation_threads(4, 16, others_busy=2.6) == 5
    assert cpu.generation_threads(4, 16, others_busy=7.0) == 4  # never under the floor
    assert cpu.generation_threads(1, 2, others_busy=0.0) == 2  # never over `threads`
    with cpu.Active(), cpu.Active():  # two contexts of this process at work
        assert cpu.generation_threads(1, 2, others_busy=0.0) == 1
    assert cpu.generation_threads(1, 2, others_busy=0.0) == 2


def test_the_meter_leaves_out_this_process_and_short_windows():
    meter = cpu.CpuMeter()
    before = meter.others_busy()
    assert before >= 0.0
    # This process burning a core for half a second is not the others' load.
    own_start = time.process_time()
    while time.process_time() - own_start < 0.3:
        pass
    others = meter.others_busy()
    assert others <= os.cpu_count()  # a share of the machine's cores, whatever else runs
    # A reading right after the last one repeats it instead of dividing by almost nothing.
    assert meter.others_busy() == others
    assert cpu.physical_cores() >= 1


def test_an_adaptive_context_reports_the_threads_it_generated_with(qwen_model):
    from server.engine.session import LlamaSession

    session = LlamaSession(qwen_model, n_ctx=512, n_batch=64, n_threads=1, n_threads_batch=2,
                           adaptive_threads=True)
    try:
        generation = session.generate(
            "def add(a, b):\n    return", GenerateParams(max_tokens=4, temperature=0.0),
            CancelToken(),
        )
    finally:
        session.close()
    assert generation.generated_tokens > 0
    assert generation.generation_threads in (1, 2)


def test_generation_drops_to_the_floor_when_another_context_starts_beside_it(
    qwen_model, monkeypatch
):
    """A reasoner's long generation must not keep both cores once the coder starts."""
    from server.engine.session import LlamaSession

    monkeypatch.setattr(cpu, "physical_cores", lambda: 2)
    monkeypatch.setattr(cpu.CpuMeter, "others_busy", lambda self: 0.0)  # an idle machine
    session = LlamaSession(qwen_model, n_ctx=512, n_batch=64, n_threads=1, n_threads_batch=2,
                           adaptive_threads=True)
    seen: list[int] = []
    beside = cpu.Active()

    def stop_check(text: str) -> int | None:
        if not seen:
            beside.__enter__()  # another context of this process starts working
        seen.append(session._threads_now)
        return None

    try:
        generation = session.generate(
            "def add(a, b):\n    return", GenerateParams(max_tokens=6, temperature=0.0),
            CancelToken(), stop_check,
        )
    finally:
        beside.__exit__(None, None, None)
        session.close()
    assert seen[0] == 2  # alone on an idle machine: both cores
    assert generation.generation_threads == 1 and seen[-1] == 1
