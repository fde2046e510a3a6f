"""Holes for bench_holes.py: a fixed rule that cuts code out of real Tonel files, the workspace
with those holes applied, and the scores of a suggestion against what was cut out.

The rule (no hand-picking; change SALT and every hole changes):
- Files: every `*.st` under the corpus's `src/`, in sorted order, that is Tonel and parses
  without an error with bare tree-sitter-pharo (so "parses" can be judged on the file).
- Methods: Tonel method blocks, a header line `Foo >> pattern [` (or `Foo class >> ...`) at
  column 0 and the first line that is exactly `]` after it.
- At most one hole per file (so the workspace on disk can hold every hole at once and
  nothing the model should write is in the project it reads). A file's hash
  h = sha256(SALT + path) picks the kind to try first (h mod 3, then the next kinds in order
  if the file has no candidate of that kind), the candidate of that kind (h div 3 mod count)
  and, for the rest of a line, the cut point (h div 7 mod count).
- Kinds: "body", a whole method body of 1-6 non-blank lines cut out (the cursor on the empty
  line after the pattern, indented by one tab); "statement", one single-line statement of a
  body with 4 or more non-blank lines (the line left empty, cursor after its indentation);
  "line", the rest of a statement line after a space that follows a typed token (at least 3
  characters typed on the line, at least 4 left).
- Order: kinds taken round-robin, each kind's holes in hash order; `--holes N` takes the first
  N, so a smaller run is a prefix of a larger one.
- Rounds (`--rounds R`, for projects with few files): round r > 0 applies the same rule with
  the salt `SALT + " round r"` to the original files, in a workspace of its own, and drops a
  hole an earlier round already cut. Round 0 is the rule above, so one round is the default
  run and R rounds begin with it.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections import Counter
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

SALT = "smalltalk-lsp holes v1"
KINDS = ("body", "statement", "line")
_HEADER = re.compile(r"^[A-Za-z_][\w]*( class)? >> .*\[\s*$")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Pseudo-variables are not identifiers in CrossCodeEval's sense (they are keywords).
_KEYWORDS = frozenset({"self", "super", "nil", "true", "false", "thisContext"})


@dataclass(frozen=True)
class Hole:
    id: str
    path: str  # relative to the corpus's src/
    kind: str
    # The file with the hole cut out, and the cursor as line/character (0-based) and offset.
    text: str
    line: int
    character: int
    offset: int
    # What was cut out (the reference the suggestion is scored against).
    expected: str
    # The round whose salt cut it (each round has a workspace of its own).
    round: int = 0


@lru_cache(maxsize=1)
def _parser() -> Any:
    import tree_sitter
    import tree_sitter_pharo

    return tree_sitter.Parser(tree_sitter.Language(tree_sitter_pharo.language()))


def parses(text: str) -> bool:
    """The whole file parses with bare tree-sitter-pharo (no ERROR or MISSING node)."""
    return not _parser().parse(text.encode("utf-8")).root_node.has_error


def _salt(round_: int) -> str:
    return SALT if round_ == 0 else f"{SALT} round {round_}"


def _hash(path: str, round_: int = 0) -> int:
    return int(hashlib.sha256(f"{_salt(round_)}:{path}".encode()).hexdigest(), 16)


def _methods(lines: list[str]) -> list[tuple[int, int]]:
    """(header line, closing line) of each Tonel method."""
    found = []
    i = 0
    while i < len(lines):
        if _HEADER.match(lines[i]):
            for j in range(i + 1, len(lines)):
                if lines[j] == "]":
                    found.append((i, j))
                    i = j
                    break
                if _HEADER.match(lines[j]):
                    break
        i += 1
    return found


def _balanced(code: str) -> bool:
    """One line holding whole brackets, strings and comments."""
    if code.count("'") % 2 or code.count('"') % 2 or "$" in code:
        return False
    depth = 0
    for ch in code:
        depth += ch in "([{"
        depth -= ch in ")]}"
        if depth < 0:
            return False
    return depth == 0


def _statement_line(line: str) -> bool:
    code = line.strip()
    return (
        len(code) >= 8
        and not code.startswith(('"', "|", "<", "]", ")", ";"))
        and _balanced(code)
        and (code.endswith(".") or not code.endswith((";", "[", "(", ":")))
    )


def _cut_points(line: str) -> list[int]:
    indent = len(line) - len(line.lstrip("\t "))
    return [
        i for i in range(indent + 3, len(line) - 3)
        if line[i - 1] == " " and line[i] != " " and line[i - 2] != " "
    ]


def _candidates(lines: list[str], kind: str) -> list[tuple[int, int, int]]:
    """(first line, last line, cut column) of the code each candidate hole removes."""
    out = []
    for header, close in _methods(lines):
        body = list(range(header + 1, close))
        filled = [i for i in body if lines[i].strip()]
        if kind == "body" and 1 <= len(filled) <= 6:
            first, last = filled[0], filled[-1]
            indent = len(lines[first]) - len(lines[first].lstrip("\t "))
            if lines[first][:indent] == "\t":
                out.append((first, last, indent))
        elif kind == "statement" and len(filled) >= 4:
            out += [(i, i, len(lines[i]) - len(lines[i].lstrip("\t ")))
                    for i in filled[1:] if _statement_line(lines[i])]
        elif kind == "line":
            out += [(i, i, cut) for i in filled if _statement_line(lines[i])
                    for cut in _cut_points(lines[i])]
    return out


def _cut(lines: list[str], kind: str, first: int, last: int, column: int) -> tuple[str, str, int]:
    """The text with the hole, the expected text, and the cursor's line."""
    if kind == "line":
        expected = lines[first][column:]
        kept = lines[:first] + [lines[first][:column]] + lines[first + 1:]
    else:
        cut = [lines[first][column:], *lines[first + 1:last + 1]]
        expected = "\n".join(cut).rstrip()
        kept = lines[:first] + [lines[first][:column]] + lines[last + 1:]
    return "\n".join(kept), expected, first


def hole_of_file(path: str, text: str, round_: int = 0) -> Hole | None:
    if not re.search(r"^(Class|Trait|Extension)\s*\{", text, re.MULTILINE) or not parses(text):
        return None
    lines = text.split("\n")
    h = _hash(path, round_)
    for step in range(3):
        kind = KINDS[(h + step) % 3]
        candidates = _candidates(lines, kind)
        if not candidates:
            continue
        if kind == "line":
            first, last, column = candidates[(h // 7) % len(candidates)]
        else:
            first, last, column = candidates[(h // 3) % len(candidates)]
        holed, expected, line = _cut(lines, kind, first, last, column)
        offset = sum(len(x) + 1 for x in lines[:line]) + column
        suffix = f"@r{round_}" if round_ else ""
        return Hole(f"{kind}:{path}:{line + 1}{suffix}", path, kind, holed, line, column,
                    offset, expected, round_)
    return None


def select_holes(src: Path, rounds: int = 1) -> list[Hole]:
    """Every file's hole in each round, in the benchmark's order (see the module
    docstring)."""
    files = [(f.relative_to(src).as_posix(), f.read_text(encoding="utf-8"))
             for f in sorted(src.rglob("*.st"))]
    ordered: list[Hole] = []
    cut: set[tuple[str, int, int, str]] = set()
    for round_ in range(rounds):
        by_kind: dict[str, list[tuple[int, Hole]]] = {k: [] for k in KINDS}
        for rel, text in files:
            hole = hole_of_file(rel, text, round_)
            if hole is None or (place := (rel, hole.offset, hole.line, hole.expected)) in cut:
                continue
            cut.add(place)
            by_kind[hole.kind].append((_hash(rel, round_), hole))
        queues = [sorted(by_kind[k], key=lambda pair: pair[0]) for k in KINDS]
        while any(queues):
            for queue in queues:
                if queue:
                    ordered.append(queue.pop(0)[1])
    return ordered


def build_workspace(src: Path, holes: list[Hole], cache: Path) -> Path:
    """A copy of the corpus with every hole cut out (once; reused while the rule is the same)."""
    digest = hashlib.sha256(
        json.dumps([(h.id, h.expected) for h in holes]).encode()
    ).hexdigest()[:12]
    root = cache / f"holes-{digest}"
    if (root / ".holes-ready").exists():
        return root
    if root.exists():
        shutil.rmtree(root)
    shutil.copytree(src, root / "src")
    for hole in holes:
        (root / "src" / hole.path).write_text(hole.text, encoding="utf-8")
    (root / ".holes-ready").write_text(json.dumps([asdict(h) for h in holes][:0]))
    return root


# --- scores ----------------------------------------------------------------------------


def normalise(text: str) -> str:
    """Lines without their indentation, blank lines dropped: layout is not what is scored."""
    return "\n".join(line.strip() for line in text.strip().split("\n") if line.strip())


def levenshtein(a: str, b: str) -> int:
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def edit_similarity(suggestion: str, expected: str) -> float:
    a, b = normalise(suggestion), normalise(expected)
    if not a and not b:
        return 1.0
    return 1.0 - levenshtein(a, b) / max(len(a), len(b))


def identifiers(text: str) -> list[str]:
    """Identifiers in order, as CrossCodeEval extracts them (keywords left out); strings and
    comments are taken out first."""
    code = re.sub(r"'(?:[^']|'')*'?|\"[^\"]*\"?", " ", text)
    return [w for w in _IDENT.findall(code) if w not in _KEYWORDS]


def identifier_match(suggestion: str, expected: str) -> tuple[bool, float]:
    """CrossCodeEval's identifier exact match and F1."""
    got, want = identifiers(suggestion), identifiers(expected)
    if not want:
        return not got, 1.0 if not got else 0.0
    common = sum((Counter(got) & Counter(want)).values())
    if common == 0:
        return got == want, 0.0
    precision, recall = common / len(got), common / len(want)
    return got == want, 2 * precision * recall / (precision + recall)


def first_line(text: str) -> str:
    stripped = text.strip()
    return stripped.split("\n", 1)[0].strip() if stripped else ""


def score(hole: Hole, suggestion: str) -> dict[str, Any]:
    answered = bool(suggestion.strip())
    em, f1 = identifier_match(suggestion, hole.expected) if answered else (False, 0.0)
    filled = hole.text[: hole.offset] + suggestion + hole.text[hole.offset:]
    return {
        "answered": answered,
        "parses": answered and parses(filled),
        "first_line_exact": answered and first_line(suggestion) == first_line(hole.expected),
        "edit_similarity": edit_similarity(suggestion, hole.expected) if answered else 0.0,
        "identifier_em": em,
        "identifier_f1": f1,
    }
