"""LoRA hot-swap in the real engine: real adapters written at test time, loaded into the
embedded coder (Gemma 3 270M) while it serves, applied per request through GenerateParams."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters import testing
from server.engine.lora import KVSnapshots, adapter_key
from server.engine.lora_validation import AdapterError
from server.engine.session import LlamaSession
from server.engine.types import CancelToken, GenerateParams, Generation
from server.engine.worker import InferenceWorker

PROMPT = (
    "Object subclass: #Account\n"
    "    instanceVariableNames: 'balance owner'\n"
    "    classVariableNames: ''\n"
    "    package: 'Bank-Core'\n\n"
    "Account >> balance\n    ^ balance\n\n"
    "Account >> deposit: anAmount\n    "
)
LONGER = PROMPT + "anAmount > 0 ifFalse: [ ^ self error: 'bad amount' ].\n    "


@pytest.fixture(scope="module")
def adapter_files(gemma_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("adapters")
    return {
        "a": testing.write_lora(folder / "a.gguf", gemma_model_path, seed=1, strength=0.1),
        "b": testing.write_lora(folder / "b.gguf", gemma_model_path, seed=2, strength=0.1),
        "zero": testing.write_lora(folder / "zero.gguf", gemma_model_path, zero=True),
        "arch": testing.write_wrong_architecture(folder / "arch.gguf", gemma_model_path),
        "cut": testing.write_truncated(folder / "cut.gguf", gemma_model_path),
        "shape": testing.write_wrong_shapes(folder / "shape.gguf", gemma_model_path),
    }


@pytest.fixture
def pool(gemma_model, adapter_files: dict) -> Iterator:
    """The model's adapters with a and b loaded; everything is unloaded afterwards."""
    adapters = gemma_model.adapters
    adapters.load("a", adapter_files["a"])
    adapters.load("b", adapter_files["b"])
    yield adapters
    for name in adapters.names():
        adapters.unload(name)


def new_session(model, snapshots: int = 2) -> LlamaSession:
    session = LlamaSession(model, n_ctx=1024, n_batch=256, n_threads=1)
    session.adapters.snapshots = KVSnapshots(max_count=snapshots)
    return session


def run(session: LlamaSession, prompt: str, *active: tuple[str, float]) -> Generation:
    params = GenerateParams(max_tokens=12, adapters=tuple(active))
    generation = session.generate(prompt, params, CancelToken())
    assert generation.stop_reason in ("length", "eos"), generation
    return generation


@pytest.fixture
def session(gemma_model) -> Iterator[LlamaSession]:
    s = new_session(gemma_model)
    yield s
    s.close()


def test_adapter_changes_output_and_clearing_restores_the_base(pool, session) -> None:
    base = run(session, PROMPT)
    with_a = run(session, PROMPT, ("a", 1.0))
    assert with_a.text != base.text
    # The set changed: nothing of the base's KV cache was reused under the adapter.
    assert with_a.reused_tokens == 0
    cleared = run(session, PROMPT)
    assert cleared.text == base.text
    # Scale 0 is no adapter at all, and an adapter whose B is zero changes nothing.
    assert run(session, PROMPT, ("a", 0.0)).text == base.text


def test_zero_adapter_gives_the_base_output(pool, session, adapter_files) -> None:
    pool.load("zero", adapter_files["zero"])
    base = run(session, PROMPT)
    assert run(session, PROMPT, ("zero", 1.0)).text == base.text


@pytest.mark.parametrize("snapshots", [0, 2], ids=["reset", "snapshots"])
def test_switching_a_b_a_matches_fresh_runs(pool, gemma_model, snapshots: int) -> None:
    fresh = {}
    for name in ("a", "b"):
        s = new_session(gemma_model)
        fresh[name] = run(s, LONGER, (name, 1.0)).text
        s.close()
    assert fresh["a"] != fresh["b"]
    s = new_session(gemma_model, snapshots)
    try:
        run(s, PROMPT, ("a", 1.0))  # a's KV now holds PROMPT
        got_b = run(s, LONGER, ("b", 1.0))
        assert got_b.reused_tokens == 0
        got_a = run(s, LONGER, ("a", 1.0))
        assert got_b.text == fresh["b"]
        assert got_a.text == fresh["a"]
        if snapshots:
            # a's state was restored: its prompt prefix was not evaluated again.
            assert got_a.reused_tokens > 0 and s.adapters.snapshots.restores == 1
        else:
            assert got_a.reused_tokens == 0
    finally:
        s.close()


def test_two_adapters_and_scales_make_distinct_keys(pool, session) -> None:
    both = run(session, PROMPT, ("a", 1.0), ("b", 1.0))
    only_a = run(session, PROMPT, ("a", 1.0))
    assert both.text != only_a.text
    half = pool.active([("a", 0.5)])
    assert adapter_key(half) != adapter_key(pool.active([("a", 1.0)]))
    assert adapter_key(pool.active([("b", 1.0), ("a", 1.0)])) == adapter_key(
        pool.active([("a", 1.0), ("b", 1.0)])
    )
    # An adapter name that is not loaded is skipped: the base answers.
    assert run(session, PROMPT, ("nope", 1.0)).text == run(session, PROMPT).text


@pytest.mark.parametrize(
    ("name", "check"), [("arch", "architecture"), ("cut", "gguf"), ("shape", "shapes")]
)
def test_bad_adapters_are_refused_and_the_base_keeps_serving(
    pool, session, adapter_files, name: str, check: str
) -> None:
    base = run(session, PROMPT)
    with pytest.raises(AdapterError) as err:
        pool.load(name, adapter_files[name])
    assert err.value.check == check and str(adapter_files[name]) in str(err.value)
    assert name not in pool.names()
    assert run(session, PROMPT, (name, 1.0)).text == base.text
    assert run(session, PROMPT, ("a", 1.0)).text != base.text


def test_unload_while_generating_detaches_first(pool, gemma_model) -> None:
    session = new_session(gemma_model)
    worker = InferenceWorker("adapter-test")
    try:
        base = run(session, PROMPT).text
        params = GenerateParams(max_tokens=48, adapters=(("a", 1.0),))
        job = worker.submit(lambda cancel: session.generate(LONGER, params, cancel))
        time.sleep(0.05)
        done = threading.Event()

        def unload() -> None:
            pool.unload("a")
            done.set()

        threading.Thread(target=unload, daemon=True).start()
        generation = job.future.result(timeout=120)
        assert done.wait(60), "unloading never finished"
        assert generation.stop_reason in ("length", "eos")
        assert "a" not in pool.names()
        assert run(session, PROMPT, ("a", 1.0)).text == base
    finally:
        worker.close()
        session.close()


def test_a_changed_file_is_reloaded(pool, session, adapter_files, gemma_model_path) -> None:
    before = run(session, PROMPT, ("b", 1.0)).text
    old = pool.get("b")
    time.sleep(0.01)
    testing.write_lora(adapter_files["b"], gemma_model_path, seed=7, strength=0.1)
    new = pool.load("b", adapter_files["b"])
    assert new.version != old.version
    after = run(session, PROMPT, ("b", 1.0)).text
    fresh = new_session(session.model)
    try:
        assert run(fresh, PROMPT, ("b", 1.0)).text == after
    finally:
        fresh.close()
    assert after != before
    testing.write_lora(adapter_files["b"], gemma_model_path, seed=2, strength=0.1)
