# /// script
# requires-python = ">=3.10"
# dependencies = [
#     "hf-distill",
#     "bitsandbytes>=0.45",
# ]
# ///
# hf-distill is not on PyPI yet: in a clone of its repository, `python -m pip install -e .`, then run this file
# with `python` as shown below (`uv run` resolves the header above once a release is on the index).
"""Logit distillation with an online teacher: the student learns the teacher's next-token distribution on every
token it trains on. Recipes (a), (b) and (e):

    # (a) Qwen2.5-1.5B-Instruct -> Qwen2.5-0.5B-Instruct, one 24 GB GPU
    python examples/logit_distillation.py --config examples/configs/qwen2.5-0.5b_from_qwen2.5-1.5b.yaml
    # (b) 8-bit Qwen2.5-7B-Instruct teacher -> LoRA on Qwen2.5-1.5B-Instruct, one 24 GB GPU
    python examples/logit_distillation.py --config examples/configs/qwen2.5-1.5b-lora_from_qwen2.5-7b-8bit.yaml
    # (e) several GPUs: DDP, FSDP2 or DeepSpeed ZeRO-3
    accelerate launch --config_file examples/accelerate/deepspeed_zero3.yaml examples/logit_distillation.py \\
        --config examples/configs/qwen2.5-7b_from_qwen2.5-32b-zero3.yaml

Each recipe states its hardware, memory and time. Any recipe key can be overridden on the command line
(`--max_steps 100`, `--teacher_model_name_or_path ...`); `--help` lists them all. `hf-distill train --config <recipe>`
runs the same recipe through the CLI.
"""

from __future__ import annotations

import sys
from pathlib import Path

# hf_distill first: importing it quiets the third-party log lines that importing trl would print.
from hf_distill import DistillationConfig, DistillationTrainer
from hf_distill.cli import TrainScriptArguments, load_dataset_argument, parse_recipe
from hf_distill.publish import PLOT_PATH

# isort: split
from trl import ModelConfig, get_peft_config, get_quantization_config

RECIPES = (
    "qwen2.5-0.5b_from_qwen2.5-1.5b.yaml",
    "qwen2.5-1.5b-lora_from_qwen2.5-7b-8bit.yaml",
    "qwen2.5-7b_from_qwen2.5-32b-zero3.yaml",
)
DATACLASS_TYPES = (TrainScriptArguments, DistillationConfig, ModelConfig)


def main(argv: list[str] | None = None) -> DistillationTrainer:
    script_args, training_args, model_args = parse_recipe(
        DATACLASS_TYPES, sys.argv[1:] if argv is None else argv, prog="logit_distillation.py"
    )
    # The student loads with the recipe's dtype; the teacher with `teacher_model_init_kwargs` (8-bit in recipe b).
    training_args.model_init_kwargs = {"dtype": model_args.dtype, **(training_args.model_init_kwargs or {})}
    trainer = DistillationTrainer(
        model=model_args.model_name_or_path,
        args=training_args,
        train_dataset=load_dataset_argument(script_args, script_args.dataset_train_split),
        peft_config=get_peft_config(model_args),
        quantization_config=get_quantization_config(model_args),
    )
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_model()  # weights, tokenizer and distillation_provenance.json

    report = None
    if script_args.benchmark_after_training and trainer.is_world_process_zero():
        held_out = load_dataset_argument(script_args, script_args.dataset_test_split)
        report = trainer.benchmark(
            held_out,
            max_samples=script_args.benchmark_max_samples,
            max_new_tokens=script_args.benchmark_max_new_tokens,
            dataset_name=script_args.dataset_name,
        )
        # Where the card, `push` and the Space look for them: benchmark/report.json and PLOT_PATH.
        folder = Path(training_args.output_dir)
        (folder / PLOT_PATH).parent.mkdir(parents=True, exist_ok=True)
        report.to_json(folder / "benchmark" / "report.json")
        report.plot(folder / PLOT_PATH)
        print(report.to_markdown())
    plot = PLOT_PATH if report is not None else None
    trainer.create_model_card(dataset_name=script_args.dataset_name, report=report, plot_path=plot)
    if training_args.push_to_hub:
        trainer.push_to_hub(report=report)
    return trainer


if __name__ == "__main__":
    main()
