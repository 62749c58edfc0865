"""The quickstart's three trainings: the teacher (plain SFT, cached across runs), the distilled student
(`DistillationTrainer`) and the SFT student (`trl.SFTTrainer`, same data, initial weights, steps and learning rate)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from datasets import Dataset
from huggingface_hub import ModelCard, ModelCardData
from transformers import AutoModelForCausalLM, PreTrainedTokenizerBase
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from ..training.config import DistillationConfig
from ..training.trainer import DistillationTrainer
from .models import build_config, train_tokenizer
from .presets import QuickstartPreset

__all__ = [
    "TeacherInfo",
    "cache_root",
    "hf_home",
    "student_config",
    "train_sft_student",
    "train_distilled_student",
    "cached_teacher",
]

TEACHER_LICENSE = "apache-2.0"
_CACHE_VERSION = 1  # bump when the dataset generator or teacher recipe changes


def hf_home() -> Path:
    """The Hugging Face cache folder, read when called (as `huggingface_hub` defines it): `$HF_HOME`, else
    `$XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface`."""
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "huggingface"


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """`cache_dir`, else `$HF_DISTILL_CACHE`, else `hf_distill/` in the Hugging Face cache folder (`hf_home()`)."""
    root = cache_dir or os.environ.get("HF_DISTILL_CACHE") or hf_home() / "hf_distill"
    return Path(root).expanduser()


@dataclass
class TeacherInfo:
    """The quickstart teacher: its folder (weights, tokenizer, card), whether it came from the cache, and how long
    training it took (0 when cached)."""

    path: Path
    cache_hit: bool
    train_seconds: float


def _training_kwargs(preset: QuickstartPreset, steps: int, learning_rate: float, seed: int) -> dict:
    return dict(
        max_steps=steps,
        per_device_train_batch_size=preset.batch_size,
        learning_rate=learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=max(1, steps // 25),
        weight_decay=0.0,
        seed=seed,
        data_seed=seed,
        logging_steps=max(1, steps // 5),
        report_to="none",
        save_strategy="no",
        bf16=False,
        dataloader_num_workers=0,
        use_cpu=not torch.cuda.is_available(),
    )


class _BarOnlyProgress(ProgressCallback):
    """transformers' progress bar without its `{'loss': ...}` lines on stdout: the quickstart prints its own stages
    and table there; the logged values stay in `trainer.state.log_history` and the training-curves plot."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        return None


def _fit(trainer, output_dir: Path):
    """Train, then save the model (and, for `DistillationTrainer`, its provenance) to `output_dir`."""
    had_bar = any(isinstance(callback, ProgressCallback) for callback in trainer.callback_handler.callbacks)
    for printer in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(printer)
    if had_bar:
        trainer.add_callback(_BarOnlyProgress())
    trainer.train()
    trainer.save_model(str(output_dir))
    return trainer


def _new_model(config, seed: int):
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config)


def _teacher_card() -> ModelCard:
    data = ModelCardData(
        license=TEACHER_LICENSE,
        library_name="transformers",
        pipeline_tag="text-generation",
        tags=["hf-distill-quickstart"],
    )
    return ModelCard.from_template(
        data,
        template_str="---\n{{ card_data }}\n---\n\n# hf-distill quickstart teacher\n\nA small Llama-architecture "
        "model trained from scratch by `hf-distill quickstart` on its generated task dataset (cc0-1.0).\n",
    )


def cached_teacher(
    preset: QuickstartPreset, train: Dataset, *, seed: int, cache_dir: str | os.PathLike | None = None
) -> TeacherInfo:
    """The teacher for `preset` and `seed`: loaded from the cache when a previous run trained it, else trained with
    `trl.SFTTrainer` (tokenizer included) and moved into the cache in one rename, so an interrupted run leaves no
    half-written teacher behind."""
    rows = json.dumps(train.select_columns(["prompt", "completion"]).to_dict(), sort_keys=True)
    key = json.dumps(
        {
            "version": _CACHE_VERSION,
            "seed": seed,
            **preset.teacher_key(),
            "data_sha256": hashlib.sha256(rows.encode()).hexdigest(),
        },
        sort_keys=True,
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    final = cache_root(cache_dir) / "quickstart" / f"teacher-{digest}"
    if (final / "config.json").is_file() and (final / "model.safetensors").is_file():
        return TeacherInfo(final, cache_hit=True, train_seconds=0.0)
    staging = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    seconds = _train_teacher(preset, train, seed=seed, output_dir=staging)
    (staging / "quickstart_teacher.json").write_text(key + "\n")
    try:
        os.replace(staging, final)
    except OSError:  # another run finished the same teacher first: keep theirs
        shutil.rmtree(staging, ignore_errors=True)
    return TeacherInfo(final, cache_hit=False, train_seconds=seconds)


def _train_teacher(preset: QuickstartPreset, train: Dataset, *, seed: int, output_dir: Path) -> float:
    from trl import SFTConfig, SFTTrainer

    tokenizer = train_tokenizer((row["prompt"] + row["completion"] for row in train), vocab_size=preset.vocab_size)
    model = _new_model(build_config(preset.teacher, tokenizer), seed)
    args = SFTConfig(
        output_dir=str(output_dir),
        **_training_kwargs(preset, preset.teacher_steps, preset.teacher_learning_rate, seed),
    )
    trainer = _fit(SFTTrainer(model=model, args=args, train_dataset=train, processing_class=tokenizer), output_dir)
    _teacher_card().save(output_dir / "README.md")
    return float(trainer.state.log_history[-1].get("train_runtime", 0.0))


def student_config(preset: QuickstartPreset, tokenizer: PreTrainedTokenizerBase):
    return build_config(preset.student, tokenizer)


def train_distilled_student(
    preset: QuickstartPreset, train: Dataset, teacher: Path, tokenizer, *, seed: int, output_dir: Path,
    config_overrides: dict | None = None,
):
    """Logit distillation (forward KL to the teacher, `preset.alpha`) of a freshly initialised student; returns the
    trainer after saving the student (weights, tokenizer, provenance) to `output_dir`. `config_overrides` are other
    `DistillationConfig` fields (e.g. `{"lmbda": 0.5}` for on-policy batches; `benchmarks/on_policy.py`)."""
    args = DistillationConfig(
        output_dir=str(output_dir),
        divergence="forward_kl",
        alpha=preset.alpha,
        temperature=1.0,
        **_training_kwargs(preset, preset.student_steps, preset.student_learning_rate, seed),
        **(config_overrides or {}),
    )
    student = _new_model(student_config(preset, tokenizer), seed)
    trainer = DistillationTrainer(
        model=student, teacher_model=str(teacher), args=args, train_dataset=train, processing_class=tokenizer
    )
    return _fit(trainer, output_dir)


def train_sft_student(preset: QuickstartPreset, train: Dataset, tokenizer, *, seed: int, output_dir: Path):
    """The baseline: the same student, initial weights, data order, steps and learning rate, trained on the dataset's
    single sampled answers only (`trl.SFTTrainer`, cross-entropy)."""
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(
        output_dir=str(output_dir),
        **_training_kwargs(preset, preset.student_steps, preset.student_learning_rate, seed),
    )
    student = _new_model(student_config(preset, tokenizer), seed)
    return _fit(SFTTrainer(model=student, args=args, train_dataset=train, processing_class=tokenizer), output_dir)
