"""The default context provider: the current class's definition and its sibling methods'
signatures, from the project model. Retrieval adds its own provider beside this one."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from server.class_render import render_class
from server.completion.cursor import CursorAnalysis
from server.completion.types import CompletionRequest, ContextSnippet
from server.project_model import ProjectModel


class ClassContextProvider:
    """Snippets: the class definition (unless the file itself defines the class, in which
    case the prompt already shows it) and the other methods' selectors of the class."""

    def __init__(self, project: Callable[[], ProjectModel | None], max_selectors: int = 60) -> None:
        self._project = project
        self.max_selectors = max_selectors

    def snippets(
        self, request: CompletionRequest, cursor: CursorAnalysis
    ) -> Sequence[ContextSnippet]:
        project, method = self._project(), cursor.method
        if project is None or method is None or not method.class_name:
            return []
        name = method.class_name
        out: list[ContextSnippet] = []
        definitions = project.class_definitions(name)
        defined_here = any(path == request.path for path, _ in definitions)
        cls = project.class_named(name)
        if cls is not None and not defined_here:
            out.append(ContextSnippet(render_class(cls, "pharo"), "class definition"))
        selectors = sorted(
            {
                m.selector
                for _, m in project.methods_of(name, method.side)
                if m.selector != method.selector
            }
        )[: self.max_selectors]
        if selectors:
            side = " class" if method.side == "class" else ""
            listing = " ".join(f"#{selector}" for selector in selectors)
            out.append(ContextSnippet(f'"{name}{side} also understands: {listing}"', "selectors"))
        return out
