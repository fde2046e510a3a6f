"""Index units: one per method and one per class definition, taken from the parsed model.

A unit's text is what gets embedded: a header naming the class, side, selector and category,
then the source. Its hash covers that text, so an unchanged unit is never embedded twice.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable
from typing import Literal

from pydantic import BaseModel, ConfigDict

from server.class_render import render_class
from smalltalk_grammar.model import ClassDef, MethodDef, SourceFile

UnitKind = Literal["method", "class"]

# The embedding model reads at most a few hundred tokens; longer text only costs tokenizing.
MAX_UNIT_CHARS = 2000


class Unit(BaseModel):
    model_config = ConfigDict(frozen=True)

    # Stable identity within a workspace: kind, relative path, class, side, selector.
    key: str
    kind: UnitKind
    path: str
    class_name: str
    side: str = "instance"
    selector: str = ""
    category: str = ""
    text: str
    hash: str
    # A trivial getter or setter: embedded after everything else, or not at all.
    accessor: bool = False


def relative_path(path: str | None, root: str | None) -> str:
    """The path as stored in the index: relative to the workspace root when inside it."""
    if not path:
        return ""
    if root:
        try:
            rel = os.path.relpath(path, root)
        except ValueError:  # another drive on Windows
            return path
        if not rel.startswith(".."):
            return rel.replace(os.sep, "/")
    return path


def method_header(method: MethodDef) -> str:
    side = " class" if method.side == "class" else ""
    category = f" [{method.category}]" if method.category else ""
    return f"{method.class_name}{side} >> {method.selector}{category}"


def method_text(method: MethodDef) -> str:
    return f"{method_header(method)}\n{method.source}"[:MAX_UNIT_CHARS]


_GETTER = re.compile(r"\^\s*([A-Za-z_]\w*)\s*\.?")
_SETTER = re.compile(r"([A-Za-z_]\w*)\s*:=\s*([A-Za-z_]\w*)\s*\.?")
_COMMENT = re.compile(r'"[^"]*"')


def is_accessor(method: MethodDef) -> bool:
    """`x ^ x` or `x: anX x := anX` on an instance variable, comments aside."""
    parts = method.source.split("\n", 1)
    body = _COMMENT.sub(" ", parts[1] if len(parts) > 1 else "").strip()
    if (found := _GETTER.fullmatch(body)) is not None:
        return not method.arguments and found.group(1) in method.variable_references
    if (found := _SETTER.fullmatch(body)) is not None:
        return (method.arguments == [found.group(2)]
                and found.group(1) in method.variable_references)
    return False


def class_text(cls: ClassDef) -> str:
    """A compact definition: name, superclass, variables, category and comment."""
    return render_class(cls, "unit")[:MAX_UNIT_CHARS]


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def method_key(path: str, class_name: str, side: str, selector: str) -> str:
    return f"method|{path}|{class_name}|{side}|{selector}"


def class_key(path: str, class_name: str) -> str:
    return f"class|{path}|{class_name}"


def units_of_file(source: SourceFile, root: str | None = None) -> list[Unit]:
    """The units of one parsed file. A key seen twice in one file (a method defined twice)
    keeps the later definition, as loading the file into an image would."""
    path = relative_path(source.path, root)
    units: dict[str, Unit] = {}
    for cls in source.classes:
        if cls.kind == "extension":
            continue  # names a class defined elsewhere and carries nothing of its own
        text = class_text(cls)
        key = class_key(path, cls.name)
        units[key] = Unit(
            key=key, kind="class", path=path, class_name=cls.name, category=cls.category or "",
            text=text, hash=_digest(text),
        )
    for method in source.methods:
        text = method_text(method)
        key = method_key(path, method.class_name, method.side, method.selector)
        units[key] = Unit(
            key=key, kind="method", path=path, class_name=method.class_name, side=method.side,
            selector=method.selector, category=method.category or "", text=text,
            hash=_digest(text), accessor=is_accessor(method),
        )
    return list(units.values())


def units_of_files(sources: Iterable[SourceFile], root: str | None = None) -> list[Unit]:
    return [unit for source in sources for unit in units_of_file(source, root)]
