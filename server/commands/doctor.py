"""`smalltalk-lsp doctor`: each configured model (architecture, parameters, quantization,
context length, FIM support, chat template) and the memory plan against this machine.

Reads GGUF headers only; loads nothing. Exits 1 when a model is missing or broken, or the plan
does not fit in the memory available.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

HELP = "show the configured models and whether they fit in memory"


class ModelReport(BaseModel):
    role: str
    configured: str
    path: str | None = None
    ok: bool = False
    problem: str | None = None
    architecture: str | None = None
    parameters: int | None = None
    quantization: str | None = None
    file_mib: float | None = None
    context_length_trained: int | None = None
    n_ctx: int | None = None
    fim: bool | None = None
    fim_tokens: dict[str, str] = {}
    chat_template: bool | None = None
    shares_weights_with: str | None = None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", type=Path, default=None, help="workspace (default: current)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def inspect_models(root: Path) -> tuple[list[ModelReport], Any, list[str]]:
    """Reports per role, the memory plan (None if nothing to plan) and settings problems."""
    from server.config import load_settings
    from server.engine.embedded import ModelNotFound, resolve_model_path
    from server.engine.gguf_info import GGUFError, read_gguf
    from server.engine.memory import plan_memory, role_needs
    from server.engine.registry import role_batch
    from server.engine.types import ROLES

    loaded = load_settings(root, trusted=True)  # the root the user named
    settings = loaded.settings
    reports: list[ModelReport] = []
    needs = []
    by_path: dict[str, str] = {}
    for role in ROLES:
        name = settings.model_for(role)
        report = ModelReport(role=role, configured=name or "off")
        reports.append(report)
        if name is None:
            report.ok = True
            continue
        try:
            path = resolve_model_path(name, root)
            report.path = str(path)
            info = read_gguf(path)
        except (ModelNotFound, GGUFError) as err:
            report.problem = str(err)
            continue
        n_ctx = settings.n_ctx_for(role)
        key = str(path.resolve())
        report.shares_weights_with = by_path.get(key)
        by_path.setdefault(key, role)
        report.ok = True
        report.architecture = info.architecture
        report.parameters = info.n_params
        report.quantization = info.quantization
        report.file_mib = round(info.file_size / 2**20, 1)
        report.context_length_trained = info.context_length
        report.n_ctx = n_ctx
        report.fim = info.has_fim
        report.fim_tokens = info.fim_tokens
        report.chat_template = info.has_chat_template
        batch = role_batch(settings, role)
        needs.append(role_needs(role, info, n_ctx, batch, report.shares_weights_with))
    plan = plan_memory(needs) if needs else None
    return reports, plan, loaded.problems


def _describe(report: ModelReport) -> list[str]:
    head = f"{report.role}: {report.configured}"
    if report.configured == "off":
        return [f"{head} (role off)"]
    if not report.ok:
        return [head, f"  PROBLEM: {report.problem}"]
    params = f"{report.parameters / 1e6:.0f}M" if report.parameters else "?"
    trained = report.context_length_trained
    capped = bool(trained and report.n_ctx and report.n_ctx > trained)
    fim = ", ".join(report.fim_tokens.values()) if report.fim else "no (prefix-only prompts)"
    lines = [
        head,
        f"  file          {report.path} ({report.file_mib} MiB)",
        f"  architecture  {report.architecture}, {params} parameters, {report.quantization}",
        f"  context       {report.n_ctx} configured, {report.context_length_trained} trained"
        + (" (the engine uses the trained length)" if capped else ""),
        f"  FIM           {fim}",
        f"  chat template {'yes' if report.chat_template else 'no'}",
    ]
    if report.shares_weights_with:
        lines.append(f"  weights       shared with the {report.shares_weights_with} role")
    return lines


def _threads(root: Path) -> tuple[int, int, bool]:
    """Prompt threads, the fewest generation threads, and whether completions take the free
    cores above that (server/engine/cpu.py)."""
    from server.config import load_settings

    cpu = load_settings(root, trusted=True).settings.cpu_settings
    return cpu.threads, cpu.token_threads, cpu.generation_threads is None


def run(args: argparse.Namespace) -> int:
    root = (args.root or Path.cwd()).absolute()
    reports, plan, problems = inspect_models(root)
    threads = _threads(root)
    broken = [r for r in reports if not r.ok]
    fits = plan is None or plan.fits
    if args.json:
        print(
            json.dumps(
                {
                    "models": [r.model_dump() for r in reports],
                    "memory": None
                    if plan is None
                    else plan.model_dump() | {"fits": plan.fits},
                    "threads": {"prompt": threads[0], "generation": threads[1],
                                "completions_up_to_free_cores": threads[2]},
                    "cpu_count": os.cpu_count(),
                    "settings_problems": problems,
                },
                indent=2,
            )
        )
    else:
        for problem in problems:
            print(f"settings: {problem}")
        for report in reports:
            print("\n".join(_describe(report)))
        adaptive = (f" (completions: up to {threads[0]}, as many cores as are free)"
                    if threads[2] and threads[0] > threads[1] else "")
        print(f"threads: {threads[0]} for prompts, {threads[1]}{adaptive} for generation")
        if plan is not None:
            print("memory plan:")
            for line in plan.describe():
                print(f"  {line}")
        if not fits:
            print(
                "The configured models do not fit in the memory available: lower n_ctx, "
                "turn a role off, or choose smaller models.",
                file=sys.stderr,
            )
    return 1 if broken or not fits else 0
