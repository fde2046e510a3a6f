"""The actions' generation with the real embedded reasoner: it stops generating while a
completion holds the CPU (the gate) and resumes afterwards, to the token limit."""

from __future__ import annotations

import threading
import time

from server.actions.chat import render_chat
from server.actions.generate import generate_yielding
from server.actions.prompts import explain_messages
from server.engine.types import CancelToken, GenerateParams

CODE = "rightsFor: aTerritory\n\t^ self rights select: [:each | each territory = aTerritory]"


def explain_prompt(engine) -> str:
    return render_chat(engine.model.chat_template(), explain_messages("method", CODE, ""))


def test_chat_prompt_uses_the_models_template(smollm_reasoner):
    prompt = explain_prompt(smollm_reasoner)
    assert prompt.startswith("<|im_start|>system\n") and prompt.endswith("<|im_start|>assistant\n")


def test_reasoner_pauses_for_the_gate_and_resumes(smollm_reasoner):
    prompt = explain_prompt(smollm_reasoner)
    busy = threading.Event()
    while_busy: list[int] = []
    texts: dict[int, str] = {}
    closed_for = 1.0

    def on_tokens(n: int, text: str) -> None:
        texts[n] = text
        if busy.is_set():
            while_busy.append(n)
        if n == 4 and not busy.is_set():
            # A completion arrives: the gate closes for a second.
            busy.set()
            threading.Timer(closed_for, busy.clear).start()

    began = time.monotonic()
    result = generate_yielding(
        smollm_reasoner, prompt, GenerateParams(max_tokens=12), CancelToken(), busy.is_set,
        on_tokens,
    )
    took = time.monotonic() - began
    generation = result.generation
    assert result.pauses >= 1
    assert generation.generated_tokens == 12 and generation.stop_reason == "length"
    # Nothing was generated while the gate was closed (the token that closed it aside).
    assert while_busy == []
    assert took >= closed_for
    # It resumed from where it stopped: the text before the pause is kept as it was.
    assert generation.text.startswith(texts[4])
    assert len(generation.text) > len(texts[4])
