"""Train a tiny student against a tiny teacher; used by the fault tests, which SIGKILL it and resume it.

python -m tests.scripts.train_tiny OUTPUT_DIR [--max-steps N] [--save-steps K] [--step-delay S] [--resume]
    [--probe-dir DIR]

The student has attention dropout, so a resume that did not restore the RNG state would train another student; with
`--probe-dir`, the run writes the steps it executed and its optimizer moments there (`tests/scripts/resume_probe.py`).
"""

import argparse
import time

from transformers import TrainerCallback

from hf_distill import DistillationConfig, DistillationTrainer
from tests import tiny
from tests.scripts.resume_probe import ResumeProbe, with_dropout


class _SlowSteps(TrainerCallback):
    """Give the test time to kill the run between two checkpoints."""

    def __init__(self, delay):
        self.delay = delay

    def on_step_end(self, args, state, control, **kwargs):
        time.sleep(self.delay)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("output_dir")
    parser.add_argument("--max-steps", type=int, default=12)
    parser.add_argument("--save-steps", type=int, default=4)
    parser.add_argument("--step-delay", type=float, default=0.0)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--probe-dir")
    cli = parser.parse_args()

    tokenizer = tiny.build_tokenizer()
    factory = tiny.ModelFactory(tokenizer)
    args = DistillationConfig(
        output_dir=cli.output_dir, report_to="none", max_steps=cli.max_steps, save_steps=cli.save_steps,
        save_strategy="steps", per_device_train_batch_size=4, learning_rate=5e-3, logging_steps=1, seed=0,
        max_length=64, dataloader_num_workers=0,
    )
    probe = ResumeProbe(snapshot_step=cli.save_steps, folder=cli.probe_dir, tag="resumed" if cli.resume else "fresh")
    trainer = DistillationTrainer(
        model=with_dropout(factory("llama", seed=1)), teacher_model=factory("qwen2", hidden=48, seed=2), args=args,
        train_dataset=tiny.prompt_completion_dataset(32, seed=5), processing_class=tokenizer,
        callbacks=[_SlowSteps(cli.step_delay), probe],
    )
    trainer.train(resume_from_checkpoint=True if cli.resume else None)
    trainer.save_model(f"{cli.output_dir}/final")


if __name__ == "__main__":
    main()
