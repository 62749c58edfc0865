# /// script
# requires-python = ">=3.10"
# dependencies = [
#     "hf-distill",
# ]
# ///
# hf-distill is not on PyPI yet: in a clone of its repository, `python -m pip install -e .`, then run this file
# with `python` as shown below (`uv run` resolves the header above once a release is on the index).
"""Sequence-level distillation across tokenizers, recipe (d): the teacher writes answers to the prompts, and a
student with ANOTHER tokenizer is trained on that text with plain SFT (logits cannot be compared across
vocabularies; text can).

    python examples/sequence_level.py --config examples/configs/smollm2-360m_from_qwen2.5-7b-sequence.yaml
    python examples/sequence_level.py --config <recipe> --backend vllm      # much faster generation with vLLM

Generation writes shards atomically and resumes when re-run with the same `generations_dir`; the generated
dataset carries provenance columns (teacher, revision, generation settings) and a dataset card. The same recipe
drives the CLI's generation step:

    hf-distill generate --config examples/configs/smollm2-360m_from_qwen2.5-7b-sequence.yaml

"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Literal

# hf_distill first: importing it quiets the third-party log lines that importing trl would print.
from hf_distill.cli import DatasetArguments, load_dataset_argument, parse_recipe
from hf_distill.training import HardwareSFTConfig
from hf_distill.data import generate_completions

# isort: split
from trl import ModelConfig, SFTTrainer, get_peft_config

RECIPES = ("smollm2-360m_from_qwen2.5-7b-sequence.yaml",)


@dataclass
class SequenceLevelArguments(DatasetArguments):
    """The teacher's generation pass, under the names `hf-distill generate` uses (one recipe drives both)."""

    teacher: str | None = field(default=None, metadata={"help": "Hub id or path of the teacher (any tokenizer)."})
    teacher_model_init_kwargs: str | None = field(
        default=None, metadata={"help": "JSON object of `from_pretrained` arguments for the teacher."}
    )
    generations_dir: str = field(default="teacher-completions", metadata={"help": "Folder of the generated data."})
    max_new_tokens: int = field(default=512, metadata={"help": "Completion length limit."})
    temperature: float = field(default=0.7, metadata={"help": "Sampling temperature; 0 decodes greedily."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling threshold."})
    num_samples: int = field(default=1, metadata={"help": "Completions per prompt."})
    batch_size: int = field(default=16, metadata={"help": "Sequences per generate call."})
    backend: Literal["transformers", "vllm"] = field(default="transformers", metadata={"help": "Generation engine."})
    max_rows: int | None = field(default=None, metadata={"help": "Generate for the first N prompts only."})


# HardwareSFTConfig: TRL's SFTConfig whose bf16 follows the machine (on a CPU, off), as DistillationConfig's does.
DATACLASS_TYPES = (SequenceLevelArguments, HardwareSFTConfig, ModelConfig)


def main(argv: list[str] | None = None) -> SFTTrainer:
    script_args, training_args, model_args = parse_recipe(
        DATACLASS_TYPES, sys.argv[1:] if argv is None else argv, prog="sequence_level.py"
    )
    if script_args.teacher is None:
        raise ValueError("Set `teacher` in the recipe or pass --teacher <id or path>.")
    kwargs = script_args.teacher_model_init_kwargs
    generated = generate_completions(
        script_args.teacher,
        load_dataset_argument(script_args, script_args.dataset_train_split),
        output_dir=script_args.generations_dir,
        max_new_tokens=script_args.max_new_tokens,
        temperature=script_args.temperature,
        top_p=script_args.top_p,
        num_samples=script_args.num_samples,
        batch_size=script_args.batch_size,
        backend=script_args.backend,
        seed=training_args.seed,
        model_kwargs=json.loads(kwargs) if isinstance(kwargs, str) else kwargs,
        max_rows=script_args.max_rows,
    )
    training_args.model_init_kwargs = {"dtype": model_args.dtype, **(training_args.model_init_kwargs or {})}
    trainer = SFTTrainer(
        model=model_args.model_name_or_path,
        args=training_args,
        train_dataset=generated,
        peft_config=get_peft_config(model_args),
    )
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_model()
    return trainer


if __name__ == "__main__":
    main()
