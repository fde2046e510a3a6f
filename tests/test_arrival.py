"""Suggestions that arrive: the plain parts (settings, activity reports, acceptance, the
worker's background jobs). The end-to-end behaviour is in test_arrival_e2e.py."""

from __future__ import annotations

import threading
from pathlib import Path

from server.completion import arrival
from server.completion.types import CompletionRequest, Suggestion
from server.config import validate_settings
from server.engine.types import CancelToken, Generation
from server.engine.worker import InferenceWorker, Remembered


def test_the_removed_budget_setting_is_reported_with_what_replaced_it():
    loaded = validate_settings({"completion": {"budget_ms": 1000, "max_tokens_line": 20}})
    assert len(loaded.problems) == 1
    problem = loaded.problems[0]
    assert "completion.budget_ms" in problem and "max_generate_ms" in problem
    assert "unknown" not in problem
    assert loaded.settings.completion.max_tokens_line == 20  # the rest applies


def test_activity_reports_thinking_with_progress_then_the_answer():
    sent: list[dict] = []
    activity = arrival.CompletionActivity(lambda: sent.append(activity.status()))
    ticket = activity.begin("file:///a.st")
    assert activity.status()["state"] == "queued"
    progress = activity.prompt_progress("file:///a.st", ticket)
    progress(0, 900)
    assert sent[-1] | {"seconds": 0} == {
        "state": "thinking", "uri": "file:///a.st", "done": 0, "total": 900, "seconds": 0
    }
    progress(900, 900)
    assert sent[-1]["state"] == "writing"
    generation = Generation("^ 1", "stop", prompt_tokens=900, reused_tokens=850,
                            restored_tokens=800)
    activity.end("file:///a.st", ticket, Suggestion("^ 1", "block", generation=generation))
    status = activity.status()
    assert status["state"] == "idle"
    assert status["last"]["reused_tokens"] == 850 and status["last"]["restored_tokens"] == 800
    assert status["last"]["empty"] is False


def test_a_newer_request_for_a_document_supersedes_the_older_in_the_report():
    activity = arrival.CompletionActivity(lambda: None)
    old = activity.begin("file:///a.st")
    new = activity.begin("file:///a.st")
    assert not activity.is_current("file:///a.st", old)
    activity.prompt_progress("file:///a.st", old)(10, 100)  # ignored: superseded
    assert "done" not in activity.status()
    activity.end("file:///a.st", old, None, "superseded")
    assert activity.superseded == 1 and activity.status()["state"] == "queued"
    activity.end("file:///a.st", new, None, "cancelled")
    assert activity.status()["last"]["why"] == "cancelled"


def test_accepting_a_suggestion_whole_is_recognised():
    shown = arrival.Shown("foo [\n\t\n]", 7, "^ bar")
    assert arrival.accepted_at(shown, "foo [\n\t^ bar\n]") == 12
    assert arrival.accepted_at(shown, "foo [\n\t^ ba\n]") is None  # partly typed
    assert arrival.accepted_at(shown, "foo [\n\t^ bax\n]") is None
    assert arrival.accepted_at(shown, "fox [\n\t^ bar\n]") is None  # another edit too
    request = CompletionRequest("file:///a.st", shown.text, shown.offset)
    ahead = arrival.after_accepting(request, shown.suggestion)
    assert ahead.text == "foo [\n\t^ bar\n]" and ahead.offset == 12


def test_any_new_job_cancels_a_background_job_and_the_same_work_joins_it():
    worker = InferenceWorker("test")
    gate, started = threading.Event(), threading.Event()
    try:
        def wait(cancel: CancelToken) -> str:
            started.set()
            while not cancel.cancelled and not gate.is_set():
                gate.wait(0.01)
            return "cancelled" if cancel.cancelled else "done"

        ahead = worker.submit(wait, key="file:///a.st", tag="next", background=True)
        # The same work asked again for the document joins the job (someone waits for it
        # only when the asker is not itself working ahead).
        assert worker.job(wait, "file:///a.st", "next", background=True) is ahead
        assert started.wait(10)
        # Work computed ahead is not a completion in flight: nothing needs to give way to it.
        assert not worker.busy
        assert arrival.give_way(lambda: worker.busy, lambda: False) < 1
        other = worker.submit(lambda c: "other", key="file:///b.st")
        assert ahead.future.result(10) == "cancelled"
        assert other.future.result(10) == "other"
        # A job someone waits for is not cancelled by other documents' work.
        wanted = worker.submit(wait, key="file:///a.st")
        worker.submit(lambda c: "third", key="file:///c.st")
        gate.set()
        assert wanted.future.result(10) == "done"
    finally:
        worker.close()


def test_a_finished_generation_answers_its_tag_again_at_once():
    """The worker remembers generations that ran to their end by tag, for jobs that may reuse
    them (greedy decoding): the same tag asked again is answered at once, without queueing
    behind a running job. Without reuse, or after a cut generation, the job runs."""
    worker = InferenceWorker("test")
    gate = threading.Event()
    try:
        first = worker.job(lambda c: Generation("a", "stop"), "file:///a.st", "p", reuse=4)
        assert first.future.result(10).text == "a" and not first.reused
        busy = worker.submit(lambda c: gate.wait(10), key="file:///b.st")
        again = worker.job(lambda c: Generation("b", "stop"), "file:///c.st", "p", reuse=4)
        assert again.reused and again.future.done() and again.future.result().text == "a"
        fresh = worker.job(lambda c: Generation("b", "stop"), "file:///c.st", "p")
        assert not fresh.reused and not fresh.future.done()  # queued behind `busy`
        gate.set()
        assert busy.future.result(10) and fresh.future.result(10).text == "b"
        cut = worker.job(lambda c: Generation("x", "budget"), "file:///a.st", "q", reuse=4)
        assert cut.future.result(10).stop_reason == "budget"
        rerun = worker.job(lambda c: Generation("y", "stop"), "file:///a.st", "q", reuse=4)
        assert not rerun.reused and rerun.future.result(10).text == "y"
    finally:
        worker.close()
    kept = Remembered(size=1)
    kept.keep("p", Generation("a", "eos"))
    kept.keep("q", Generation("b", "length"))
    kept.keep("r", Generation("c", "cancelled"))
    assert kept.get("p") is None and kept.get("q") == Generation("b", "length")
    assert kept.get("r") is None


# --- the pipeline with the real embedded coder --------------------------------------------


class CountingEngine:
    """The embedded coder on one context, counting the generations it runs."""

    def __init__(self, model) -> None:  # type: ignore[no-untyped-def]
        from server.engine.session import LlamaSession

        self.model = model
        self.session = LlamaSession(model, n_ctx=2048, n_batch=128, n_threads=2)
        self.calls = 0

    @property
    def model_id(self) -> str:
        return str(self.model.model_id)

    @property
    def fim(self):  # type: ignore[no-untyped-def]
        return self.model.fim

    def generate(self, prompt, params, cancel, stop_check=None):  # type: ignore[no-untyped-def]
        self.calls += 1
        return self.session.generate(prompt, params, cancel, stop_check)


STORE = (Path(__file__).parent / "fixtures" / "sample" / "tonel" / "StreamingRights-Core"
         / "SRStore.class.st")


def test_the_suggestion_computed_ahead_answers_the_request_after_accepting(gemma_model):
    import asyncio

    from server.completion.cache import SuggestionCache
    from server.completion.pipeline import CompletionOptions, complete_async

    engine = CountingEngine(gemma_model)
    worker = InferenceWorker("coder")
    cache = SuggestionCache()
    options = CompletionOptions(max_generate_ms=None, max_tokens_block=24)
    text = STORE.read_text(encoding="utf-8") + "\nSRStore >> isEmpty [\n\t^ "
    request = CompletionRequest("file:///store.st", text + "\n]\n", len(text))

    async def run() -> None:
        shown = await complete_async(request, engine, worker, (), options, cache)
        assert shown is not None and shown.text and engine.calls == 1
        # Computed ahead while the user reads it; the request after accepting finds it ready.
        ahead = arrival.after_accepting(request, shown.text)
        await complete_async(ahead, engine, worker, (), options, cache, ahead=True)
        assert engine.calls == 2
        asked = await complete_async(ahead, engine, worker, (), options, cache)
        assert asked is not None and asked.source == "cache" and engine.calls == 2
        # Asked before the work ahead is done: the request joins it instead of starting over.
        other = text.replace("isEmpty", "hasNoRights") + "\n]\n"
        early = CompletionRequest("file:///store.st", other, len(other) - 3)
        task = asyncio.ensure_future(
            complete_async(early, engine, worker, (), options, cache, ahead=True)
        )
        await asyncio.sleep(0)
        joined = await complete_async(early, engine, worker, (), options, cache)
        await task
        assert joined is not None and joined.source == "model" and engine.calls == 3

    try:
        asyncio.run(run())
    finally:
        worker.close()
        engine.session.close()


class SlowProvider:
    """Context that takes as long as a retrieval query embedded on a busy CPU: it answers
    only once the event loop has run something else, or gives up after 10 s."""

    def __init__(self) -> None:
        self.loop_ran = threading.Event()
        self.answered_while_waiting = False

    def snippets(self, request, cursor):  # type: ignore[no-untyped-def]
        self.answered_while_waiting = self.loop_ran.wait(10)
        return ()


def test_the_event_loop_goes_on_while_a_context_is_built(gemma_model):
    """Hovers and definitions are answered while a suggestion's context is being built (the
    VS Code end-to-end hover once timed out behind a query embedding on the loop)."""
    import asyncio

    from server.completion.pipeline import CompletionOptions, complete_async

    engine = CountingEngine(gemma_model)
    worker = InferenceWorker("coder")
    provider = SlowProvider()
    text = STORE.read_text(encoding="utf-8") + "\nSRStore >> isEmpty [\n\t^ "
    request = CompletionRequest("file:///store.st", text + "\n]\n", len(text))

    async def run() -> None:
        task = asyncio.ensure_future(complete_async(
            request, engine, worker, (provider,), CompletionOptions(max_tokens_block=8)
        ))
        await asyncio.sleep(0.05)  # what a hover handler would be doing meanwhile
        provider.loop_ran.set()
        suggestion = await task
        assert suggestion is not None

    try:
        asyncio.run(run())
    finally:
        worker.close()
        engine.session.close()
    assert provider.answered_while_waiting
