"""The project model: every parsed source file of a workspace, with lookups by class and selector.

Plain data and plain functions; the LSP layer keeps one of these current and features read it.
Replacing a file's parse result is the only way to change it, so lookups are rebuilt per file.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator

from smalltalk_grammar.model import ClassDef, MethodDef, SourceFile


class ProjectModel:
    def __init__(self, files: Iterable[SourceFile] = ()) -> None:
        self._files: dict[str, SourceFile] = {}
        self._classes: dict[str, list[tuple[str, ClassDef]]] = defaultdict(list)
        self._implementors: dict[str, list[tuple[str, MethodDef]]] = defaultdict(list)
        self._senders: dict[str, list[tuple[str, MethodDef]]] = defaultdict(list)
        self._methods_by_class: dict[str, list[tuple[str, MethodDef]]] = defaultdict(list)
        for source in files:
            self.put(source)

    # --- changes -------------------------------------------------------------------------

    def put(self, source: SourceFile) -> None:
        """Add or replace the parse result of one file (keyed by its path)."""
        key = source.path or ""
        if key in self._files:
            self.remove(key)
        self._files[key] = source
        for cls in source.classes:
            self._classes[cls.name].append((key, cls))
        for method in source.methods:
            self._implementors[method.selector].append((key, method))
            self._methods_by_class[method.class_name].append((key, method))
            for selector in set(method.sends) | set(method.symbols):
                self._senders[selector].append((key, method))

    def remove(self, path: str) -> None:
        source = self._files.pop(path, None)
        if source is None:
            return
        for cls in source.classes:
            _drop_path(self._classes, cls.name, path)
        for method in source.methods:
            _drop_path(self._implementors, method.selector, path)
            _drop_path(self._methods_by_class, method.class_name, path)
            for selector in set(method.sends) | set(method.symbols):
                _drop_path(self._senders, selector, path)

    # --- lookups -------------------------------------------------------------------------

    def file(self, path: str) -> SourceFile | None:
        return self._files.get(path)

    def paths(self) -> list[str]:
        return list(self._files)

    def files(self) -> Iterator[SourceFile]:
        return iter(self._files.values())

    def class_names(self) -> list[str]:
        return [name for name, defs in self._classes.items() if defs]

    def class_definitions(self, name: str) -> list[tuple[str, ClassDef]]:
        """(path, definition) pairs; a class may be defined once and extended elsewhere."""
        return list(self._classes.get(name, ()))

    def class_named(self, name: str) -> ClassDef | None:
        """The defining (non-extension) definition of a class, else any."""
        defs = self._classes.get(name, ())
        for _, cls in defs:
            if cls.kind != "extension":
                return cls
        return defs[0][1] if defs else None

    def superclass_chain(self, name: str) -> list[str]:
        """Superclasses of `name`, nearest first, as far as the project defines them."""
        chain: list[str] = []
        current = self.class_named(name)
        while current is not None and current.superclass and current.superclass not in chain:
            chain.append(current.superclass)
            if current.superclass == name:
                break
            current = self.class_named(current.superclass)
        return chain

    def subclasses(self, name: str) -> list[str]:
        return sorted(
            cls_name
            for cls_name in self.class_names()
            if (cls := self.class_named(cls_name)) is not None and cls.superclass == name
        )

    def methods_of(self, class_name: str, side: str | None = None) -> list[tuple[str, MethodDef]]:
        return [
            (path, m)
            for path, m in self._methods_by_class.get(class_name, ())
            if side is None or m.side == side
        ]

    def implementors(self, selector: str) -> list[tuple[str, MethodDef]]:
        return list(self._implementors.get(selector, ()))

    def senders(self, selector: str) -> list[tuple[str, MethodDef]]:
        return list(self._senders.get(selector, ()))

    def selectors(self) -> list[str]:
        return [s for s, impls in self._implementors.items() if impls]

    def send_count(self, selector: str) -> int:
        return len(self._senders.get(selector, ()))


def _drop_path(index: dict[str, list[tuple[str, object]]], key: str, path: str) -> None:
    entries = index.get(key)
    if entries is None:
        return
    entries[:] = [entry for entry in entries if entry[0] != path]
    if not entries:
        del index[key]
