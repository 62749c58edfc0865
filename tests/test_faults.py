"""Faults: a training run killed with SIGKILL resumes to the same student as an uninterrupted run."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hf_distill.training.checkpoint_state import CheckpointStateError
from hf_distill.training.checkpoints import last_complete_checkpoint
from tests.distributed import sigkill_once_written

ROOT = Path(__file__).resolve().parents[1]
# Resumed runs replay the data order and RNG from the checkpoint; what differs is float summation order at most.
RESUME_TOLERANCE = 1e-5


def _train(output_dir, *extra, wait=True):
    command = [sys.executable, "-m", "tests.scripts.train_tiny", str(output_dir), *extra]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if wait:
        subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True, timeout=600)
        return None
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _weights(output_dir):
    return load_file(str(Path(output_dir) / "final" / "model.safetensors"))


@pytest.mark.slow
def test_sigkill_then_resume_gives_the_uninterrupted_student(tmp_path):
    _train(tmp_path / "clean", "--probe-dir", str(tmp_path / "clean-probe"))
    process = _train(tmp_path / "killed", "--step-delay", "0.3", wait=False)
    first = tmp_path / "killed" / "checkpoint-4"
    sigkill_once_written(process, first / "trainer_state.json", "first checkpoint")
    assert not (tmp_path / "killed" / "final").exists(), "the run finished before it was killed"
    assert not [p.name for p in first.iterdir() if p.suffix in (".pt", ".pth", ".bin")]  # resumed without pickle
    # A checkpoint cut off mid-save must be skipped, not loaded.
    partial = tmp_path / "killed" / "checkpoint-999"
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"truncated")
    assert last_complete_checkpoint(tmp_path / "killed") != str(partial)

    assert last_complete_checkpoint(tmp_path / "killed") == str(first)  # killed before the next save (step 8)

    _train(tmp_path / "killed", "--resume", "--probe-dir", str(tmp_path / "resumed-probe"))
    clean, resumed = _weights(tmp_path / "clean"), _weights(tmp_path / "killed")
    assert clean.keys() == resumed.keys()
    for name in clean:  # the student has dropout: equal only if the RNG state was restored too
        torch.testing.assert_close(resumed[name], clean[name], rtol=0, atol=RESUME_TOLERANCE, msg=name)
    # The resumed process ran steps 5-12 only, from the moments the uninterrupted run had after step 4.
    executed = json.loads((tmp_path / "resumed-probe" / "probe-resumed-0.json").read_text())["executed_steps"]
    assert executed == list(range(5, 13))
    saved = load_file(str(tmp_path / "clean-probe" / "probe-fresh-0-snapshot.safetensors"))
    started = load_file(str(tmp_path / "resumed-probe" / "probe-resumed-0-start.safetensors"))
    assert saved.keys() == started.keys() != set()
    for name in saved:
        torch.testing.assert_close(started[name], saved[name], rtol=0, atol=RESUME_TOLERANCE, msg=name)


def test_last_complete_checkpoint_skips_unfinished_saves(tmp_path):
    assert last_complete_checkpoint(tmp_path / "missing") is None
    for step, complete in [(2, True), (4, True), (6, False)]:
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        if complete:
            (folder / "trainer_state.json").write_text("{}")
    (tmp_path / "checkpoint-x").mkdir()
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-4")
    shutil.rmtree(tmp_path / "checkpoint-4")
    shutil.rmtree(tmp_path / "checkpoint-2")
    assert last_complete_checkpoint(tmp_path) is None


def test_resume_without_a_complete_checkpoint_names_the_fix(tmp_path, model_factory, tokenizer):
    from hf_distill import DistillationTrainer
    from tests import tiny
    from tests.test_trainer import _args

    (tmp_path / "checkpoint-3").mkdir()
    trainer = DistillationTrainer(
        model=model_factory("llama"), teacher_model=model_factory("llama", seed=3), args=_args(tmp_path),
        train_dataset=tiny.text_dataset(4), processing_class=tokenizer,
    )
    with pytest.raises(CheckpointStateError, match="No complete checkpoint to resume from.*Start without"):
        trainer.train(resume_from_checkpoint=True)
