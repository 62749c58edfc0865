"""Logged metrics are token-weighted means: over the whole eval set whatever the eval batch size, packing or number
of processes, and over each logging window in training; checked against an independent float64 reference."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hf_distill import DistillationConfig, DistillationTrainer
from tests import kd_reference, tiny
from tests.distributed import two_process_launcher

REPO = Path(__file__).resolve().parents[1]
EVAL_ROWS = 13  # not a multiple of any batch below: the last eval batch is short (and padded on 2 processes)
METRICS = ("loss", "kd_loss", "ce_loss", "teacher_agreement", "mean_token_accuracy")
ALPHA = 0.7


def _trainer(tmp_path, model_factory, tokenizer, data, **kwargs):
    args = DistillationConfig(
        output_dir=str(tmp_path), report_to="none", save_strategy="no", max_length=64, alpha=ALPHA, seed=0,
        disable_tqdm=True, **kwargs,
    )
    return DistillationTrainer(
        model=model_factory("llama", seed=1), teacher_model=model_factory("qwen2", hidden=48, seed=2), args=args,
        train_dataset=data, eval_dataset=data, processing_class=tokenizer,
    )


def _assert_metrics(logged: dict, reference: dict, prefix: str = "", what: str = ""):
    for name in METRICS:
        assert logged[prefix + name] == pytest.approx(reference[name], rel=1e-6, abs=1e-7), (what, name)


@pytest.mark.parametrize("packing", [False, True], ids=["unpacked", "packed"])
def test_eval_metrics_do_not_depend_on_the_eval_batch_size(tmp_path, model_factory, tokenizer, packing):
    data = tiny.prompt_completion_dataset(EVAL_ROWS, seed=11)
    trainer = _trainer(tmp_path, model_factory, tokenizer, data, packing=packing)
    rows = kd_reference.prompt_completion_rows(tokenizer, data)
    reference = kd_reference.reference_means(trainer.model, trainer.teacher.model, rows, alpha=ALPHA)
    for batch_size in (1, 3, 8):
        trainer.args.per_device_eval_batch_size = batch_size
        _assert_metrics(trainer.evaluate(), reference, "eval_", f"eval batch {batch_size}")


def test_training_logs_are_token_weighted_over_the_logging_window(tmp_path, model_factory, tokenizer):
    # One logging window = the whole dataset (2 steps x 2 micro-batches x 2 rows), learning rate 0 so the reference's
    # weights are the ones every micro-batch saw.
    data = tiny.prompt_completion_dataset(8, seed=12)
    trainer = _trainer(
        tmp_path, model_factory, tokenizer, data, per_device_train_batch_size=2, gradient_accumulation_steps=2,
        max_steps=2, logging_steps=2, learning_rate=0.0, lr_scheduler_type="constant",
    )
    trainer.train()
    logged = next(entry for entry in trainer.state.log_history if "kd_loss" in entry)
    rows = kd_reference.prompt_completion_rows(tokenizer, data)
    _assert_metrics(logged, kd_reference.reference_means(trainer.model, trainer.teacher.model, rows, alpha=ALPHA))
    assert logged["loss"] == pytest.approx(ALPHA * logged["kd_loss"] + (1 - ALPHA) * logged["ce_loss"], rel=1e-6)
    assert logged["num_tokens"] == sum(len(ids) for ids, _ in rows)  # every token of every row, counted once



def _eval_script(output: Path, launcher: list[str]) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    completed = subprocess.run(
        [*launcher, "-m", "tests.scripts.eval_metrics", str(output)], cwd=REPO, env=env, capture_output=True,
        text=True, timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads((output / "metrics.json").read_text())


@pytest.mark.slow
def test_two_processes_report_the_eval_metrics_of_one(tmp_path):
    one = _eval_script(tmp_path / "one", [sys.executable])
    two = _eval_script(tmp_path / "two", two_process_launcher())
    assert (one["num_processes"], two["num_processes"]) == (1, 2)
    assert one["runs"].keys() == two["runs"].keys() and len(one["runs"]) == 4
    for run, metrics in one["runs"].items():
        _assert_metrics(metrics, one["reference"], "eval_", run)
        _assert_metrics(two["runs"][run], {name: metrics["eval_" + name] for name in METRICS}, "eval_", run)
