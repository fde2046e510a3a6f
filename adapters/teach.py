"""The reasoning model as teacher: explanations and design notes for sampled training methods.

For each sampled method of the train split (held-out classes are never shown to the teacher),
the reasoner writes an explanation ("explain") and a design note ("design"), which become
instruction examples in the coder's own medium, Smalltalk text:

- explain: the class and the method, then `"Foo>>bar: explained:` -> the explanation.
- design: the implement prompt -> the design note as a comment, then the method body.

R1-style `<think>` sections are dropped; only the answer is kept. Each answer is appended to
`teach.jsonl` in the dataset folder and flushed at once, so a killed run loses at most the
answer in progress and a rerun continues with the methods not yet done.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

from adapters.dataset import Example, atomic_write, jsonl_bytes, load_split, read_examples
from adapters.train import TEACH_FILE

log = logging.getLogger(__name__)

TeachKind = Literal["explain", "design"]
_THINK = re.compile(r"<think>.*?(</think>|$)", re.DOTALL)
SYSTEM = "You are an expert Smalltalk developer who explains code clearly and briefly."


class TeachConfig(BaseModel):
    model: str = "smollm2-135m"
    # Methods sampled from the train split (None: all).
    limit: int | None = Field(default=16, gt=0)
    kinds: list[TeachKind] = Field(default_factory=lambda: list[TeachKind](["explain", "design"]))
    max_tokens: int = Field(default=160, gt=0)
    temperature: float = Field(default=0.0, ge=0.0)
    n_ctx: int = Field(default=2048, gt=0)
    threads: int | None = Field(default=None, gt=0)
    seed: int = 0
    # A note shorter than this (in characters) is no lesson and is not kept.
    min_chars: int = Field(default=20, ge=0)


class TeachResult(BaseModel):
    path: str
    done_before: int
    written: int
    skipped: int
    total: int


class Teacher(Protocol):
    """Answers one chat question (the reasoner on its engine, or a remote one)."""

    def ask(self, system: str, question: str) -> str: ...


# --- prompts ---------------------------------------------------------------------------------


def question(example: Example, kind: TeachKind) -> str:
    if kind == "explain":
        return (
            f"Explain in two or three sentences what this Smalltalk method of the class "
            f"{example.class_name} does and why.\n\n{example.header}\n\n{example.source}"
        )
    pattern = example.method_before.split("\n", 1)[0]
    comment = example.method_before[len(pattern):].strip().strip('"')
    wanted = f" whose comment says: {comment}" if comment else ""
    return (
        f"Here is a Smalltalk class:\n\n{example.header}\n\nIn two or three sentences, describe "
        f"how to implement its method `{pattern}`{wanted}. Describe the approach; do not write "
        "code."
    )


def clean_answer(text: str, max_sentences: int = 3) -> str:
    """The answer without thinking, code fences or double quotes (it becomes a comment), cut
    at its first repeated sentence (small teachers loop), at `max_sentences`, and before an
    unfinished last sentence."""
    text = _THINK.sub("", text)
    text = re.sub(r"```.*?(```|$)", "", text, flags=re.DOTALL)
    text = " ".join(text.replace('"', "'").split())
    kept: list[str] = []
    for sentence in re.split(r"(?<=[.!?])\s+", text):
        if not sentence or sentence in kept:
            break
        kept.append(sentence)
        if len(kept) == max_sentences:
            break
    if len(kept) > 1 and not kept[-1].endswith((".", "!", "?")):
        kept.pop()
    return " ".join(kept).strip()


def lesson(example: Example, kind: TeachKind, note: str) -> Example:
    if kind == "explain":
        prefix = f'{example.header}\n\n{example.source}\n\n"{example.method} explained:\n'
        middle = note + '"'
        method_before = ""
    else:
        prefix = example.prefix
        middle = f'\n\t"{note}"' + example.middle
        method_before = example.method_before
    return Example(
        id=teach_id(example, kind),
        kind=kind,
        split="train",
        class_name=example.class_name,
        method=example.method,
        mode="block",
        prefix=prefix,
        middle=middle,
        method_before=method_before,
    )


def teach_id(example: Example, kind: str) -> str:
    return hashlib.sha1(f"teach\0{kind}\0{example.method}\0{example.id}".encode()).hexdigest()[:16]


def sample(examples: list[Example], config: TeachConfig) -> list[Example]:
    """The implement examples of the train split, in a seeded order, `limit` of them."""
    chosen = sorted((e for e in examples if e.kind == "implement" and e.split == "train"),
                    key=lambda e: e.id)
    random.Random(config.seed).shuffle(chosen)
    return chosen[: config.limit] if config.limit else chosen


# --- the run ---------------------------------------------------------------------------------


def done_ids(path: Path) -> set[str]:
    """Ids already written; a truncated last line (a killed run) is cut off the file first."""
    if not path.is_file():
        return set()
    found = read_examples(path)
    data = jsonl_bytes(found)
    if data != path.read_bytes():
        atomic_write(path, data)
    return {example.id for example in found}


def teach(
    dataset_dir: Path,
    config: TeachConfig | None = None,
    teacher: Teacher | None = None,
    progress: bool = True,
) -> TeachResult:
    config = config or TeachConfig()
    dataset_dir = Path(dataset_dir)
    chosen = sample(load_split(dataset_dir, "train"), config)
    path = dataset_dir / TEACH_FILE
    done = done_ids(path)
    todo = [(e, k) for e in chosen for k in config.kinds if teach_id(e, k) not in done]
    own: LlamaTeacher | None = None
    if teacher is None and todo:
        own = LlamaTeacher(config)
        teacher = own
    written = skipped = 0
    bar = _progress(len(todo), progress)
    try:
        with open(path, "a", encoding="utf-8") as handle:
            for example, kind in todo:
                assert teacher is not None
                note = clean_answer(teacher.ask(SYSTEM, question(example, kind)))
                if len(note) < config.min_chars:
                    skipped += 1
                    log.info("teacher gave no usable %s for %s", kind, example.method)
                else:
                    handle.write(lesson(example, kind, note).model_dump_json() + "\n")
                    handle.flush()
                    os.fsync(handle.fileno())
                    written += 1
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
        if own is not None:
            own.close()
    return TeachResult(path=str(path), done_before=len(done), written=written, skipped=skipped,
                       total=len(done) + written)


class LlamaTeacher:
    """The configured reasoner in the server's engine, prompted through its chat template."""

    def __init__(self, config: TeachConfig) -> None:
        from server.engine.embedded import resolve_model_path
        from server.engine.llama_model import load_model
        from server.engine.registry import RoleSpec, open_context

        path = resolve_model_path(config.model)
        self.config = config
        self.model = load_model(path)
        spec = RoleSpec(role="reasoner", name=config.model, path=path, n_ctx=config.n_ctx,
                        n_batch=512, n_threads=config.threads or os.cpu_count() or 1,
                        mmap=True, mlock=False)
        self.engine = open_context(spec, self.model)
        self.render = chat_renderer(self.model.chat_template())

    def ask(self, system: str, question: str) -> str:
        from server.engine.types import CancelToken, GenerateParams

        prompt = self.render([{"role": "system", "content": system},
                              {"role": "user", "content": question}])
        params = GenerateParams(max_tokens=self.config.max_tokens,
                                temperature=self.config.temperature, seed=self.config.seed)
        return self.engine.generate(prompt, params, CancelToken()).text

    def close(self) -> None:
        self.engine.close()
        self.model.close()


def chat_renderer(template: str | None) -> Callable[[list[dict[str, str]]], str]:
    """Messages -> prompt text through the model's own chat template (jinja2), or a plain
    layout for models without one."""
    if not template:
        return lambda messages: "".join(
            f"{m['role'].capitalize()}: {m['content']}\n\n" for m in messages
        ) + "Assistant:"
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    compiled = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True).from_string(
        template
    )

    def render(messages: list[dict[str, str]]) -> str:
        return compiled.render(messages=messages, add_generation_prompt=True, bos_token="",
                               eos_token="")

    return render


def _progress(total: int, enabled: bool) -> Any:
    if not enabled or not total:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc="teaching", unit="note", file=sys.stderr)
