# /// script
# requires-python = ">=3.10"
# dependencies = [
#     "hf-distill",
# ]
# ///
# hf-distill is not on PyPI yet: in a clone of its repository, `python -m pip install -e .`, then run this file
# with `python` as shown below (`uv run` resolves the header above once a release is on the index).
"""Offline logits, recipe (c): distil a teacher larger than the training GPU. The teacher scores the data once, on as
many GPUs as it needs, and its top-k log-probabilities are stored as a `datasets` dataset; training then holds no
teacher at all.

    # 1. cache: one process with the teacher spread over all GPUs (device_map=auto) ...
    python examples/offline_logits.py cache --config examples/configs/qwen2.5-1.5b_from_qwen2.5-32b-cached.yaml
    #    ... or one teacher per GPU, each rank writing its own shards (the result equals a one-process run)
    torchrun --nproc_per_node 8 examples/offline_logits.py cache --config <recipe> \\
        --teacher_model_init_kwargs '{"dtype": "bfloat16"}'
    # 2. train on one GPU, no teacher
    python examples/offline_logits.py train --config examples/configs/qwen2.5-1.5b_from_qwen2.5-32b-cached.yaml

An interrupted cache run resumes where it stopped (finished shards are kept). The same recipe drives the CLI:

    hf-distill cache-logits --config examples/configs/qwen2.5-1.5b_from_qwen2.5-32b-cached.yaml
    hf-distill train --config examples/configs/qwen2.5-1.5b_from_qwen2.5-32b-cached.yaml

"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

# hf_distill first: importing it quiets the third-party log lines that importing trl would print.
from hf_distill import DistillationConfig, DistillationTrainer
from hf_distill.cli import DatasetArguments, load_dataset_argument, parse_recipe
from hf_distill.data import cache_teacher_logits

# isort: split
from datasets import load_from_disk
from transformers import AutoTokenizer
from trl import ModelConfig

RECIPES = ("qwen2.5-1.5b_from_qwen2.5-32b-cached.yaml",)
STAGES = ("cache", "train")


@dataclass
class OfflineArguments(DatasetArguments):
    """The teacher pass, under the names `hf-distill cache-logits` uses (one recipe drives the script and the CLI).
    The teacher's `from_pretrained` arguments are `teacher_model_init_kwargs`, a `DistillationConfig` field."""

    teacher: str | None = field(default=None, metadata={"help": "Hub id or path of the teacher (cache stage)."})
    tokenizer: str | None = field(
        default=None, metadata={"help": "Tokenizer to tokenize with (default: the student's, model_name_or_path)."}
    )
    logits_dir: str = field(default="teacher-logits", metadata={"help": "Folder of the cached top-k dataset."})
    top_k: int = field(default=64, metadata={"help": "Teacher entries kept per position."})
    batch_size: int = field(default=8, metadata={"help": "Rows per teacher forward while caching."})
    max_rows: int | None = field(default=None, metadata={"help": "Cache only the first N rows (a quick look)."})


DATACLASS_TYPES = (OfflineArguments, DistillationConfig, ModelConfig)


def cache(script_args: OfflineArguments, training_args: DistillationConfig, model_args: ModelConfig):
    """Score the train split with the teacher; rows are tokenized with the STUDENT's tokenizer (same vocabulary)."""
    if script_args.teacher is None:
        raise ValueError(
            "The cache stage needs the teacher: set `teacher` in the recipe or pass --teacher <id or path>."
        )
    return cache_teacher_logits(
        script_args.teacher,
        load_dataset_argument(script_args, script_args.dataset_train_split),
        tokenizer=AutoTokenizer.from_pretrained(script_args.tokenizer or model_args.model_name_or_path),
        output_dir=script_args.logits_dir,
        top_k=script_args.top_k,
        batch_size=script_args.batch_size,
        max_length=training_args.max_length,
        model_kwargs=training_args.teacher_model_init_kwargs,  # parsed from JSON by DistillationConfig
        max_rows=script_args.max_rows,
    )


def train(script_args: OfflineArguments, training_args: DistillationConfig, model_args: ModelConfig):
    """Train the student on the cached dataset: `teacher_model=None`, the cached columns are the teacher."""
    training_args.model_init_kwargs = {"dtype": model_args.dtype, **(training_args.model_init_kwargs or {})}
    trainer = DistillationTrainer(
        model=model_args.model_name_or_path,
        teacher_model=None,
        args=training_args,
        train_dataset=load_from_disk(script_args.logits_dir),
    )
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_model()
    trainer.create_model_card(dataset_name=script_args.dataset_name)
    return trainer


def main(argv: list[str] | None = None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in STAGES:
        raise SystemExit(f"usage: offline_logits.py {{{','.join(STAGES)}}} --config RECIPE.yaml [options]")
    parsed = parse_recipe(DATACLASS_TYPES, argv[1:], prog=f"offline_logits.py {argv[0]}")
    return (cache if argv[0] == "cache" else train)(*parsed)


if __name__ == "__main__":
    main()
