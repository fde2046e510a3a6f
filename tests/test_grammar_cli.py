"""`smalltalk-lsp symbols PATH... [--json]`, run as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SAMPLE = Path(__file__).parent / "fixtures" / "sample"
RANGE_KEYS = {"start", "end"}


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server", "symbols", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _is_range(value: object) -> bool:
    return (
        isinstance(value, dict)
        and set(value) == RANGE_KEYS
        and all(set(value[k]) == {"line", "character"} for k in RANGE_KEYS)
    )


def test_json_lines_for_a_folder_and_a_file() -> None:
    done = _run(str(SAMPLE / "tonel"), str(SAMPLE / "gnu" / "StreamingRights.st"), "--json")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [Path(o["path"]).name for o in lines] == [
        "SRLicence.class.st",
        "SRRegionalStore.class.st",
        "SRRight.class.st",
        "SRStore.class.st",
        "SRTerritory.class.st",
        "String.extension.st",
        "TSRComparable.trait.st",
        "package.st",
        "SRStoreTest.class.st",
        "package.st",
        "StreamingRights.st",
    ]
    for obj in lines:
        assert obj["format"] in ("tonel", "bracket")
        for cls in obj["classes"]:
            assert {
                "name",
                "superclass",
                "kind",
                "category",
                "comment",
                "instance_variables",
                "class_variables",
            } <= set(cls)
        for method in obj["methods"]:
            assert {"class", "side", "selector", "category", "sends"} <= set(method)
            assert _is_range(method["range"]) and _is_range(method["selector_range"])
        for diag in obj["diagnostics"]:
            assert _is_range(diag["range"]) and isinstance(diag["message"], str)
    store = next(o for o in lines if o["path"].endswith("SRStore.class.st"))
    (cls,) = store["classes"]
    assert (cls["name"], cls["superclass"], cls["kind"], cls["category"]) == (
        "SRStore",
        "Object",
        "class",
        "StreamingRights-Core",
    )
    assert cls["instance_variables"] == ["name", "rights"] and cls["class_variables"] == [
        "Registry"
    ]
    named = store["methods"][0]
    assert (named["class"], named["side"], named["selector"], named["category"]) == (
        "SRStore",
        "class",
        "named:",
        "instance creation",
    )
    assert named["range"] == {
        "start": {"line": 19, "character": 0},
        "end": {"line": 26, "character": 1},
    }
    assert named["selector_range"]["start"] == {"line": 19, "character": 17}
    assert "at:put:" in named["sends"]
    gnu = lines[-1]
    assert gnu["format"] == "bracket" and len(gnu["methods"]) == 44


def test_filetree_method_files_are_one_object_each() -> None:
    done = _run(str(SAMPLE / "filetree"), "--json")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(lines) == 32 + 5  # method files + class/extension properties.json
    assert all(o["format"] == "filetree" for o in lines)
    methods = [o for o in lines if o["methods"]]
    assert len(methods) == 32 and all(len(o["methods"]) == 1 for o in methods)
    equals = next(o for o in methods if o["path"].endswith("^equals.st"))
    assert (equals["methods"][0]["class"], equals["methods"][0]["selector"]) == ("SRTerritory", "=")


def test_outline_and_errors() -> None:
    done = _run(str(SAMPLE / "bad" / "unterminated-string.st"))
    assert done.returncode == 0
    assert "class SRBadString < Object" in done.stdout
    assert "SRBadString >> good  [accessing]  line 8" in done.stdout
    assert "error 13:" in done.stdout
    missing = _run("no/such/place.st", "--json")
    assert missing.returncode == 2 and "no such file" in missing.stderr


def test_json_doits_carry_their_sends() -> None:
    done = _run(str(SAMPLE / "gnu" / "StreamingRights.st"), "--json")
    assert done.returncode == 0, done.stderr
    (obj,) = [json.loads(line) for line in done.stdout.splitlines()]
    (doit,) = obj["doits"]
    assert (doit["class"], doit["selector"]) == ("UndefinedObject", "DoIt")
    assert doit["sends"] == [
        "named:",
        "add:",
        "territories",
        "code:name:",
        "asSRTerritoryCode",
        "showCr:",
        "printString",
    ]
    assert _is_range(doit["range"]) and doit["range"]["start"]["line"] == 372
