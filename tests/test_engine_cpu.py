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
