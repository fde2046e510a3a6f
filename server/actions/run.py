"""One entry point for the five actions: `run_action(input, run)`."""

from __future__ import annotations

from collections.abc import Callable

from server.actions.code import add_comment, implement, write_tests
from server.actions.documents import design, explain
from server.actions.targets import ActionKind
from server.actions.types import ActionInput, ActionResult, Run

ACTIONS: dict[ActionKind, Callable[[ActionInput, Run], ActionResult]] = {
    "explain": explain,
    "design": design,
    "implement": implement,
    "tests": write_tests,
    "comment": add_comment,
}


def run_action(inp: ActionInput, run: Run) -> ActionResult:
    """Run an action to its result (blocks while the models generate: call it on the
    actions' worker). ActionError carries a message for the user."""
    return ACTIONS[inp.kind](inp, run)
