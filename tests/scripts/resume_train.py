"""Distil a tiny teacher into a tiny student with checkpoints, optionally resuming; run by
`tests/test_checkpoint_state.py` under `torchrun --nproc_per_node 2` (gloo, CPU) to check per-process RNG files and a
resume across processes.

python -m tests.scripts.resume_train OUTPUT_DIR [--max-steps N] [--save-steps K] [--resume] [--probe-dir DIR]

The student has attention dropout (so each process's restored RNG state matters); with `--probe-dir`, each process
writes the steps it executed and its optimizer moments (`tests/scripts/resume_probe.py`) there.
"""

import argparse
import os

from hf_distill import DistillationConfig, DistillationTrainer
from tests import tiny
from tests.no_pickle import refuse_unpickling
from tests.scripts.resume_probe import ResumeProbe, with_dropout


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("output_dir")
    parser.add_argument("--max-steps", type=int, default=4)
    parser.add_argument("--save-steps", type=int, default=2)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--probe-dir")
    cli = parser.parse_args()
    if cli.resume:  # the resume reads safetensors and JSON only
        refuse_unpickling()

    tokenizer = tiny.build_tokenizer()
    factory = tiny.ModelFactory(tokenizer)
    args = DistillationConfig(
        output_dir=cli.output_dir, report_to="none", max_steps=cli.max_steps, save_strategy="steps",
        save_steps=cli.save_steps, per_device_train_batch_size=2, learning_rate=5e-3, lr_scheduler_type="cosine",
        warmup_steps=1, logging_steps=1, seed=0, max_length=64, dataloader_num_workers=0, use_cpu=True,
        disable_tqdm=True,
    )
    probe = ResumeProbe(
        snapshot_step=cli.save_steps, folder=cli.probe_dir, tag="resumed" if cli.resume else "fresh",
        rank=int(os.environ.get("RANK", 0)),
    )
    trainer = DistillationTrainer(
        model=with_dropout(factory("llama", seed=1)), teacher_model=factory("qwen2", hidden=48, seed=2), args=args,
        train_dataset=tiny.prompt_completion_dataset(32, seed=5), processing_class=tokenizer, callbacks=[probe],
    )
    trainer.train(resume_from_checkpoint=True if cli.resume else None)


if __name__ == "__main__":
    main()
