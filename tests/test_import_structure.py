"""The import structure stays a one-way street (read from the sources, nothing imported).

- no module-level import cycle in `server/`, `adapters/`, `smalltalk_grammar/` (imports under
  `if TYPE_CHECKING:` do not count: they never run);
- no import inside a function from one feature module (`server.features.*`) into another
  (features get what they need at setup);
- no pair of top-level packages importing each other, counting every import that runs,
  module-level or inside a function: `smalltalk_grammar` <- `server` <- `adapters`.
  (The command line loads its subcommands by module name from `server.cli.COMMANDS`, the
  `adapters` training command among them, like a plug-in: no server module imports it.)
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("server", "adapters", "smalltalk_grammar")
FEATURES = "server.features"


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    line: int
    in_function: bool


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[_module_name(path)] = path
    return found


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The module of ours an imported name lives in (`a.b.func` -> `a.b`), or None."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _targets(node: ast.Import | ast.ImportFrom, package: str) -> list[str]:
    names: list[str] = []
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            parts = package.split(".")
            if node.level > 1:
                parts = parts[: -(node.level - 1)]
            base = ".".join(parts + ([base] if base else []))
        for alias in node.names:
            full = f"{base}.{alias.name}"
            names.append(full if full in MODULES else base)
    return [t for t in map(_resolve, names) if t]


def _edges() -> list[Edge]:
    edges: list[Edge] = []
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]

        def walk(node: ast.AST, in_function: bool, name: str = name, package: str = package
                 ) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.Import | ast.ImportFrom):
                    for target in _targets(child, package):
                        if target != name:
                            edges.append(Edge(name, target, child.lineno, in_function))
                elif isinstance(child, ast.If) and _is_type_checking(child):
                    walk(ast.Module(body=child.orelse, type_ignores=[]), in_function)
                elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                    walk(child, True)
                else:
                    walk(child, in_function)

        walk(tree, False)
    return edges


EDGES = _edges()


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component: list[str] = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_reader_sees_the_imports() -> None:
    # The check is worth something only if it finds the imports that are there.
    pairs = {(e.source, e.target) for e in EDGES}
    assert ("server.core", "server.config") in pairs
    assert ("server.cli", "server.commands.serve") not in pairs  # imported by name, lazily
    assert any(e.source == "server.commands.serve" and e.in_function for e in EDGES)
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_level_import_cycle() -> None:
    graph: dict[str, set[str]] = {}
    for edge in EDGES:
        if not edge.in_function:
            graph.setdefault(edge.source, set()).add(edge.target)
    assert _cycles(graph) == []


def test_features_do_not_import_each_other_inside_functions() -> None:
    feature = FEATURES + "."
    inner = [
        f"{e.source}:{e.line} -> {e.target}"
        for e in EDGES
        if e.in_function and e.source.startswith(feature) and e.target.startswith(feature)
    ]
    assert inner == []


def test_top_level_packages_import_one_way() -> None:
    between: dict[tuple[str, str], list[str]] = {}
    for edge in EDGES:
        a, b = edge.source.split(".")[0], edge.target.split(".")[0]
        if a != b:
            between.setdefault((a, b), []).append(f"{edge.source}:{edge.line} -> {edge.target}")
    both_ways = {
        pair: between[pair] + between[(pair[1], pair[0])]
        for pair in between
        if (pair[1], pair[0]) in between and pair < (pair[1], pair[0])
    }
    assert both_ways == {}
    # The grammar stands alone: it is what everything else reads Smalltalk with.
    assert not [pair for pair in between if pair[0] == "smalltalk_grammar"]
