"""Training examples from a project's own methods: fill-in-the-middle and "implement this".

Every class is laid out as one Tonel document (class definition, then its methods), whatever
format the project is written in: a project kept in several formats then yields the same text
once (duplicates are dropped), and the text is what the server's prompt shows for Tonel files.

- fim: a span of a method body is cut out and is the target; the example keeps the cursor
  context the server's context stage builds for the class document with the cursor there
  (server.completion.context), and render() lays it out with serving's own build_prompt for the
  model's tokens (the repository layout for Qwen2.5-Coder): byte for byte what serving sends.
  Line spans end at the line end, as a single-line suggestion does; block spans run to the end
  of the method.
- implement: class context and the method's pattern and comment -> the method body and `]`.

Held-out examples come from whole classes (or whole packages, `split_by="package"`): a class
is never split across train and eval.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from server.class_render import render_class
from server.completion.context import ContextProvider, build_context
from server.completion.pipeline import CONTEXT_CHARS_PER_TOKEN, CompletionOptions
from server.completion.prompt import kept_prefix, prompt_parts
from server.completion.providers import ClassContextProvider
from server.completion.types import CompletionRequest, ContextSnippet, CursorContext
from server.project_model import ProjectModel
from server.retrieval.context import RetrievalContextProvider
from smalltalk_grammar import ClassDef, MethodDef, iter_project, parse, parse_file

log = logging.getLogger(__name__)

Kind = Literal["fim", "implement", "explain", "design"]
Split = Literal["train", "eval"]
Mode = Literal["line", "block"]

TRAIN_FILE = "train.jsonl"
EVAL_FILE = "eval.jsonl"
MANIFEST_FILE = "manifest.json"
DATASET_VERSION = 2

# Project context (the class's other selectors) in a FIM prompt: the server's budget.
SNIPPET_CHARS = CompletionOptions().context_chars
_COMMENT_AT_START = re.compile(r'\A\s*"(?:[^"]|"")*"')
_SYMBOL_SAFE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


class DatasetError(ValueError):
    """The project cannot give a dataset; the message says why."""


class DatasetConfig(BaseModel):
    # Share of classes held out for evaluation (at least one class each side when possible).
    eval_fraction: float = Field(default=0.25, gt=0.0, lt=1.0)
    seed: int = 0
    fim_per_method: int = Field(default=2, ge=0)
    # Prompt text before the cursor / after the span, in characters (the server's prompt
    # window is of this order); training cuts further to its max sequence length.
    context_chars: int = Field(default=1500, gt=0)
    suffix_chars: int = Field(default=400, ge=0)
    # Project context (other files' items) in a FIM prompt, in characters (serving's
    # completion context budget by default).
    snippet_chars: int = Field(default=SNIPPET_CHARS, ge=0)
    # Hold out whole classes, or whole packages (the Tonel or FileTree package folder): the
    # packages ordered by the sha256 of their name, the first round(n * eval_fraction) of
    # them (at least one, never all; independent of the seed).
    split_by: Literal["class", "package"] = "class"
    # Project context in FIM prompts: "class" (the class's definition and other selectors:
    # what serving sends with retrieval off) or "project" (serving's retrieval provider over
    # the whole project, without an index: the class, sibling methods, implementors of the
    # selectors sent near the cursor, other files' items in the repository layout).
    context: Literal["class", "project"] = "class"


class PromptContext(BaseModel):
    """What serving's prompt stage reads of a cursor context (server.completion.types
    CursorContext), so that render() builds the prompt with serving's own build_prompt."""

    path: str
    source_format: str
    mode: Mode
    line_prefix: str
    prefix: str
    suffix: str
    # (text, origin, path, code) of each context snippet, in provider order.
    snippets: list[tuple[str, str, str | None, str]] = Field(default_factory=list)

    @classmethod
    def of(cls, ctx: CursorContext) -> PromptContext:
        return cls(
            path=ctx.request.path or "", source_format=ctx.source_format, mode=ctx.mode,
            line_prefix=ctx.line_prefix, prefix=ctx.prefix, suffix=ctx.suffix,
            snippets=[(s.text, s.origin, s.path, s.code) for s in ctx.snippets],
        )

    def cursor_context(self) -> CursorContext:
        request = CompletionRequest(f"file:///{self.path}", self.prefix + self.suffix,
                                    len(self.prefix), self.path, self.source_format)
        return CursorContext(
            request=request, mode=self.mode, line_prefix=self.line_prefix, line_suffix="",
            prefix=self.prefix, suffix=self.suffix, source_format=self.source_format,
            snippets=tuple(ContextSnippet(t, o, p, c) for t, o, p, c in self.snippets),
        )


class Example(BaseModel):
    id: str
    kind: Kind
    split: Split
    class_name: str
    # "SRStore>>addRight:" or "SRStore class>>named:".
    method: str
    mode: Mode = "block"
    prefix: str
    suffix: str = ""
    # The target: what the model should write.
    middle: str
    # The method as a bare source (pattern and body) before and after the target, so that
    # eval can check a completion parses in place.
    method_before: str = ""
    method_after: str = ""
    # For implement examples: the class definition and the whole method in Tonel, which the
    # teach stage shows the reasoning model.
    header: str = ""
    source: str = ""
    # FIM examples: the cursor context serving's prompt stage lays out (render()).
    context: PromptContext | None = None
    # FIM examples: serving's project context budget when the dataset was built.
    snippet_chars: int = SNIPPET_CHARS


class SourceHash(BaseModel):
    path: str
    sha256: str


class DatasetManifest(BaseModel):
    version: int = DATASET_VERSION
    project: str
    config: DatasetConfig
    counts: dict[str, dict[str, int]]
    classes: dict[str, list[str]]
    # With split_by="package": the packages of each side.
    packages: dict[str, list[str]] = Field(default_factory=dict)
    methods: dict[str, int]
    duplicates_dropped: int
    sources: list[SourceHash]
    files: dict[str, str]


@dataclass
class _Method:
    method: MethodDef
    key: str
    head: str  # `{ #category : x }\nFoo >> `
    pattern: str
    body: str  # everything after the pattern line's text, starting with a newline (or empty)


@dataclass
class _Class:
    name: str
    definition: ClassDef | None = None
    # The package folder (Tonel, FileTree) or file's folder the class was read from.
    package: str = ""
    project: str = "project"
    methods: list[_Method] = field(default_factory=list)


@dataclass
class Dataset:
    train: list[Example]
    eval: list[Example]
    manifest: DatasetManifest


# --- reading the project ---------------------------------------------------------------------


def _project_files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise DatasetError(f"{root}: no such file or directory")
    return sorted(iter_project(root))


def method_key(method: MethodDef) -> str:
    side = " class" if method.side == "class" else ""
    return f"{method.class_name}{side}>>{method.selector}"


def _split_pattern(source: str) -> tuple[str, str]:
    newline = source.find("\n")
    if newline < 0:
        return source.rstrip(), ""
    return source[:newline].rstrip(), source[newline:].rstrip()


def _category_literal(category: str | None) -> str:
    category = category or "as yet unclassified"
    if _SYMBOL_SAFE.match(category):
        return f"#{category}"
    return "'" + category.replace("'", "''") + "'"


def collect_classes(root: Path) -> tuple[list[_Class], list[SourceHash], int]:
    """Classes and their methods, deduplicated by class and selector (first file wins); the
    hashes of the files that held any, and how many files were read."""
    classes: dict[str, _Class] = {}
    n_files = 0
    seen: set[str] = set()
    hashes: list[SourceHash] = []
    base = root if root.is_dir() else root.parent
    project = base.resolve().name or "project"
    for path in _project_files(root):
        try:
            data = path.read_bytes()
        except OSError as err:
            log.warning("skipping %s: %s", path, err)
            continue
        n_files += 1
        parsed = parse_file(path)
        if not parsed.classes and not parsed.methods:
            continue
        hashes.append(
            SourceHash(path=path.relative_to(base).as_posix(), sha256=_sha256(data))
        )
        package = package_of(path)
        for definition in parsed.classes:
            entry = classes.setdefault(definition.name,
                                       _Class(definition.name, package=package, project=project))
            if entry.definition is None:
                entry.definition = definition
        for method in parsed.methods:
            key = method_key(method)
            if not method.class_name or key in seen or not method.source.strip():
                continue
            seen.add(key)
            pattern, body = _split_pattern(method.source)
            side = " class" if method.side == "class" else ""
            head = (
                f"{{ #category : {_category_literal(method.category)} }}\n"
                f"{method.class_name}{side} >> "
            )
            entry = classes.setdefault(
                method.class_name, _Class(method.class_name, package=package, project=project)
            )
            entry.methods.append(_Method(method, key, head, pattern, body))
    return [c for c in classes.values() if c.methods], hashes, n_files


def package_of(path: Path) -> str:
    """The package a source file belongs to: the FileTree `X.package` folder above it, else
    the folder it is in (a Tonel package folder)."""
    for parent in path.parents:
        if parent.name.endswith(".package"):
            return parent.name[: -len(".package")]
    return path.parent.name or "project"


def class_header(entry: _Class) -> str:
    """The class definition in Tonel, with its comment."""
    if entry.definition is None:
        return f"Extension {{ #name : #{entry.name} }}"
    return render_class(entry.definition, "tonel")


def render_method(m: _Method) -> str:
    return f"{m.head}{m.pattern} [{m.body}\n]"


# --- examples --------------------------------------------------------------------------------


@dataclass
class _Doc:
    """One class laid out as Tonel text, with where each method's body starts."""

    entry: _Class
    header: str
    text: str
    # Per method: offset of the body (just after `pattern [`) and of the closing `\n]`.
    bodies: list[tuple[int, int]]
    starts: list[int]
    # The document as the server sees an open file: its path and the project model the
    # completion context provider reads (the class's other selectors).
    path: str = ""
    project: ProjectModel | None = None
    # Serving's retrieval provider over the whole project (DatasetConfig.context "project").
    project_provider: RetrievalContextProvider | None = None

    def provider(self) -> ContextProvider:
        if self.project_provider is not None:
            return self.project_provider
        if self.project is None:
            self.project = ProjectModel([parse(self.text, self.path)])
        return ClassContextProvider(lambda: self.project)


def project_provider(docs: Iterable[_Doc], snippet_chars: int) -> RetrievalContextProvider:
    """Serving's retrieval context provider over the project the documents make, with no
    index (no similarity ranking: a training run embeds nothing) and the token budget that
    `snippet_chars` caps, as serving derives one from the other."""
    project = ProjectModel([parse(doc.text, doc.path) for doc in docs])
    budget = max(1, snippet_chars // CONTEXT_CHARS_PER_TOKEN)
    return RetrievalContextProvider(lambda: project, lambda: None, lambda: budget)


def _document(entry: _Class) -> _Doc:
    header = class_header(entry)
    text = header
    bodies: list[tuple[int, int]] = []
    starts: list[int] = []
    for m in entry.methods:
        text += "\n\n"
        starts.append(len(text))
        body_start = len(text) + len(m.head) + len(m.pattern) + 2
        text += render_method(m)
        bodies.append((body_start, body_start + len(m.body)))
    # Named as the Tonel file of a project would be (`project/Package/Class.class.st`): the
    # repository layout labels the file and the project from its path.
    path = f"{entry.project}/{entry.package}/{entry.name}.class.st"
    return _Doc(entry, header, text + "\n", bodies, starts, path=path)


def _before(doc: _Doc, offset: int, budget: int) -> str:
    """The document before `offset` within `budget` characters: the class header is kept,
    and the text between starts at a method boundary."""
    if offset <= budget:
        return doc.text[:offset]
    room = budget - len(doc.header) - 2
    for start in doc.starts:
        if start >= offset - room and start < offset:
            return doc.header + "\n\n" + doc.text[start:offset]
    # One long method: keep its tail from a line start.
    tail = doc.text[max(offset - room, 0) : offset]
    newline = tail.find("\n")
    return doc.header + "\n\n" + (tail[newline + 1 :] if newline >= 0 else tail)


def _after(doc: _Doc, offset: int, budget: int) -> str:
    text = doc.text[offset : offset + budget]
    if offset + budget < len(doc.text) and "\n" in text:
        text = text[: text.rindex("\n") + 1]
    return text


def _cut_points(line: str) -> list[int]:
    """Offsets in a line where a suggestion may start: after the indentation, and at each
    space after it, leaving at least two characters to predict. The space goes to the target:
    the prompt then ends with a whole word, as its tokens do when it is tokenized alone (a
    prompt ending in a lone space token is text the model almost never saw, and its loss
    swamps the rest)."""
    indent = len(line) - len(line.lstrip())
    points = [indent] + [i for i, ch in enumerate(line) if ch == " " and i > indent]
    return [p for p in points if len(line[p:].strip()) >= 2]


def _example_id(kind: str, prefix: str, suffix: str, middle: str) -> str:
    digest = hashlib.sha1(f"{kind}\0{prefix}\0{suffix}\0{middle}".encode()).hexdigest()
    return digest[:16]


def _fim_examples(doc: _Doc, index: int, split: Split, config: DatasetConfig) -> list[Example]:
    m = doc.entry.methods[index]
    body_start, body_end = doc.bodies[index]
    lines: list[tuple[int, str]] = []  # (offset in body, line text) of code lines
    offset = 0
    for line in m.body.split("\n"):
        stripped = line.strip()
        if stripped and not _COMMENT_AT_START.fullmatch(stripped):
            lines.append((offset, line))
        offset += len(line) + 1
    if not lines:
        return []
    found: list[Example] = []
    rng = random.Random(f"{config.seed}:{m.key}")
    for i in range(config.fim_per_method):
        line_offset, line = lines[rng.randrange(len(lines))]
        if i % 2 == 0:
            points = _cut_points(line)
            if not points:
                continue
            cut = line_offset + points[rng.randrange(len(points))]
            end = line_offset + len(line)
            mode: Mode = "line"
        else:
            cut = line_offset + len(line) - len(line.lstrip())
            end = len(m.body)
            mode = "block"
        found.append(fim_example(doc, index, cut, end, mode, split, config))
    return found


def fim_example(doc: _Doc, index: int, cut: int, end: int, mode: Mode, split: Split,
                config: DatasetConfig) -> Example:
    """The example of method `index` with its body's `cut:end` as the target. Its prompt is
    the one serving builds for the class document with that span not yet written and the
    cursor at `cut` (server.completion: the same context stage, provider and prompt parts);
    whitespace the prompt leaves off before the cursor starts the target instead."""
    m = doc.entry.methods[index]
    body_start, _ = doc.bodies[index]
    cursor = body_start + cut
    text = doc.text[:cursor] + doc.text[body_start + end:]
    request = CompletionRequest(f"file:///{doc.path}", text, cursor, doc.path, "tonel")
    ctx = build_context(request, [doc.provider()], config.context_chars, config.suffix_chars)
    # prefix/suffix: the plain FIM layout's parts (the teach stage reads them); the prompt
    # itself is laid out from `context` by render() for the model's own tokens.
    prefix, suffix = prompt_parts(ctx, config.snippet_chars, fim=True)
    typed = ctx.prefix[len(kept_prefix(ctx, fim=True)):]
    before = m.pattern + m.body[:cut]
    middle = typed + m.body[cut:end]
    return Example(
        id=_example_id("fim", prefix, suffix, middle),
        kind="fim",
        split=split,
        class_name=doc.entry.name,
        method=m.key,
        mode=mode,
        prefix=prefix,
        suffix=suffix,
        middle=middle,
        method_before=before[: len(before) - len(typed)],
        method_after=m.body[end:],
        context=PromptContext.of(ctx),
        snippet_chars=config.snippet_chars,
    )


def _implement_example(doc: _Doc, index: int, split: Split, config: DatasetConfig) -> Example:
    m = doc.entry.methods[index]
    body_start, _ = doc.bodies[index]
    comment = _COMMENT_AT_START.match(m.body)
    given = comment.end() if comment else 0
    prefix = _before(doc, body_start + given, config.context_chars)
    middle = m.body[given:] + "\n]"
    return Example(
        id=_example_id("implement", prefix, "", middle),
        kind="implement",
        split=split,
        class_name=doc.entry.name,
        method=m.key,
        mode="block",
        prefix=prefix,
        middle=middle,
        method_before=m.pattern + m.body[:given],
        header=doc.header,
        source=render_method(m),
    )


def held_out_packages(packages: Iterable[str], eval_fraction: float) -> set[str]:
    """The fixed package rule: ordered by the sha256 of the name, the first share held out."""
    ordered = sorted(set(packages), key=lambda n: hashlib.sha256(n.encode()).hexdigest())
    if len(ordered) < 2:
        return set()
    n_eval = min(max(1, round(len(ordered) * eval_fraction)), len(ordered) - 1)
    return set(ordered[:n_eval])


def split_classes(names: Iterable[str], config: DatasetConfig) -> tuple[list[str], list[str]]:
    """Held-out classes chosen by a seeded hash of their names: stable when classes are added."""
    ordered = sorted(
        set(names), key=lambda n: hashlib.sha1(f"{config.seed}:{n}".encode()).hexdigest()
    )
    if len(ordered) < 2:
        return sorted(ordered), []
    n_eval = min(max(1, round(len(ordered) * config.eval_fraction)), len(ordered) - 1)
    return sorted(ordered[n_eval:]), sorted(ordered[:n_eval])


def build_dataset(root: Path, config: DatasetConfig | None = None) -> Dataset:
    config = config or DatasetConfig()
    root = Path(root)
    classes, hashes, n_files = collect_classes(root)
    if not classes:
        raise DatasetError(
            f"{root}: no Smalltalk methods found in {n_files} source file(s); a dataset "
            "needs at least one method"
        )
    if config.split_by == "package":
        packages = held_out_packages((c.package for c in classes), config.eval_fraction)
        eval_names = sorted(c.name for c in classes if c.package in packages)
        train_names = sorted(c.name for c in classes if c.name not in set(eval_names))
    else:
        train_names, eval_names = split_classes((c.name for c in classes), config)
    held_out = set(eval_names)
    examples: dict[Split, list[Example]] = {"train": [], "eval": []}
    seen: set[str] = set()
    dropped = 0
    method_counts = {"train": 0, "eval": 0}
    docs = [_document(entry) for entry in sorted(classes, key=lambda c: c.name)]
    if config.context == "project":
        shared = project_provider(docs, config.snippet_chars)
        for doc in docs:
            doc.project_provider = shared
    for doc in docs:
        entry = doc.entry
        split: Split = "eval" if entry.name in held_out else "train"
        method_counts[split] += len(entry.methods)
        for index in range(len(entry.methods)):
            found = [_implement_example(doc, index, split, config)]
            found += _fim_examples(doc, index, split, config)
            for example in found:
                if example.id in seen:
                    dropped += 1
                    continue
                seen.add(example.id)
                examples[split].append(example)
    manifest = DatasetManifest(
        project=str(root.resolve()),
        config=config,
        counts={split: count_kinds(found) for split, found in examples.items()},
        classes={"train": train_names, "eval": eval_names},
        packages=_packages(classes, held_out) if config.split_by == "package" else {},
        methods=method_counts,
        duplicates_dropped=dropped,
        sources=hashes,
        files={},
    )
    return Dataset(examples["train"], examples["eval"], manifest)


def _packages(classes: list[_Class], held_out: set[str]) -> dict[str, list[str]]:
    return {split: sorted({c.package for c in classes if (c.name in held_out) == (split == "eval")})
            for split in ("train", "eval")}


def count_kinds(examples: Iterable[Example]) -> dict[str, int]:
    counts: dict[str, int] = {"total": 0}
    for example in examples:
        counts[example.kind] = counts.get(example.kind, 0) + 1
        counts["total"] += 1
    return counts


# --- files -----------------------------------------------------------------------------------


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def atomic_write(path: Path, data: bytes) -> None:
    """Write via a temporary file and rename, so a failed write leaves the old file intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def jsonl_bytes(examples: Iterable[BaseModel]) -> bytes:
    return "".join(e.model_dump_json() + "\n" for e in examples).encode("utf-8")


def write_dataset(dataset: Dataset, out: Path) -> DatasetManifest:
    out = Path(out)
    files = {TRAIN_FILE: jsonl_bytes(dataset.train), EVAL_FILE: jsonl_bytes(dataset.eval)}
    for name, data in files.items():
        atomic_write(out / name, data)
    dataset.manifest.files = {name: _sha256(data) for name, data in files.items()}
    atomic_write(out / MANIFEST_FILE, dataset.manifest.model_dump_json(indent=2).encode("utf-8"))
    return dataset.manifest


def read_examples(path: Path) -> list[Example]:
    """Examples of a JSONL file; a truncated last line (a killed writer) is ignored."""
    found: list[Example] = []
    lines = Path(path).read_text(encoding="utf-8").split("\n")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            found.append(Example.model_validate_json(line))
        except ValueError as err:
            if number >= len(lines) - 1:
                log.warning("%s: ignoring a truncated last line", path)
                break
            raise DatasetError(f"{path}:{number}: not a training example: {err}") from err
    return found


def read_manifest(folder: Path) -> DatasetManifest:
    path = Path(folder) / MANIFEST_FILE
    try:
        return DatasetManifest.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError as err:
        raise DatasetError(f"{folder}: no dataset here (missing {MANIFEST_FILE})") from err
    except ValueError as err:
        raise DatasetError(f"{path}: not a dataset manifest: {err}") from err


def load_split(folder: Path, split: Split) -> list[Example]:
    read_manifest(folder)
    return read_examples(Path(folder) / (TRAIN_FILE if split == "train" else EVAL_FILE))
