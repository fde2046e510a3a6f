"""The project model: every parsed source file of a workspace, with lookups by class and selector.

Plain data and plain functions; the LSP layer keeps one of these current and features read it.
Replacing a file's parse result is the only way to change it, so lookups are rebuilt per file.

A file enters either parsed (`put`) or as a summary with a loader (`put_summary`): the summary
holds just the names the indexes need, and the file's `SourceFile` is loaded the first time a
lookup returns something from it. A warm start from the cache therefore reads summaries only
(validating 10,000 full parses would take seconds).

Thread safety: the workspace scan writes from a background thread while requests read on the
event loop (and model features read from worker threads), so every method holds one re-entrant
lock. Lookups return fresh lists, never views of the internal indexes.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

from smalltalk_grammar.model import ClassDef, MethodDef, SourceFile

log = logging.getLogger(__name__)

# What the indexes need of one file; plain lists and dicts (it is stored as JSON):
#   "c": [[name, kind, superclass or None], ...]   classes, in file order
#   "m": [[selector, class name, side, line, character, end line, end character], ...]
#        methods in file order, with their selector range
#   "s": {selector: [method index, ...]}           sends and literal symbols
#   "r": {Capitalised name: [method index, ...]}   class (and global) references
#   "v": {name: [method index, ...]}               variable references
#   "d": [[DoIt, UndefinedObject, side, ...], ...]  GNU `Eval [ ]` bodies, as "m" rows; only
#        when there are some; in "s", "r" and "v" they are numbered after the methods
#   "w": [line, ...]  (only when not empty)         lines with characters outside the BMP
Summary = dict[str, Any]
Loader = Callable[[], SourceFile | None]
# key -> path -> indices (into the file's classes or methods); a file's removal is one `del`.
_Index = dict[str, dict[str, list[int]]]


def summarize(source: SourceFile) -> Summary:
    senders: dict[str, list[int]] = {}
    refs: dict[str, list[int]] = {}
    variables: dict[str, list[int]] = {}
    for i, method in enumerate(numbered_methods(source)):
        for selector in dict.fromkeys([*method.sends, *method.symbols]):
            senders.setdefault(selector, []).append(i)
        for name in dict.fromkeys(method.class_references):
            refs.setdefault(name, []).append(i)
        for name in dict.fromkeys(method.variable_references):
            variables.setdefault(name, []).append(i)
    summary: Summary = {
        "c": [[c.name, c.kind, c.superclass] for c in source.classes],
        "m": [_method_row(m) for m in source.methods],
        "s": senders,
        "r": refs,
        "v": variables,
    }
    if source.doits:
        summary["d"] = [_method_row(m) for m in source.doits]
    if source.wide_lines:
        summary["w"] = list(source.wide_lines)
    return summary


def numbered_methods(source: SourceFile) -> list[MethodDef]:
    """The methods as the sender, reference and variable indexes number them: GNU `Eval [ ]`
    bodies send messages too, so they follow the methods (the summary's "d" rows)."""
    return [*source.methods, *source.doits] if source.doits else source.methods


def _method_row(m: MethodDef) -> list[Any]:
    start, end = m.selector_range.start, m.selector_range.end
    return [m.selector, m.class_name, m.side, start.line, start.character, end.line, end.character]


class MethodRef(NamedTuple):
    """A method known from the summaries: file, number in the file, class, side, and the
    range of its selector as (line, character, end line, end character)."""

    path: str
    number: int
    class_name: str
    side: str
    selector_range: tuple[int, int, int, int]


class _Entry:
    __slots__ = ("summary", "source", "loader")

    def __init__(self, summary: Summary, source: SourceFile | None, loader: Loader | None):
        self.summary = summary
        self.source = source
        self.loader = loader


class ProjectModel:
    def __init__(self, files: Iterable[SourceFile] = ()) -> None:
        self._lock = threading.RLock()
        self._files: dict[str, _Entry] = {}
        self._classes: _Index = defaultdict(dict)
        self._subclasses: _Index = defaultdict(dict)
        # class name -> path -> superclass, for defining (non-extension) definitions only.
        self._defining: dict[str, dict[str, str | None]] = defaultdict(dict)
        self._implementors: _Index = defaultdict(dict)
        self._senders: _Index = defaultdict(dict)
        self._methods_by_class: _Index = defaultdict(dict)
        self._class_refs: _Index = defaultdict(dict)
        self._variable_refs: _Index = defaultdict(dict)
        # Methods per selector sending it, and per name referring to it (kept as counts so
        # completion can rank thousands of names cheaply).
        # path -> lines holding characters outside the BMP (utf-16 columns differ there).
        self._wide: dict[str, frozenset[int]] = {}
        self._send_counts: dict[str, int] = defaultdict(int)
        self._ref_counts: dict[str, int] = defaultdict(int)
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
        self._put(source.path or "", summarize(source), source, None)

    def put_summary(self, path: str, summary: Summary, loader: Loader) -> None:
        """Add or replace a file known by its summary; `loader` gives its SourceFile when a
        lookup first needs it (and must agree with the summary)."""
        self._put(path, summary, None, loader)

    def put_many(self, sources: Iterable[SourceFile]) -> None:
        """Put several files under one lock acquisition (the scan adds files in batches)."""
        with self._lock:
            for source in sources:
                self.put(source)

    def put_summaries(self, items: Iterable[tuple[str, Summary, Loader]]) -> None:
        """`put_summary` for several files under one lock acquisition."""
        with self._lock:
            for path, summary, loader in items:
                self._put(path, summary, None, loader)

    def _put(self, key: str, summary: Summary, source: SourceFile | None, loader: Loader | None):
        with self._lock:
            before = (len(self._classes), len(self._implementors))
            removed: set[str] = set()
            if key in self._files:
                removed = self._remove_unlocked(key)
            self._files[key] = _Entry(summary, source, loader)
            if summary.get("w"):
                self._wide[key] = frozenset(summary["w"])
            added: set[str] = set()
            for i, (name, kind, superclass) in enumerate(summary["c"]):
                self._classes[name].setdefault(key, []).append(i)
                if kind != "extension":
                    self._defining[name][key] = superclass
                if superclass:
                    self._subclasses[superclass].setdefault(key, []).append(i)
                added.add(name)
            for i, (selector, class_name, *_rest) in enumerate(summary["m"]):
                self._implementors[selector].setdefault(key, []).append(i)
                self._methods_by_class[class_name].setdefault(key, []).append(i)
                added.add(selector)
            for index, part, counts in (
                (self._senders, summary["s"], self._send_counts),
                (self._class_refs, summary["r"], self._ref_counts),
                (self._variable_refs, summary["v"], self._ref_counts),
            ):
                for name, positions in part.items():
                    index[name][key] = positions
                    counts[name] += len(positions)
            self.generation += 1
            after = (len(self._classes), len(self._implementors))
            if before != after or not removed <= added:
                self.names_generation += 1

    def remove(self, path: str) -> None:
        with self._lock:
            if self._remove_unlocked(path):
                self.names_generation += 1
            self.generation += 1

    def _remove_unlocked(self, path: str) -> set[str]:
        """Drop a file; returns the class names and selectors that no file has any more."""
        entry = self._files.pop(path, None)
        if entry is None:
            return set()
        summary = entry.summary
        self._wide.pop(path, None)
        gone: set[str] = set()
        for name, _kind, superclass in summary["c"]:
            if _drop_path(self._classes, name, path):
                gone.add(name)
            defining = self._defining.get(name)
            if defining is not None:
                defining.pop(path, None)
                if not defining:
                    del self._defining[name]
            if superclass:
                _drop_path(self._subclasses, superclass, path)
        for selector, class_name, *_rest in summary["m"]:
            if _drop_path(self._implementors, selector, path):
                gone.add(selector)
            _drop_path(self._methods_by_class, class_name, path)
        for index, part, counts in (
            (self._senders, summary["s"], self._send_counts),
            (self._class_refs, summary["r"], self._ref_counts),
            (self._variable_refs, summary["v"], self._ref_counts),
        ):
            for name, positions in part.items():
                _drop_path(index, name, path)
                left = counts[name] - len(positions)
                if left > 0:
                    counts[name] = left
                else:
                    counts.pop(name, None)
        return gone

    # --- loading -------------------------------------------------------------------------

    def _source(self, path: str) -> SourceFile | None:
        """The file's SourceFile, loading it on first use (lock held by the caller)."""
        entry = self._files.get(path)
        if entry is None:
            return None
        if entry.source is None:
            loaded = entry.loader() if entry.loader is not None else None
            if loaded is None:
                log.warning("cannot load %s; dropped from the project model", path)
                self._remove_unlocked(path)
                self.generation += 1
                self.names_generation += 1
                return None
            if loaded.path != path:
                loaded = loaded.model_copy(update={"path": path})
            summary = summarize(loaded)
            if summary != entry.summary:
                # The file changed since its summary was written: index what was loaded.
                self._put(path, summary, loaded, None)
            else:
                entry.source = loaded
                entry.loader = None
        return self._files[path].source if path in self._files else None

    def _items(self, index: _Index, key: str, kind: str) -> list[tuple[str, Any]]:
        """(path, ClassDef or MethodDef) for the entries of `key` in `index`."""
        with self._lock:
            by_path = index.get(key)
            if not by_path:
                return []
            found: list[tuple[str, Any]] = []
            for path in list(by_path):
                source = self._source(path)
                # Loading may have re-indexed the file: read its positions afterwards.
                positions = index.get(key, {}).get(path, [])
                if source is None:
                    continue
                if kind == "c":
                    items: list[Any] = source.classes
                else:
                    items = numbered_methods(source)
                found.extend((path, items[i]) for i in positions if i < len(items))
            return found

    def is_loaded(self, path: str) -> bool:
        with self._lock:
            entry = self._files.get(path)
            return entry is not None and entry.source is not None

    # --- lookups -------------------------------------------------------------------------

    def file(self, path: str) -> SourceFile | None:
        with self._lock:
            return self._source(path)

    def wide_lines(self, path: str) -> frozenset[int]:
        """Lines of the file with characters outside the Basic Multilingual Plane."""
        return self._wide.get(path, frozenset())

    def has_wide_lines(self) -> bool:
        return bool(self._wide)

    def paths(self) -> list[str]:
        with self._lock:
            return list(self._files)

    def files(self) -> Iterator[SourceFile]:
        """Every file (each loaded on first use, one at a time)."""
        for path in self.paths():
            source = self.file(path)
            if source is not None:
                yield source

    def file_count(self) -> int:
        with self._lock:
            return len(self._files)

    def class_names(self) -> list[str]:
        with self._lock:
            return [name for name, defs in self._classes.items() if defs]

    def class_definitions(self, name: str) -> list[tuple[str, ClassDef]]:
        """(path, definition) pairs; a class may be defined once and extended elsewhere."""
        return self._items(self._classes, name, "c")

    def defining_definitions(self, name: str) -> list[tuple[str, ClassDef]]:
        """The definitions that define the class (not extensions), else its extensions; only
        their files are loaded."""
        with self._lock:
            paths = list(self._defining.get(name) or ())
            if not paths:
                return self.class_definitions(name)
            found: list[tuple[str, ClassDef]] = []
            for path in paths:
                source = self._source(path)
                if source is not None:
                    found += [(path, c) for c in source.classes if c.name == name]
            return [(p, c) for p, c in found if c.kind != "extension"] or found

    def class_named(self, name: str) -> ClassDef | None:
        """The defining (non-extension) definition of a class, else any."""
        with self._lock:
            paths = list(self._defining.get(name) or ())
            if not paths:
                paths = list(self._classes.get(name) or ())[:1]
            for path in paths:
                source = self._source(path)
                for cls in source.classes if source is not None else []:
                    if cls.name == name and (cls.kind != "extension" or len(paths) == 1):
                        return cls
            return None

    def superclass_of(self, name: str) -> str | None:
        """The superclass named by the class's defining definition (no file is loaded)."""
        with self._lock:
            defining = self._defining.get(name)
            return next(iter(defining.values())) if defining else None

    def superclass_chain(self, name: str) -> list[str]:
        """Superclasses of `name`, nearest first, as far as the project defines them."""
        chain: list[str] = []
        current = self.superclass_of(name)
        while current and current not in chain and current != name:
            chain.append(current)
            current = self.superclass_of(current)
        return chain

    def subclasses(self, name: str) -> list[str]:
        with self._lock:
            found: set[str] = set()
            for path, positions in (self._subclasses.get(name) or {}).items():
                classes = self._files[path].summary["c"]
                for i in positions:
                    sub = classes[i][0]
                    if self.superclass_of(sub) == name:
                        found.add(sub)
            return sorted(found)

    def methods_of(self, class_name: str, side: str | None = None) -> list[tuple[str, MethodDef]]:
        methods = self._items(self._methods_by_class, class_name, "m")
        return [(path, m) for path, m in methods if side is None or m.side == side]

    def selectors_of(self, class_name: str, side: str | None = None) -> list[str]:
        """Selectors a class defines (on one side), without loading its files."""
        with self._lock:
            found: list[str] = []
            for path, positions in (self._methods_by_class.get(class_name) or {}).items():
                methods = self._files[path].summary["m"]
                found.extend(methods[i][0] for i in positions if side in (None, methods[i][2]))
            return list(dict.fromkeys(found))

    def implementor_classes(self, selector: str, limit: int | None = None) -> list[str]:
        """Names of the classes implementing `selector` (either side), without loading files;
        at most `limit` of them."""
        with self._lock:
            found: list[str] = []
            for path, positions in (self._implementors.get(selector) or {}).items():
                methods = self._files[path].summary["m"]
                found.extend(methods[i][1] for i in positions)
                if limit is not None and len(found) > 4 * limit and len(set(found)) > limit:
                    break
            names = list(dict.fromkeys(found))
            return names if limit is None else names[:limit]

    def implementor_refs(self, selector: str) -> list[MethodRef]:
        """Where `selector` is implemented, without loading files; `method(ref)` loads one."""
        return self._refs(self._implementors, selector)

    def sender_refs(self, selector: str) -> list[MethodRef]:
        """`senders` without loading files."""
        return self._refs(self._senders, selector)

    def class_reference_refs(self, name: str) -> list[MethodRef]:
        """`class_references` without loading files."""
        return self._refs(self._class_refs, name)

    def variable_reference_refs(self, name: str) -> list[MethodRef]:
        """`variable_references` without loading files."""
        return self._refs(self._variable_refs, name)

    def _refs(self, index: _Index, key: str) -> list[MethodRef]:
        with self._lock:
            found: list[MethodRef] = []
            for path, positions in (index.get(key) or {}).items():
                summary = self._files[path].summary
                methods = summary["m"] + summary["d"] if "d" in summary else summary["m"]
                for i in positions:
                    m = methods[i]
                    found.append(MethodRef(path, i, m[1], m[2], (m[3], m[4], m[5], m[6])))
            return found

    def method(self, ref: MethodRef) -> MethodDef | None:
        """The method a ref points at (None if its file changed since)."""
        with self._lock:
            source = self._source(ref.path)
            methods = numbered_methods(source) if source is not None else []
            if ref.number >= len(methods):
                return None
            method = methods[ref.number]
            return (
                method if (method.class_name, method.side) == (ref.class_name, ref.side) else None
            )

    def implementors(self, selector: str) -> list[tuple[str, MethodDef]]:
        return self._items(self._implementors, selector, "m")

    def senders(self, selector: str) -> list[tuple[str, MethodDef]]:
        """Methods that send `selector` or mention it as a literal symbol (`#foo:`)."""
        return self._items(self._senders, selector, "m")

    def selectors(self) -> list[str]:
        with self._lock:
            return [s for s, impls in self._implementors.items() if impls]

    def implementor_count(self, selector: str) -> int:
        with self._lock:
            by_path = self._implementors.get(selector)
            return sum(len(v) for v in by_path.values()) if by_path else 0

    def send_count(self, selector: str) -> int:
        with self._lock:
            return self._send_counts.get(selector, 0)

    def send_counts(self, selectors: Iterable[str]) -> list[int]:
        """`send_count` of many selectors under one lock acquisition."""
        with self._lock:
            get = self._send_counts.get
            return [get(s, 0) for s in selectors]

    def class_references(self, name: str) -> list[tuple[str, MethodDef]]:
        """Methods that mention the capitalised identifier `name`."""
        return self._items(self._class_refs, name, "m")

    def variable_references(self, name: str) -> list[tuple[str, MethodDef]]:
        """Methods that use the (non-local) lower-case identifier `name`, in any class."""
        return self._items(self._variable_refs, name, "m")

    def usage_count(self, name: str) -> int:
        """How many methods mention `name` as a selector, a class or a variable."""
        with self._lock:
            return self._send_counts.get(name, 0) + self._ref_counts.get(name, 0)

    def usage_counts(self, names: Iterable[str]) -> list[int]:
        """`usage_count` of many names under one lock acquisition."""
        with self._lock:
            sends, refs = self._send_counts.get, self._ref_counts.get
            return [sends(n, 0) + refs(n, 0) for n in names]


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
