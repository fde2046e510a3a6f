"""The embedded reasoners explaining real Pharo methods, side by side in one run.

    .venv/bin/python bench/bench_reasoners.py [--max-tokens 160] [--threads 2]

SmolLM2-135M-Instruct, Qwen2.5-Coder-0.5B-Instruct and Qwen2.5-Coder-1.5B-Instruct each explain
the same 10 methods of ../shared/corpus/pharo-subset with the server's own Explain prompt
(server.actions.prompts.explain_messages, rendered with each model's chat template), greedy,
at most --max-tokens tokens. The methods are chosen by a fixed rule (METHOD RULE below); for
each the benchmark states behaviour facts, and an answer scores a fact when it names it (a
pattern for each fact, case-insensitive): a check of named facts, not the model's own judgement.
A model that parrots the code's identifiers scores some facts; the ones that need reading the
code (what is answered, when nothing happens) separate the models.

METHOD RULE: every instance-side method of the non-test packages (Tonel files in path order)
with no comment, 3 to 7 non-blank body lines and at least 3 distinct message sends, ordered by
the sha1 of "Class>>selector"; the first 10. The run stops if the rule picks other methods than
the facts below are written for (the corpus changed).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# ../shared/corpus beside the checkout, or beside a folder of worktrees.
CORPUS = next(
    (
        base / "shared" / "corpus" / "pharo-subset" / "src"
        for base in (ROOT.parent, ROOT.parent.parent)
        if (base / "shared" / "corpus" / "pharo-subset" / "src").is_dir()
    ),
    ROOT.parent / "shared" / "corpus" / "pharo-subset" / "src",
)
MODELS = ("smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b")

# Class>>selector -> (fact, pattern) pairs: what the method does, as a reader of it would say.
FACTS: dict[str, list[tuple[str, str]]] = {
    "ZnSingleThreadedServer>>logServerHandlerError:": [
        ("makes a log event", r"log(ging)? event|event"),
        ("of the handler error kind", r"handler"),
        ("the event carries the exception", r"exception|error"),
        ("emits it", r"emit"),
    ],
    "SharedQueue>>postCopy": [
        ("the copy gets its own copy of the items", r"\bitems\b"),
        ("and a new monitor",
         r"new monitor|monitor new|fresh monitor|new (instance of )?`?monitor"),
        ("inside the monitor's critical section",
         r"critical|thread[- ]safe|synchroni|\block|mutual exclusion|atomic"),
        ("after super postCopy", r"super"),
    ],
    "SmallDictionary>>addAll:": [
        ("adds each key/value pair", r"key.{0,40}value|pairs?\b|associations?"),
        ("does nothing when given itself",
         r"itself|same (object|collection|dictionary|instance)|== self|identical|the receiver"),
        ("answers the argument",
         r"(return|answer)s?[^.]{0,60}(akeyedcollection|argument|given|passed|input|parameter)"),
    ],
    "WeakMessageSend>>value:": [
        ("gets the (weakly held) receiver", r"receiver"),
        ("answers nil when the receiver is gone", r"\bnil\b"),
        ("else performs the selector with the argument", r"perform|selector"),
    ],
    "ZnSingleThreadedServer>>logStopped": [
        ("only from log level 1", r"log ?level"),
        ("answers nil otherwise", r"\bnil\b|nothing|not log|n't log|no log"),
        ("a server stopped event", r"stop"),
        ("described by the server process name", r"process name|serverprocessname|description"),
    ],
    "ZnMultiThreadedServer>>exceptionSet:": [
        ("builds an ExceptionSet", r"exception ?set"),
        ("from the given class names", r"class ?names|names"),
        ("skips names not defined in Smalltalk",
         r"exist|defined|present|includeskey|global|skip|ignor|only (those|the)|if (it|the)"),
        ("by folding over them (inject:into:)", r"inject|accumulat|fold|reduc|iterat|each"),
    ],
    "Collection>>copyWithoutFirstOccurrenceOf:": [
        ("answers a copy", r"cop(y|ies)|new collection"),
        ("without only the first element equal to the argument",
         r"first (occurrence|one|match|instance|element|equal)|only (the )?(first|one)"),
        ("through a done flag", r"\bdone\b|flag"),
    ],
    "AbstractLayoutScope>>ifEmpty:": [
        ("when empty, evaluates the block", r"block"),
        ("and answers its value", r"evaluat|value|execut|\bruns?\b|call"),
        ("otherwise answers the receiver", r"\bself\b|itself|the receiver|the scope"),
    ],
    "LinkedList>>copyWithout:": [
        ("makes a new list of the same class",
         r"new (instance|list|linked ?list|collection)|same class|self class new"),
        ("with every element not equal to the argument",
         r"except|without|not equal|exclud|skip|omit|other than|remov"),
        ("answers the new list", r"return|answer"),
    ],
    "ZnSingleThreadedServer>>logConnectionRejected:": [
        ("only from log level 3", r"log ?level|\b3\b|three"),
        ("a connection rejected event", r"reject"),
        ("with the remote address", r"address"),
        ("nil as address when asking fails", r"error|exception|fail"),
    ],
}


@dataclass
class Case:
    key: str
    source: str


def pick_methods(root: Path, count: int = 10) -> list[Case]:
    """The METHOD RULE of the module docstring."""
    from smalltalk_grammar import parse_file

    candidates: list[tuple[str, Case]] = []
    for path in sorted(root.rglob("*.st")):
        if path.relative_to(root).parts[0].endswith("-Tests"):
            continue
        for method in parse_file(path).methods:
            body = [line for line in method.source.strip().split("\n")[1:] if line.strip()]
            if method.side != "instance" or method.comment or '"' in method.source:
                continue
            if not 3 <= len(body) <= 7 or len(set(method.sends)) < 3:
                continue
            key = f"{method.class_name}>>{method.selector}"
            digest = hashlib.sha1(key.encode()).hexdigest()
            candidates.append((digest, Case(key, method.source.strip())))
    candidates.sort(key=lambda item: item[0])
    return [case for _, case in candidates[:count]]


def score(answer: str, facts: list[tuple[str, str]]) -> list[bool]:
    return [re.search(pattern, answer, re.IGNORECASE) is not None for _, pattern in facts]


@dataclass
class Answer:
    text: str
    found: list[bool]
    seconds: float
    tokens: int


def explain_all(name: str, cases: list[Case], max_tokens: int, threads: int) -> list[Answer]:
    from server.actions.chat import render_chat
    from server.actions.prompts import explain_messages
    from server.config import Settings
    from server.engine.registry import ModelRegistry
    from server.engine.types import CancelToken, GenerateParams

    settings = Settings.model_validate(
        {
            "models": {"code_generation": "off", "reasoning": name, "reasoner_n_ctx": 2048},
            # Generation threads: half of them, as the server's default.
            "cpu_settings": {"threads": threads},
        }
    )
    registry = ModelRegistry(settings)
    engine = registry.load("reasoner")
    if engine is None:
        raise SystemExit(f"{name}: {registry.errors}")
    answers = []
    try:
        template = engine.model.chat_template()
        for case in cases:
            prompt = render_chat(template, explain_messages("method", case.source, ""))
            started = time.monotonic()
            generation = engine.generate(
                prompt, GenerateParams(max_tokens=max_tokens, temperature=0.0), CancelToken()
            )
            answers.append(
                Answer(
                    generation.text,
                    score(generation.text, FACTS[case.key]),
                    time.monotonic() - started,
                    generation.generated_tokens,
                )
            )
    finally:
        registry.close()
    return answers


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max-tokens", type=int, default=160)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--show", action="store_true", help="print every answer")
    args = parser.parse_args()
    if not CORPUS.is_dir():
        print(f"no corpus at {CORPUS}: this benchmark needs ../shared/corpus/pharo-subset")
        return 2
    sys.path.insert(0, str(ROOT))
    cases = pick_methods(CORPUS)
    picked = [case.key for case in cases]
    if picked != list(FACTS):
        print(f"the rule picked other methods than the facts are for:\n{picked}")
        return 2
    load = os.getloadavg()
    print(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
          f"({os.cpu_count()} cores)")
    print(f"{len(cases)} methods, {sum(len(f) for f in FACTS.values())} facts, "
          f"max {args.max_tokens} tokens, greedy, {args.threads} threads for prompts")
    results = {name: explain_all(name, cases, args.max_tokens, args.threads) for name in MODELS}
    if args.show:
        for name, answers in results.items():
            for case, answer in zip(cases, answers, strict=True):
                print(f"\n--- {name} on {case.key}: {sum(answer.found)}/{len(answer.found)}")
                print(answer.text.strip())
    width = max(len(case.key) for case in cases)
    print()
    print(f"{'method':<{width}}  " + "  ".join(f"{name:>18}" for name in MODELS))
    for index, case in enumerate(cases):
        cells = []
        for name in MODELS:
            found = results[name][index].found
            cells.append(f"{sum(found)}/{len(found):<16}")
        print(f"{case.key:<{width}}  " + "  ".join(f"{c:>18}" for c in cells))
    print()
    print(f"{'':<{width}}  " + "  ".join(f"{name:>18}" for name in MODELS))
    total = sum(len(f) for f in FACTS.values())
    rows = {
        "facts named": lambda a: f"{sum(sum(x.found) for x in a)}/{total}",
        "methods with all facts": lambda a: f"{sum(all(x.found) for x in a)}/{len(a)}",
        "median seconds": lambda a: f"{statistics.median(x.seconds for x in a):.1f}",
        "median tokens": lambda a: f"{statistics.median(x.tokens for x in a):.0f}",
        "tokens/s": lambda a: f"{sum(x.tokens for x in a) / sum(x.seconds for x in a):.1f}",
    }
    for label, cell in rows.items():
        print(f"{label:<{width}}  " + "  ".join(f"{cell(results[n]):>18}" for n in MODELS))
    load = os.getloadavg()
    print(f"\nload average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
