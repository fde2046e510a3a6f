"""FileTree (Cypress) layout: one directory per class, one file per method.

Pkg.package/Foo.class/properties.json       the class definition (JSON)
Pkg.package/Foo.class/README.md             the class comment
Pkg.package/Foo.class/instance/at.put..st   line 0: category; then the method source
Pkg.package/Foo.class/class/new.st          class side
Pkg.package/Foo.extension/...               methods added to a class defined elsewhere
Pkg.package/TFoo.trait/...                  a trait
"""

from __future__ import annotations

import json
import re
from pathlib import PurePath

from smalltalk_grammar.build import FactsCache, make_method
from smalltalk_grammar.model import ClassDef, ClassKind, Diagnostic, MethodDef, Side
from smalltalk_grammar.text import LineIndex

_KINDS: dict[str, ClassKind] = {".class": "class", ".extension": "extension", ".trait": "trait"}
_LINE_END = re.compile(r"\r\n|\r|\n")


def class_dir_kind(name: str) -> ClassKind | None:
    """`Foo.class` -> "class", `Foo.extension` -> "extension", `TFoo.trait` -> "trait"."""
    for suffix, kind in _KINDS.items():
        if name.endswith(suffix) and len(name) > len(suffix):
            return kind
    return None


def method_location(path: str | None) -> tuple[str, Side] | None:
    """(class name, side) when `path` is a FileTree method file, else None."""
    if not path:
        return None
    # Plain string splitting: this runs for every file parsed.
    parts = path.replace("\\", "/").rsplit("/", 3)
    if len(parts) < 3 or not parts[-1].endswith(".st") or parts[-2] not in ("instance", "class"):
        return None
    class_dir = parts[-3]
    kind = class_dir_kind(class_dir)
    if kind is None:
        return None
    side: Side = "class" if parts[-2] == "class" else "instance"
    return class_dir.rsplit(".", 1)[0], side


def is_class_properties(path: PurePath) -> bool:
    return path.name == "properties.json" and class_dir_kind(path.parent.name) is not None


def parse_method_file(
    text: str, location: tuple[str, Side], index: LineIndex, cache: FactsCache
) -> tuple[list[MethodDef], list[Diagnostic]]:
    """Line 0 is the category, the rest is the method source."""
    diagnostics: list[Diagnostic] = []
    first = _LINE_END.search(text)
    if first is None:
        diagnostics.append(
            Diagnostic(
                range=index.range(0, len(text)),
                message="FileTree method file has a category line but no method source",
            )
        )
        return [], diagnostics
    category = text[: first.start()].strip() or None
    start = first.end()
    body = text[start:]
    lead = len(body) - len(body.lstrip())
    source = body.strip()
    if not source:
        diagnostics.append(
            Diagnostic(range=index.range(0, len(text)), message="FileTree method file is empty")
        )
        return [], diagnostics
    begin = start + lead
    method = make_method(
        index,
        class_name=location[0],
        side=location[1],
        category=category,
        source=source,
        start=begin,
        end=begin + len(source),
        found=cache.get(source),
        to_abs=lambda offset: begin + offset,
        diagnostics=diagnostics,
    )
    return [method], diagnostics


def parse_properties(
    text: str, path: PurePath, index: LineIndex, comment: str | None
) -> tuple[list[ClassDef], list[Diagnostic]]:
    """A class directory's properties.json (and its README.md comment) -> the class."""
    whole = index.range(0, len(text))
    try:
        data = json.loads(text)
    except ValueError as err:
        return [], [Diagnostic(range=whole, message=f"invalid JSON in properties.json: {err}")]
    if not isinstance(data, dict):
        return [], [Diagnostic(range=whole, message="properties.json is not a JSON object")]
    kind = class_dir_kind(path.parent.name) or "class"
    name = data.get("name") or path.parent.name.rsplit(".", 1)[0]
    if not isinstance(name, str):
        return [], [Diagnostic(range=whole, message="properties.json: 'name' is not a string")]
    found = re.search(r'"name"\s*:\s*"([^"]*)"', text)
    name_range = index.range(found.start(1), found.end(1)) if found else index.range(0, 0)
    traits = data.get("traitcomposition")
    cls = ClassDef(
        name=name,
        superclass=_str(data.get("super")) if kind == "class" else None,
        kind=kind,
        category=_str(data.get("category")),
        comment=comment.strip() if comment else None,
        instance_variables=_strs(data.get("instvars")),
        class_variables=_strs(data.get("classvars")),
        class_instance_variables=_strs(data.get("classinstvars")),
        traits=traits if isinstance(traits, str) and traits not in ("", "{}") else None,
        range=whole,
        name_range=name_range,
    )
    return [cls], []


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _strs(value: object) -> list[str]:
    if not isinstance(value, list):
        return []
    return [v for v in value if isinstance(v, str)]
