"""Distil a tiny teacher into a tiny student and write the logged losses and final weights; run by
`tests/test_multiprocess_training.py` once as one process and once under `torchrun --nproc_per_node 2` (gloo, CPU).

python -m tests.scripts.multiprocess_train OUTPUT_DIR --per-device-batch-size B [--max-steps N]
    [--lmbda L] [--optim NAME]

With `--lmbda`, that share of the batches trains on completions the student decodes greedily (greedy, so that the
samples do not depend on how the rows are split across processes).
"""

import argparse
import json

from safetensors.torch import save_file

from hf_distill import DistillationConfig, DistillationTrainer
from tests import tiny


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("output_dir")
    parser.add_argument("--per-device-batch-size", type=int, required=True)
    parser.add_argument("--max-steps", type=int, default=4)
    parser.add_argument("--lmbda", type=float, default=0.0)
    parser.add_argument("--optim", default=None, help="a TrainingArguments.optim name")
    cli = parser.parse_args()

    tokenizer = tiny.build_tokenizer()
    factory = tiny.ModelFactory(tokenizer)
    args = DistillationConfig(
        output_dir=cli.output_dir,
        report_to="none",
        save_strategy="no",
        max_steps=cli.max_steps,
        per_device_train_batch_size=cli.per_device_batch_size,
        learning_rate=1e-2,
        lr_scheduler_type="constant",
        logging_steps=1,
        seed=0,
        max_length=64,
        dataloader_num_workers=0,
        use_cpu=True,
        alpha=0.5,
        disable_tqdm=True,
        lmbda=cli.lmbda,
        generation_temperature=0.0,
        max_new_tokens=6,
        **({"optim": cli.optim} if cli.optim else {}),
    )
    trainer = DistillationTrainer(
        model=factory("llama", seed=1),
        teacher_model=factory("qwen2", hidden=48, seed=2),
        args=args,
        train_dataset=tiny.prompt_completion_dataset(32, seed=5),
        processing_class=tokenizer,
    )
    trainer.train()
    if trainer.is_world_process_zero():
        logs = [entry for entry in trainer.state.log_history if "loss" in entry]
        record = {
            "num_processes": trainer.accelerator.num_processes,
            "losses": [entry["loss"] for entry in logs],
            "kd_losses": [entry["kd_loss"] for entry in logs],
            "num_tokens": trainer.state.log_history[-2].get("num_tokens"),
            "completion_sources": dict(trainer.on_policy.counts) if trainer.on_policy is not None else {},
        }
        with open(f"{cli.output_dir}/result.json", "w") as handle:
            json.dump(record, handle)
        weights = {
            name: p.detach().contiguous()
            for name, p in trainer.accelerator.unwrap_model(trainer.model).named_parameters()
        }
        save_file(weights, f"{cli.output_dir}/weights.safetensors")


if __name__ == "__main__":
    main()
