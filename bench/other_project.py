"""Lay out another real project's Tonel files for the holes benchmark, from a manifest.

The holes figures must hold on projects we did not tune on, not only on ../shared/corpus. A
manifest (`bench/projects/NAME.tsv`: path, commit, sha256, chars) names the files, each at the
commit it was taken from, so anyone can rebuild the same workspace from a clone of the
project's public repository; nothing of the project is kept in this repository.

    git clone https://github.com/ObjectProfile/Roassal3 /tmp/Roassal3
    .venv/bin/python bench/other_project.py bench/projects/roassal3.tsv /tmp/Roassal3 \
        /tmp/other/roassal3
    .venv/bin/python bench/bench_holes.py --corpus /tmp/other/roassal3/src ...

Every file is checked against its sha256; a file that differs stops the run with its name.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import subprocess
import sys
from pathlib import Path

from pydantic import BaseModel


class ManifestRow(BaseModel):
    path: str  # inside the repository, e.g. src/Roassal3-Layouts/RSCell.class.st
    commit: str
    sha256: str
    chars: int


def read_manifest(path: Path) -> list[ManifestRow]:
    with path.open(encoding="utf-8", newline="") as f:
        return [ManifestRow.model_validate(row) for row in csv.DictReader(f, delimiter="\t")]


def file_at(clone: Path, row: ManifestRow) -> str:
    """The file's text at its commit (`git show commit:path`)."""
    out = subprocess.run(["git", "-C", str(clone), "show", f"{row.commit}:{row.path}"],
                         capture_output=True, check=False)
    if out.returncode != 0:
        why = out.stderr.decode(errors="replace").strip()
        raise SystemExit(f"{row.path} at {row.commit}: {why}")
    return out.stdout.decode("utf-8")


def lay_out(rows: list[ManifestRow], clone: Path, out: Path) -> int:
    for row in rows:
        text = file_at(clone, row)
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        if digest != row.sha256 or len(text) != row.chars:
            raise SystemExit(f"{row.path}: sha256 {digest}, {len(text)} characters; the manifest "
                             f"says {row.sha256}, {row.chars}")
        target = out / row.path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8", newline="")
    return len(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("manifest", type=Path)
    ap.add_argument("clone", type=Path, help="a git clone of the project's repository")
    ap.add_argument("out", type=Path, help="the workspace (the files go under it by their paths)")
    args = ap.parse_args(argv)
    count = lay_out(read_manifest(args.manifest), args.clone, args.out)
    print(f"{count} files under {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
