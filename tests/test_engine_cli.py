"""`smalltalk-lsp complete` and `smalltalk-lsp doctor` as a user runs them."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

SAMPLE = Path(__file__).parent / "fixtures" / "sample" / "tonel"


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
    )


def test_doctor_names_the_default_models_with_fim_and_chat_template(tmp_path):
    result = cli("doctor", "--root", str(tmp_path), "--json")
    assert result.returncode == 0, result.stderr
    coder, reasoner = json.loads(result.stdout)["models"]
    assert coder["configured"] == "qwen2.5-coder-0.5b" and coder["architecture"] == "qwen2"
    assert coder["fim"] is True and coder["file_mib"] == 468.6
    assert coder["fim_tokens"] == {
        "pre": "<|fim_prefix|>", "mid": "<|fim_middle|>", "suf": "<|fim_suffix|>"
    }
    assert reasoner["configured"] == "qwen2.5-coder-1.5b" and reasoner["chat_template"] is True
    assert reasoner["ok"] and reasoner["shares_weights_with"] is None
    assert coder["path"].endswith("smalltalk-lsp/models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf")


def test_doctor_counts_shared_weights_once(tmp_path):
    (tmp_path / "smalltalk-lsp.toml").write_text(
        '[models]\ncode_generation = "qwen2.5-coder-0.5b"\nreasoning = "qwen2.5-coder-0.5b"\n'
    )
    result = cli("doctor", "--root", str(tmp_path), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["models"][1]["shares_weights_with"] == "coder"
    weights = [r["weights_bytes"] for r in report["memory"]["roles"]]
    assert weights == [491_400_064, 491_400_064]
    shared = report["memory"]["roles"][1]
    assert report["memory"]["needed_bytes"] < 2 * 491_400_064  # the weights count once
    assert shared["shares_weights_with"] == "coder"


def test_doctor_describes_the_small_embedded_models(tmp_path):
    (tmp_path / "smalltalk-lsp.toml").write_text(
        '[models]\ncode_generation = "gemma3-270m"\nreasoning = "smollm2-135m"\n'
    )
    result = cli("doctor", "--root", str(tmp_path))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "coder: gemma3-270m" in out and "gemma3, 268M parameters, Q4_K_M" in out
    assert "reasoner: smollm2-135m" in out and "chat template yes" in out
    assert "FIM           no (prefix-only prompts)" in out
    assert "memory plan:" in out and ": fits" in out


def test_doctor_names_a_missing_model_and_a_bad_key(tmp_path):
    (tmp_path / "smalltalk-lsp.toml").write_text(
        '[models]\ncode_generation = "models/missing.gguf"\nturbo = true\n'
    )
    result = cli("doctor", "--root", str(tmp_path), "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    coder = report["models"][0]
    assert not coder["ok"]
    assert "missing.gguf: file check failed: the file does not exist" in coder["problem"]
    assert any("models.turbo" in p for p in report["settings_problems"])


def test_complete_prints_the_suggestion_with_timings(tmp_path):
    root = tmp_path / "tonel"
    shutil.copytree(SAMPLE, root)
    path = root / "StreamingRights-Core" / "SRStore.class.st"
    text = path.read_text(encoding="utf-8")
    text += "\n{ #category : #testing }\nSRStore >> isEmpty [\n\n\t\n]\n"
    path.write_text(text, encoding="utf-8")
    line = text.count("\n") - 1  # the empty line inside the new method (1-based)
    result = cli("complete", f"{path}:{line}:2", "--json", "--max-generate-ms", "600000")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["mode"] == "block"
    assert report["suggestion"].strip()
    assert report["model"] == "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"  # the default coder
    assert report["prompt_tokens"] > 100
    assert {"load", "total", "prompt", "generate"} <= set(report["timings_ms"])


def test_complete_rejects_bad_locations_and_names_a_broken_model(tmp_path):
    bad = cli("complete", "nowhere.st:x:1")
    assert bad.returncode == 2 and "FILE:LINE:COL" in bad.stderr
    model = tmp_path / "broken.gguf"
    model.write_bytes(b"not a model" * 10)
    path = tmp_path / "Foo.st"
    path.write_text("foo\n\t^ 1\n")
    broken = cli("complete", f"{path}:2:4", "--model", str(model))
    assert broken.returncode == 1
    assert "broken.gguf: magic check failed: not a GGUF file" in broken.stderr
