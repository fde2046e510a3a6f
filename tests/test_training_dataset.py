"""The dataset stage and the training pipeline's bad input, without loading a model."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from adapters.dataset import (
    DatasetConfig,
    DatasetError,
    Example,
    _document,
    build_dataset,
    collect_classes,
    fim_example,
    project_provider,
    read_examples,
    read_manifest,
    write_dataset,
)
from adapters.evaluate import cut_completion, parses
from adapters.export import ExportError, gguf_name
from adapters.hf_base import BaseModelError, load_base
from adapters.render import fit_tokens, render
from server.completion.cache import SuggestionCache
from server.completion.pipeline import CompletionOptions, Prepared, prepare
from server.completion.providers import ClassContextProvider
from server.completion.types import CompletionRequest
from server.engine.types import FimTokens
from server.project_model import ProjectModel
from server.retrieval.context import RetrievalContextProvider
from smalltalk_grammar import format_of, parse

SAMPLE = Path(__file__).parent / "fixtures" / "sample"
TONEL = SAMPLE / "tonel"


def test_dataset_of_the_sample_project(tmp_path: Path) -> None:
    dataset = build_dataset(TONEL)
    manifest = write_dataset(dataset, tmp_path)
    train = read_examples(tmp_path / "train.jsonl")
    held = read_examples(tmp_path / "eval.jsonl")
    # 44 methods in 8 classes; one implement example per method.
    assert manifest.methods["train"] + manifest.methods["eval"] == 44
    assert len(manifest.classes["train"]) + len(manifest.classes["eval"]) == 8
    assert manifest.counts["train"]["implement"] + manifest.counts["eval"]["implement"] == 44
    assert manifest.counts["train"]["total"] == len(train) > 0
    assert manifest.counts["eval"]["total"] == len(held) > 0
    assert manifest.counts["train"]["fim"] > 0 and manifest.counts["eval"]["fim"] > 0
    # A class is never split across train and eval.
    train_classes = {e.class_name for e in train}
    eval_classes = {e.class_name for e in held}
    assert not train_classes & eval_classes
    assert train_classes == set(manifest.classes["train"])
    assert eval_classes == set(manifest.classes["eval"])
    # No duplicates; ids are content hashes.
    ids = [e.id for e in train + held]
    assert len(ids) == len(set(ids))
    # Source hashes of every file with methods, and the JSONL files' hashes.
    assert len(manifest.sources) == 8
    assert all(len(s.sha256) == 64 for s in manifest.sources)
    assert set(manifest.files) == {"train.jsonl", "eval.jsonl"}
    assert read_manifest(tmp_path).counts == manifest.counts
    # An implement example ends with the method's closing bracket and starts after its
    # comment; a FIM target is text of the method cut out of it.
    example = next(e for e in train + held if e.method == "SRStore>>addRight:"
                   and e.kind == "implement")
    assert example.prefix.endswith('SRStore >> addRight: aRight [\n\t"Add aRight to the '
                                   'receiver and answer it"')
    assert example.middle == "\n\n\t^ self rights add: aRight\n]"
    assert example.prefix.startswith('"\nI am an abstract store')
    for fim in (e for e in train + held if e.kind == "fim"):
        assert fim.middle.strip() and fim.middle in fim.method_before + fim.middle
        assert parses(fim, fim.middle), fim.method


def test_dataset_is_deterministic_and_dedups_formats(tmp_path: Path) -> None:
    once = build_dataset(TONEL)
    again = build_dataset(TONEL)
    assert [e.id for e in once.train] == [e.id for e in again.train]
    # The whole sample holds the same classes in five formats: every method is kept once.
    everything = build_dataset(SAMPLE)
    methods = [e.method for e in everything.train + everything.eval if e.kind == "implement"]
    assert len(methods) == len(set(methods))
    assert {"SRStore>>addRight:", "SRLicence class>>from:to:"} <= set(methods)
    other = build_dataset(TONEL, DatasetConfig(seed=3, eval_fraction=0.5))
    assert len(other.manifest.classes["eval"]) == 4


def test_project_without_methods_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.st").write_text('"nothing but a comment"\n')
    (tmp_path / "Empty.class.st").write_text(
        "Class {\n\t#name : #Empty,\n\t#superclass : #Object\n}\n"
    )
    with pytest.raises(DatasetError, match="no Smalltalk methods found"):
        build_dataset(tmp_path)
    with pytest.raises(DatasetError, match="no such file"):
        build_dataset(tmp_path / "missing")
    with pytest.raises(DatasetError, match="no dataset here"):
        read_manifest(tmp_path)


def test_cli_dataset(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    done = subprocess.run(
        [sys.executable, "-m", "server", "adapters", "dataset", str(TONEL), "--out", str(out)],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["methods"]["train"] + summary["methods"]["eval"] == 44
    assert (out / "train.jsonl").is_file() and (out / "manifest.json").is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    failed = subprocess.run(
        [sys.executable, "-m", "server", "adapters", "dataset", str(empty)],
        capture_output=True, text=True, timeout=120,
    )
    assert failed.returncode == 1
    assert "no Smalltalk methods found" in failed.stderr


def test_render_and_fit() -> None:
    example = build_dataset(TONEL).train[1]
    assert example.kind == "fim"
    prompt, target = render(example, None)
    assert prompt == example.prefix and target == example.middle
    fim = FimTokens("<PRE>", "<SUF>", "<MID>")
    prompt, _ = render(example, fim)
    assert prompt == f"<PRE>{example.prefix}<SUF>{example.suffix}<MID>"
    head, tail = fit_tokens([1] + list(range(100, 200)), list(range(40)), 32, keep_head=1)
    assert head[0] == 1 and head[-1] == 199 and len(head) + len(tail) == 32
    assert tail == list(range(24))


def test_cut_completion_and_parse_check() -> None:
    examples = build_dataset(TONEL).train
    implement = next(e for e in examples if e.method == "SRStore>>addRight:"
                     and e.kind == "implement")
    text = "\n\n\t^ self rights add: aRight\n]\n\n{ #category : #accessing }\nSRStore >> x ["
    assert cut_completion(implement, text) == implement.middle
    assert parses(implement, implement.middle)
    assert not parses(implement, "\n\t^ self rights add: (aRight\n]")


def test_export_names() -> None:
    key = "base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight"
    assert gguf_name(key) == ("blk.3.attn_q.weight", "lora_a")
    assert gguf_name("base_model.model.model.layers.17.mlp.down_proj.lora_B.weight") == (
        "blk.17.ffn_down.weight", "lora_b")
    with pytest.raises(ExportError, match="no GGUF counterpart"):
        gguf_name("base_model.model.lm_head.lora_A.weight")


def test_base_model_that_transformers_cannot_load(tmp_path: Path) -> None:
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\xff" * 64)
    with pytest.raises(BaseModelError, match="junk.gguf"):
        load_base(str(junk))
    folder = tmp_path / "checkpoint"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "no-such-architecture"}')
    with pytest.raises(BaseModelError, match="transformers cannot load the base model"):
        load_base(str(folder))
    with pytest.raises(BaseModelError, match="does not exist"):
        load_base(str(tmp_path / "missing.gguf"))


def test_cli_stages_report_bad_input(tmp_path: Path) -> None:
    dataset = tmp_path / "ds"
    write_dataset(build_dataset(TONEL), dataset)
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a model at all")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "server", "adapters", *args],
                              capture_output=True, text=True, timeout=120)

    failed = cli("train", str(dataset), "--out", str(tmp_path / "run"), "--base-model",
                 str(junk), "--steps", "2", "--no-progress")
    assert failed.returncode == 1
    assert "adapters train:" in failed.stderr and "junk.gguf" in failed.stderr
    # Without --base-model the coder of the project's settings is trained.
    project = tmp_path / "project"
    shutil.copytree(TONEL, project)
    (project / "smalltalk-lsp.toml").write_text('[models]\ncode_generation = "models/mine.gguf"\n')
    write_dataset(build_dataset(project), project / "ds")
    failed = cli("train", str(project / "ds"), "--steps", "2", "--no-progress")
    assert failed.returncode == 1
    assert f"{project / 'models' / 'mine.gguf'} does not exist" in failed.stderr
    (project / "smalltalk-lsp.toml").write_text('[models]\ncode_generation = "off"\n')
    failed = cli("eval", str(project / "ds"))
    assert failed.returncode == 1 and "models.code_generation is off" in failed.stderr
    failed = cli("export", str(tmp_path / "run"), "--name", "x")
    assert failed.returncode == 1 and "not a finished train run" in failed.stderr
    failed = cli("eval", str(tmp_path), "--limit", "1")
    assert failed.returncode == 1 and "no dataset here" in failed.stderr


def test_teach_answers_become_lessons() -> None:
    from adapters.teach import TeachConfig, chat_renderer, clean_answer, lesson, question, sample

    assert clean_answer('<think>plan</think> It adds "x". It answers it. It adds "x".') == (
        "It adds 'x'. It answers it.")
    assert clean_answer("<think>never finished") == ""
    assert clean_answer("One. Two. Three. Four.") == "One. Two. Three."
    examples = build_dataset(TONEL).train
    chosen = sample(examples, TeachConfig(limit=3))
    assert len(chosen) == 3 and all(e.kind == "implement" for e in chosen)
    example = next(e for e in examples if e.method == "SRStore>>addRight:"
                   and e.kind == "implement")
    assert "SRStore >> addRight: aRight [" in question(example, "explain")
    assert "`addRight: aRight`" in question(example, "design")
    explain = lesson(example, "explain", "It adds a right.")
    assert explain.prefix.endswith('"SRStore>>addRight: explained:\n')
    assert explain.middle == 'It adds a right."' and explain.split == "train"
    design = lesson(example, "design", "Add it to the rights.")
    assert design.prefix == example.prefix
    assert design.middle == '\n\t"Add it to the rights."' + example.middle
    assert parses(design, design.middle)
    chatml = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}" \
             "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n" \
             "{% endif %}"
    rendered = chat_renderer(chatml)([{"role": "user", "content": "hi"}])
    assert rendered == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert chat_renderer(None)([{"role": "user", "content": "hi"}]) == "User: hi\n\nAssistant:"


class _PromptOnly:
    """What the prompt stage reads of an engine: its FIM tokens and an id (nothing generates)."""

    model_id = "prompt-only"

    def __init__(self, fim: FimTokens) -> None:
        self.fim = fim


PLAIN_FIM = FimTokens("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>")
# Qwen2.5-Coder's tokens, as llama.cpp reports them for the default coder.
QWEN_FIM = FimTokens("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>",
                     repo_name="<|repo_name|>", file_sep="<|file_sep|>")


def _first_line_span(body: str) -> tuple[str, int, int] | None:
    """The body's first code line when it is indented, and where its code starts and ends
    (the span a line example cuts, right after the indentation)."""
    line = next((ln for ln in body.split("\n") if ln.strip()), None)
    if line is None or not line.startswith("\t"):
        return None
    start = body.index(line)
    return line, start + len(line) - len(line.lstrip()), start + len(line)


@pytest.mark.parametrize("fim", [PLAIN_FIM, QWEN_FIM], ids=["plain", "repository"])
@pytest.mark.parametrize("folder", ["tonel", "chunk-squeak", "chunk-vw", "gnu", "filetree"])
def test_a_training_prompt_is_the_serving_prompt(folder: str, fim: FimTokens) -> None:
    """Each FIM example's prompt, byte for byte, is the one the server's completion pipeline
    (`prepare`) builds for the class document the dataset lays out, with the target not yet
    written and the cursor where the target starts, here right after a line's indentation
    (which a FIM prompt keeps when it stands alone on the line: cut at column 0,
    Qwen2.5-Coder writes a new method instead of the body)."""
    config = DatasetConfig()
    options = CompletionOptions(prefix_chars=config.context_chars, suffix_chars=config.suffix_chars)
    checked = 0
    classes, _, _ = collect_classes(SAMPLE / folder)
    for entry in classes:
        doc = _document(entry)
        project = ProjectModel([parse(doc.text, doc.path)])
        for index, method in enumerate(entry.methods):
            span = _first_line_span(method.body)
            if span is None:
                continue
            line, cut, end = span
            example = fim_example(doc, index, cut, end, "line", "train", config)
            # As the train stage reads it back from the dataset's JSONL.
            example = Example.model_validate_json(example.model_dump_json())
            prompt, target = render(example, fim)

            body_start, _ = doc.bodies[index]
            cursor = body_start + cut
            text = doc.text[:cursor] + doc.text[body_start + end :]
            request = CompletionRequest(
                f"file:///{doc.path}", text, cursor, doc.path, format_of(text, doc.path)
            )
            providers = [ClassContextProvider(lambda project=project: project)]
            engine = _PromptOnly(fim)
            served = prepare(request, engine, providers, options, SuggestionCache())  # type: ignore[arg-type]
            assert isinstance(served, Prepared), entry.name
            assert prompt == served.prompt.text, f"{entry.name}>>{method.pattern}"
            # Indentation alone on the line stays in the FIM prompt, so the target starts
            # after it.
            front = prompt.split("<|fim_suffix|>")[0]
            assert text[:cursor].endswith("\t") and front.endswith("\t")
            if fim.repo_name:
                # The repository layout: project, then the class's own file, named as a
                # Tonel project names it.
                assert prompt.startswith(f"<|repo_name|>{folder}\n"), prompt[:80]
                assert f"<|file_sep|>{entry.name}.class.st\n<|fim_prefix|>" in prompt
            else:
                assert "<|file_sep|>" not in prompt
            assert target == line.lstrip()
            whole = example.method_before + target + example.method_after
            assert whole == method.pattern + method.body
            checked += 1
    assert checked >= 10


def test_project_context_prompts_are_the_serving_prompts_of_the_retrieval_provider() -> None:
    """With `context="project"` a FIM example's prompt is the one `prepare` builds with
    serving's retrieval provider over the whole project (no index): other files' methods
    come in as repository files, which the class provider alone never gives."""
    config = DatasetConfig(context="project")
    options = CompletionOptions(prefix_chars=config.context_chars, suffix_chars=config.suffix_chars)
    classes, _, _ = collect_classes(TONEL)
    docs = [_document(entry) for entry in classes]
    shared = project_provider(docs, config.snippet_chars)
    served_by = RetrievalContextProvider(
        lambda: ProjectModel([parse(d.text, d.path) for d in docs]), lambda: None,
        lambda: config.snippet_chars // 4)
    checked = other_files = 0
    for doc in docs:
        doc.project_provider = shared
        for index, method in enumerate(doc.entry.methods):
            span = _first_line_span(method.body)
            if span is None:
                continue
            _, cut, end = span
            example = fim_example(doc, index, cut, end, "line", "train", config)
            prompt, _ = render(Example.model_validate_json(example.model_dump_json()), QWEN_FIM)
            body_start, _ = doc.bodies[index]
            cursor = body_start + cut
            text = doc.text[:cursor] + doc.text[body_start + end :]
            request = CompletionRequest(f"file:///{doc.path}", text, cursor, doc.path, "tonel")
            served = prepare(request, _PromptOnly(QWEN_FIM), [served_by], options,  # type: ignore[arg-type]
                             SuggestionCache())
            assert isinstance(served, Prepared)
            assert prompt == served.prompt.text, f"{doc.entry.name}>>{method.pattern}"
            assert example.context is not None
            others = [path for _, _, path, _ in example.context.snippets if path != doc.path]
            other_files += bool(others and prompt.count("<|file_sep|>") > 1)
            checked += 1
    assert checked >= 10 and other_files >= 3, (checked, other_files)


def test_packages_held_out_by_the_sha256_of_their_name() -> None:
    """split_by="package": whole packages held out, the first of them by the sha256 of the
    name (a fixed rule, the same whatever the seed); no class of theirs is trained on."""
    import hashlib

    from adapters.dataset import held_out_packages

    names = [f"Pkg-{i}" for i in range(10)]
    by_hash = sorted(names, key=lambda n: hashlib.sha256(n.encode()).hexdigest())
    assert held_out_packages(names, 0.2) == set(by_hash[:2])
    assert held_out_packages(["Only"], 0.5) == set()
    config = DatasetConfig(split_by="package", eval_fraction=0.5)
    for seed in (0, 7):
        dataset = build_dataset(TONEL, config.model_copy(update={"seed": seed}))
        packages = dataset.manifest.packages
        assert packages["eval"] == sorted(
            held_out_packages(["StreamingRights-Core", "StreamingRights-Tests"], 0.5))
        assert set(packages["train"]) | set(packages["eval"]) == {
            "StreamingRights-Core", "StreamingRights-Tests"}
        assert not set(packages["train"]) & set(packages["eval"])
        held = set(dataset.manifest.classes["eval"])
        assert held and not held & {e.class_name for e in dataset.train}
        assert all(e.class_name in held for e in dataset.eval)
        fim = next(e for e in dataset.eval if e.kind == "fim")
        assert fim.context is not None
        assert fim.context.path.startswith(f"tonel/{packages['eval'][0]}/")
