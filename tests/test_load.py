"""Load: 1,000 training steps of a tiny student keep memory flat (no leak per step)."""

import psutil
import pytest
from transformers import TrainerCallback

from hf_distill import DistillationTrainer
from tests import tiny
from tests.test_trainer import _args

NUM_STEPS = 1000
WARMUP_STEPS = 100
# Stated bound on RSS growth between step 100 and step 1,000 (allocator noise is a few MB; a leak of even 100 kB per
# step would show as 90 MB).
MAX_RSS_GROWTH_MB = 40


class _RssSampler(TrainerCallback):
    def __init__(self, every=50):
        self.every, self.samples = every, []

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % self.every == 0:
            self.samples.append((state.global_step, psutil.Process().memory_info().rss / 2**20))


@pytest.mark.slow
def test_thousand_steps_without_memory_growth(tmp_path, model_factory, tokenizer):
    sampler = _RssSampler()
    trainer = DistillationTrainer(
        model=model_factory("llama", hidden=16, layers=1, seed=1),
        teacher_model=model_factory("qwen2", hidden=16, layers=1, seed=2),
        args=_args(tmp_path, max_steps=NUM_STEPS, logging_steps=50, per_device_train_batch_size=2, max_length=32),
        train_dataset=tiny.prompt_completion_dataset(64),
        processing_class=tokenizer,
        callbacks=[sampler],
    )
    trainer.train()
    after_warmup = [rss for step, rss in sampler.samples if step >= WARMUP_STEPS]
    growth = max(after_warmup) - after_warmup[0]
    print(f"RSS at step {WARMUP_STEPS}: {after_warmup[0]:.1f} MiB; max growth to step {NUM_STEPS}: {growth:.1f} MiB")
    assert trainer.state.global_step == NUM_STEPS
    assert growth < MAX_RSS_GROWTH_MB, sampler.samples
