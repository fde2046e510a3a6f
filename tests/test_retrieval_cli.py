"""`smalltalk-lsp index PATH --json` as a user runs it: a real process, the real model."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

SAMPLE = Path(__file__).parent / "fixtures" / "sample" / "tonel"


def _index(root: Path) -> dict:
    result = subprocess.run(
        [sys.executable, "-m", "server", "index", str(root), "--json"],
        capture_output=True, text=True, timeout=300, check=True,
    )
    return json.loads(result.stdout)


def test_index_command_json_and_incremental_rerun(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    shutil.copytree(SAMPLE, root, ignore=shutil.ignore_patterns(".smalltalk-lsp"))
    first = _index(root)
    assert list(first) == ["files", "units", "embedded", "reused", "removed", "seconds"]
    assert (first["files"], first["units"], first["embedded"], first["reused"],
            first["removed"]) == (10, 51, 51, 0, 0)
    assert (root / ".smalltalk-lsp" / "index" / "manifest.json").is_file()

    (root / "StreamingRights-Core" / "String.extension.st").unlink()
    second = _index(root)
    assert (second["files"], second["units"], second["embedded"], second["reused"],
            second["removed"]) == (9, 50, 0, 50, 1)


def test_index_command_rejects_a_missing_folder(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "server", "index", str(tmp_path / "nope")],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert "is not a folder" in result.stderr
