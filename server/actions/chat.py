"""Chat prompts for instruction-tuned models, rendered with the model's own template.

The template is the Jinja text stored in the GGUF (`tokenizer.chat_template`), rendered in a
sandbox the way transformers does. A model without a template, or one whose template fails
to render, gets ChatML (`<|im_start|>role ... <|im_end|>`), which most small instruct models
were trained on.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Message:
    role: str  # "system", "user" or "assistant"
    content: str


def chatml(messages: Sequence[Message]) -> str:
    parts = [f"<|im_start|>{m.role}\n{m.content}<|im_end|>\n" for m in messages]
    return "".join(parts) + "<|im_start|>assistant\n"


@lru_cache(maxsize=8)
def _compile(template: str) -> Any:
    from jinja2.exceptions import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    return env.from_string(template)


def render_chat(template: str | None, messages: Sequence[Message]) -> str:
    """The prompt text for `messages`, ending where the assistant's answer begins."""
    if not template:
        return chatml(messages)
    try:
        return str(
            _compile(template).render(
                messages=[{"role": m.role, "content": m.content} for m in messages],
                add_generation_prompt=True,
                # The tokenizer adds BOS itself; a template that writes it would double it.
                bos_token="",
                eos_token="",
            )
        )
    except Exception as err:  # a broken or unsupported template: ChatML still works
        log.warning("chat template failed (%s); using ChatML", err)
        return chatml(messages)
