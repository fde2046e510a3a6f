"""bench/other_project.py: another project's files laid out from a manifest of commits and
hashes, from a real git clone; a file that differs from its hash stops with its name."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from other_project import main, read_manifest  # noqa: E402

SAMPLE = ROOT / "tests" / "fixtures" / "sample" / "tonel"


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True, env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
                                          "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
                                          "PATH": "/usr/bin:/bin"}).stdout.strip()


def _repo_with_two_commits(repo: Path) -> tuple[list[str], str]:
    """A repository whose first commit has two sample files and whose second changes one."""
    files = sorted(p for p in SAMPLE.rglob("*.class.st"))[:2]
    _git(repo.parent, "init", "-q", repo.name)
    rels = []
    for f in files:
        rel = f"src/{f.relative_to(SAMPLE).as_posix()}"
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(f.read_text(encoding="utf-8"), encoding="utf-8", newline="")
        rels.append(rel)
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "first")
    first = _git(repo, "rev-parse", "HEAD")
    (repo / rels[0]).write_text("changed later\n", encoding="utf-8")
    _git(repo, "commit", "-q", "-am", "second")
    return rels, first


def _manifest(path: Path, repo: Path, rels: list[str], commit: str) -> None:
    lines = ["path\tcommit\tsha256\tchars"]
    for rel in rels:
        text = _git(repo, "show", f"{commit}:{rel}") + "\n"
        lines.append(f"{rel}\t{commit}\t{hashlib.sha256(text.encode()).hexdigest()}\t{len(text)}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_files_come_out_as_they_were_at_their_commit(tmp_path: Path) -> None:
    repo = tmp_path / "project"
    rels, first = _repo_with_two_commits(repo)
    manifest = tmp_path / "m.tsv"
    _manifest(manifest, repo, rels, first)
    out = tmp_path / "ws"
    assert main([str(manifest), str(repo), str(out)]) == 0
    for rel in rels:
        original = SAMPLE / rel.removeprefix("src/")
        assert (out / rel).read_text(encoding="utf-8") == original.read_text(encoding="utf-8")
    assert [r.path for r in read_manifest(manifest)] == rels


def test_a_file_that_differs_from_its_hash_stops_the_run_with_its_name(tmp_path: Path) -> None:
    repo = tmp_path / "project"
    rels, first = _repo_with_two_commits(repo)
    manifest = tmp_path / "m.tsv"
    _manifest(manifest, repo, rels, first)
    head = _git(repo, "rev-parse", "HEAD")
    manifest.write_text(manifest.read_text(encoding="utf-8").replace(first, head, 2),
                        encoding="utf-8")
    with pytest.raises(SystemExit, match=rels[0]):
        main([str(manifest), str(repo), str(tmp_path / "ws")])
