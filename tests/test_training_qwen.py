"""The training pipeline on the default coder (Qwen2.5-Coder-0.5B): the GGUF loads for PEFT,
its repository tokens lay the training prompts out as serving does, a time budget stops a run
that the same call resumes, progress is reported, and the export maps Qwen2's tensors to a
GGUF LoRA that llama.cpp loads on the quantized model and that changes its predictions."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from adapters.dataset import DatasetConfig, build_dataset, write_dataset
from adapters.evaluate import EvalConfig, EvalEngine, evaluate
from adapters.export import export_run
from adapters.render import render
from adapters.train import TrainConfig, example_index, latest_checkpoint, train, training_examples
from server.engine.gguf_check import read_checked
from server.engine.lora_validation import validate_adapter

TONEL = Path(__file__).parent / "fixtures" / "sample" / "tonel"
QWEN = "qwen2.5-coder-0.5b"


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("training-qwen") / "dataset"
    write_dataset(build_dataset(TONEL, DatasetConfig(split_by="package", eval_fraction=0.5)),
                  out)
    return out


def test_qwen_pipeline(dataset_dir: Path, hf_qwen, qwen_model, tmp_path: Path,
                       capsys: pytest.CaptureFixture[str]) -> None:
    engine = EvalEngine(QWEN, n_ctx=2048, threads=1, loaded=qwen_model)
    try:
        # The tokens training lays prompts out with are the ones llama.cpp serves with,
        # repository tokens included: the prompts are serving's.
        assert hf_qwen.architecture == "qwen2"
        assert engine.fim == hf_qwen.fim and hf_qwen.fim.repo_name == "<|repo_name|>"
        assert hf_qwen.fim.file_sep == "<|file_sep|>"

        # A budget that ends after the first step: checkpoint and adapter written, said so.
        config = TrainConfig(base_model=QWEN, steps=3, max_seq_len=256, learning_rate=1e-3,
                             checkpoint_every=10, kinds=["fim"], threads=1, minutes=1e-6)
        run_dir = tmp_path / "run"
        cut = train(dataset_dir, run_dir, config, base=hf_qwen, progress=True)
        err = capsys.readouterr().err
        assert cut.stopped_by_budget and cut.steps == 1 and len(cut.losses) == 1
        assert latest_checkpoint(run_dir) == (1, run_dir / "checkpoints" / "step-000001")
        assert "training: 1/3 steps" in err
        assert "tok/s" in err and "ETA" in err and "RSS" in err
        assert cut.peak_rss_bytes > 500 * 2**20
        # The same run without the budget continues from there.
        result = train(dataset_dir, run_dir, config.model_copy(update={"minutes": None}),
                       base=hf_qwen, progress=False)
        assert result.resumed_from == 1 and result.steps == 3 and not result.stopped_by_budget
        assert len(result.losses) == 3 and result.losses[0] == cut.losses[0]
        assert all(math.isfinite(x) and x > 0 for x in result.losses)

        # Export: Qwen2's q/v projections of its 24 blocks, named as llama.cpp's
        # convert_lora_to_gguf names them, through the GGUF check and the adapter validation.
        exported = export_run(run_dir, name="qwen-sample", out_dir=tmp_path / "adapters")
        path = Path(exported.path)
        table = read_checked(path)
        assert table.architecture == "qwen2"
        assert {"blk.0.attn_q.weight.lora_a", "blk.23.attn_v.weight.lora_b"} <= set(table.tensors)
        info = validate_adapter(path, qwen_model.path)
        assert info.architecture == "qwen2" and info.ranks == [8] and len(info.pairs) == 2 * 24

        # In llama.cpp the adapter makes the examples it was trained on more likely.
        examples, _ = training_examples(dataset_dir, config.kinds)
        seen = [examples[example_index(step, 0, 1, len(examples), config.seed)]
                for step in range(3)]
        nll = {}
        for key, adapter in (("base", None), ("adapter", path)):
            engine.use(adapter)
            nll[key] = sum(engine.nll(*render(e, engine.fim))[0] for e in seen)
        engine.use(None)
        print(f"NLL of the trained examples: {nll}")
        assert nll["adapter"] < nll["base"], nll

        # Eval reports progress as it goes.
        capsys.readouterr()
        report = evaluate(dataset_dir, path, EvalConfig(model=QWEN, limit=2, generate_limit=1),
                          engine=engine, progress=True)
        err = capsys.readouterr().err
        assert report.with_adapter is not None and report.base.examples == 2
        assert "eval base: scoring: 2/2 examples" in err and "generating: 1/1" in err
    finally:
        engine.close()
