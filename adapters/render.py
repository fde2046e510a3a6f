"""One example -> the prompt the model sees and the target it should write.

Training (transformers) and evaluation (llama.cpp) use this one function, and it lays a FIM
example's prompt out with serving's own `build_prompt` (server/completion/prompt.py) from the
cursor context the dataset kept: for a model with repository tokens (Qwen2.5-Coder) the
repository layout, else a FIM prompt from the model's own FIM token texts, else the prefix
alone; byte for byte what the server sends at that cursor. Other examples (and FIM examples
of datasets built before the context was kept) use `layout`.
The prompt and the target are tokenized separately (prompt with BOS), which is how generation
sees them: the model continues from the prompt's last token.
"""

from __future__ import annotations

from adapters.dataset import Example
from server.completion.prompt import build_prompt, layout
from server.engine.types import FimTokens


def render(example: Example, fim: FimTokens | None) -> tuple[str, str]:
    """(prompt, target) of an example for a model with these FIM tokens (None: no FIM)."""
    if example.kind == "fim" and example.context is not None:
        ctx = example.context.cursor_context()
        return build_prompt(ctx, fim, context_chars=example.snippet_chars).text, example.middle
    prompt = layout(fim if example.kind == "fim" else None, example.prefix, example.suffix)
    return prompt, example.middle


def fit_tokens(
    prompt_ids: list[int], target_ids: list[int], max_len: int, keep_head: int
) -> tuple[list[int], list[int]]:
    """Cut a prompt from the left (keeping its first `keep_head` tokens, e.g. BOS) and, if it
    must, the target from the right, so that both fit in `max_len` tokens. The target keeps at
    most three quarters of the room: a prompt with no context teaches little."""
    max_target = max(1, (max_len * 3) // 4)
    target_ids = target_ids[:max_target]
    room = max_len - len(target_ids)
    if len(prompt_ids) > room:
        head = prompt_ids[:keep_head]
        tail_len = max(room - len(head), 0)
        prompt_ids = head + (prompt_ids[len(prompt_ids) - tail_len :] if tail_len else [])
    return prompt_ids, target_ids
