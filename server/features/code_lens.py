"""Code lens on each method header: "N senders · M implementors", resolved lazily (the
counts come from the project model's indexes, no file is read), with a command that opens
the references of the selector (`smalltalk.showReferences` [uri, position]; the editor
plugins run it)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lsprotocol import types

from server.features import common
from server.project_model import ProjectModel

if TYPE_CHECKING:
    from server.core import SmalltalkLanguageServer

COMMAND = "smalltalk.showReferences"


def lenses(ls: SmalltalkLanguageServer, uri: str) -> list[types.CodeLens]:
    snap = ls.snapshot(uri)
    if snap is None:
        return []
    found = []
    for method in snap.source.methods:
        rng = common.lsp_range(method.selector_range)
        found.append(
            types.CodeLens(range=rng, data={"uri": uri, "selector": method.selector})
        )
    return found


def title(project: ProjectModel, selector: str) -> str:
    senders = project.send_count(selector)
    implementors = project.implementor_count(selector)
    return (
        f"{senders} sender{'' if senders == 1 else 's'} · "
        f"{implementors} implementor{'' if implementors == 1 else 's'}"
    )


def resolve(project: ProjectModel, lens: types.CodeLens) -> types.CodeLens:
    data: Any = lens.data
    if not isinstance(data, dict) or not isinstance(data.get("selector"), str):
        return lens
    start = lens.range.start
    lens.command = types.Command(
        title=title(project, data["selector"]),
        command=COMMAND,
        arguments=[data.get("uri"), {"line": start.line, "character": start.character}],
    )
    return lens


def setup(ls: SmalltalkLanguageServer) -> None:
    @ls.handler(
        types.TEXT_DOCUMENT_CODE_LENS, types.CodeLensOptions(resolve_provider=True), empty=list
    )
    def on_code_lens(params: types.CodeLensParams) -> list[types.CodeLens]:
        return lenses(ls, params.text_document.uri)

    @ls.handler(types.CODE_LENS_RESOLVE)
    def on_resolve(lens: types.CodeLens) -> types.CodeLens:
        return resolve(ls.project, lens)
