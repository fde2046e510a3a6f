"""Code actions from the models: plain functions, no LSP types.

targets    what lies at a code-action request's range and which actions are offered there
run        run_action(ActionInput, Run): explain, design, implement, tests, comment
documents  Explain and Design: Markdown notes (answer first, reasoning folded below)
code       Implement design, Write SUnit tests, Add method comment: edits that must parse
formats    Smalltalk written in the file's own format (Tonel, chunk, GNU brackets); checks
thinking   `<think>` splitting
generate   long generations that pause while a completion runs
models     the reasoner, the actions' own coder context, their worker and the gate
notes      notes under <workspace>/.smalltalk-lsp/notes/
summary    hover summaries cached by method content hash
"""

from server.actions.models import ActionCancelled, ActionError, ActionModels
from server.actions.run import run_action
from server.actions.targets import (
    ACTION_KINDS,
    KIND_PREFIX,
    TITLES,
    ActionKind,
    Site,
    offered,
    site_at,
)
from server.actions.types import (
    ActionInput,
    ActionOptions,
    ActionResult,
    EditResult,
    NoteResult,
    Run,
)

__all__ = [
    "ACTION_KINDS",
    "KIND_PREFIX",
    "TITLES",
    "ActionCancelled",
    "ActionError",
    "ActionInput",
    "ActionKind",
    "ActionModels",
    "ActionOptions",
    "ActionResult",
    "EditResult",
    "NoteResult",
    "Run",
    "Site",
    "offered",
    "run_action",
    "site_at",
]
