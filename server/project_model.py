"""The project model: every parsed source file of a workspace, with lookups by class and selector.

Plain data and plain functions; the LSP layer keeps one of these current and features read it.
Replacing a file's parse result is the only way to change it, so lookups are rebuilt per file.

Thread safety: the workspace scan writes from a background thread while requests read on the
event loop (and model features read from worker threads), so every method holds one re-entrant
lock. Lookups return fresh lists, never views of the internal indexes.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterable, Iterator

from smalltalk_grammar.model import ClassDef, MethodDef, SourceFile

# key -> path -> entries of that file; removing a file is one `del` per key it touched.
_Index = dict[str, dict[str, list]]


class ProjectModel:
    def __init__(self, files: Iterable[SourceFile] = ()) -> None:
        self._lock = threading.RLock()
        self._files: dict[str, SourceFile] = {}
        self._classes: _Index = defaultdict(dict)
        self._implementors: _Index = defaultdict(dict)
        self._senders: _Index = defaultdict(dict)
        self._methods_by_class: _Index = defaultdict(dict)
        self._class_refs: _Index = defaultdict(dict)
        self._variable_refs: _Index = defaultdict(dict)
        # Bumped on every change, so readers can cache what they derive from the model.
        self.generation = 0
        # Bumped only when the set of class names or selectors changes (completion caches
        # sorted name lists on it; re-putting an edited file usually keeps the same names).
        self.names_generation = 0
        for source in files:
            self.put(source)

    # --- changes -------------------------------------------------------------------------

    def put(self, source: SourceFile) -> None:
        """Add or replace the parse result of one file (keyed by its path)."""
        key = source.path or ""
        with self._lock:
            before = (len(self._classes), len(self._implementors))
            removed_names: set[str] = set()
            if key in self._files:
                removed_names = self._remove_unlocked(key)
            self._files[key] = source
            for cls in source.classes:
                self._classes[cls.name].setdefault(key, []).append(cls)
            for method in source.methods:
                self._implementors[method.selector].setdefault(key, []).append(method)
                self._methods_by_class[method.class_name].setdefault(key, []).append(method)
                for selector in set(method.sends) | set(method.symbols):
                    self._senders[selector].setdefault(key, []).append(method)
                for name in set(method.class_references):
                    self._class_refs[name].setdefault(key, []).append(method)
                for name in set(method.variable_references):
                    self._variable_refs[name].setdefault(key, []).append(method)
            self.generation += 1
            added = {c.name for c in source.classes} | {m.selector for m in source.methods}
            after = (len(self._classes), len(self._implementors))
            if before != after or not removed_names <= added:
                self.names_generation += 1

    def put_many(self, sources: Iterable[SourceFile]) -> None:
        """Put several files under one lock acquisition (the scan adds files in batches)."""
        with self._lock:
            for source in sources:
                self.put(source)

    def remove(self, path: str) -> None:
        with self._lock:
            if self._remove_unlocked(path):
                self.names_generation += 1
            self.generation += 1

    def _remove_unlocked(self, path: str) -> set[str]:
        """Drop a file; returns the class names and selectors that no file has any more."""
        source = self._files.pop(path, None)
        if source is None:
            return set()
        gone: set[str] = set()
        for cls in source.classes:
            if _drop_path(self._classes, cls.name, path):
                gone.add(cls.name)
        for method in source.methods:
            if _drop_path(self._implementors, method.selector, path):
                gone.add(method.selector)
            _drop_path(self._methods_by_class, method.class_name, path)
            for selector in set(method.sends) | set(method.symbols):
                _drop_path(self._senders, selector, path)
            for name in set(method.class_references):
                _drop_path(self._class_refs, name, path)
            for name in set(method.variable_references):
                _drop_path(self._variable_refs, name, path)
        return gone

    # --- lookups -------------------------------------------------------------------------

    def file(self, path: str) -> SourceFile | None:
        with self._lock:
            return self._files.get(path)

    def paths(self) -> list[str]:
        with self._lock:
            return list(self._files)

    def files(self) -> Iterator[SourceFile]:
        with self._lock:
            return iter(list(self._files.values()))

    def file_count(self) -> int:
        with self._lock:
            return len(self._files)

    def class_names(self) -> list[str]:
        with self._lock:
            return [name for name, defs in self._classes.items() if defs]

    def class_definitions(self, name: str) -> list[tuple[str, ClassDef]]:
        """(path, definition) pairs; a class may be defined once and extended elsewhere."""
        with self._lock:
            return _entries(self._classes, name)

    def class_named(self, name: str) -> ClassDef | None:
        """The defining (non-extension) definition of a class, else any."""
        with self._lock:
            defs = _entries(self._classes, name)
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
        with self._lock:
            methods = _entries(self._methods_by_class, class_name)
        return [(path, m) for path, m in methods if side is None or m.side == side]

    def implementors(self, selector: str) -> list[tuple[str, MethodDef]]:
        with self._lock:
            return _entries(self._implementors, selector)

    def senders(self, selector: str) -> list[tuple[str, MethodDef]]:
        """Methods that send `selector` or mention it as a literal symbol (`#foo:`)."""
        with self._lock:
            return _entries(self._senders, selector)

    def selectors(self) -> list[str]:
        with self._lock:
            return [s for s, impls in self._implementors.items() if impls]

    def send_count(self, selector: str) -> int:
        with self._lock:
            by_path = self._senders.get(selector)
            return sum(len(v) for v in by_path.values()) if by_path else 0

    def class_references(self, name: str) -> list[tuple[str, MethodDef]]:
        """Methods that mention the capitalised identifier `name`."""
        with self._lock:
            return _entries(self._class_refs, name)

    def variable_references(self, name: str) -> list[tuple[str, MethodDef]]:
        """Methods that use the (non-local) lower-case identifier `name`, in any class."""
        with self._lock:
            return _entries(self._variable_refs, name)

    def usage_count(self, name: str) -> int:
        """How many methods mention `name` as a selector, a class or a variable."""
        with self._lock:
            total = 0
            for index in (self._senders, self._class_refs, self._variable_refs):
                by_path = index.get(name)
                if by_path:
                    total += sum(len(v) for v in by_path.values())
            return total


def _entries(index: _Index, key: str) -> list:
    by_path = index.get(key)
    if not by_path:
        return []
    return [(path, item) for path, items in by_path.items() for item in items]


def _drop_path(index: _Index, key: str, path: str) -> bool:
    """Drop a file's entries under `key`; True if no entries are left for the key."""
    by_path = index.get(key)
    if by_path is None:
        return False
    by_path.pop(path, None)
    if not by_path:
        del index[key]
        return True
    return False
