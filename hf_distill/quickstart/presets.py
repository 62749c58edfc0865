"""Sizes and steps of the quickstart. `standard` is what the README's numbers come from; `smoke` runs the same code
path in seconds for tests (its numbers mean nothing)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .models import ModelShape

__all__ = ["PRESETS", "QuickstartPreset"]


@dataclass(frozen=True)
class QuickstartPreset:
    """Everything the quickstart's results depend on besides the seed.

    Args:
        num_train, num_test (`int`): rows of the train and held-out splits.
        vocab_size (`int`): BPE vocabulary trained on the train split.
        teacher, student ([`ModelShape`]): model widths and depths.
        teacher_steps, student_steps (`int`): optimizer steps; both students get `student_steps`.
        batch_size (`int`): rows per step, for the teacher and both students.
        teacher_learning_rate, student_learning_rate (`float`): peak learning rates (cosine decay, short warm-up).
        alpha (`float`): weight of the distillation term for the distilled student (the SFT student has none).
        max_new_tokens (`int`): generated tokens per held-out prompt (answers are one or two tokens).
        latency_batch_sizes (`tuple[int, ...]`), num_latency_runs (`int`): the latency measurement.
    """

    num_train: int
    num_test: int
    vocab_size: int
    teacher: ModelShape
    student: ModelShape
    teacher_steps: int
    student_steps: int
    batch_size: int
    teacher_learning_rate: float
    student_learning_rate: float
    alpha: float
    max_new_tokens: int
    latency_batch_sizes: tuple[int, ...]
    num_latency_runs: int

    def teacher_key(self) -> dict:
        """The fields the teacher depends on (its cache key)."""
        fields = ("num_train", "vocab_size", "teacher", "teacher_steps", "batch_size", "teacher_learning_rate")
        return {name: asdict(self)[name] for name in fields}


PRESETS: dict[str, QuickstartPreset] = {
    "standard": QuickstartPreset(
        num_train=6000,
        num_test=300,
        vocab_size=400,
        teacher=ModelShape(hidden_size=128, num_layers=4),
        student=ModelShape(hidden_size=64, num_layers=2),
        teacher_steps=800,
        student_steps=500,
        batch_size=32,
        teacher_learning_rate=2e-3,
        student_learning_rate=3e-3,
        alpha=1.0,
        max_new_tokens=4,
        latency_batch_sizes=(1, 8),
        num_latency_runs=5,
    ),
    "smoke": QuickstartPreset(
        num_train=200,
        num_test=16,
        vocab_size=300,
        teacher=ModelShape(hidden_size=32, num_layers=1),
        student=ModelShape(hidden_size=16, num_layers=1),
        teacher_steps=4,
        student_steps=3,
        batch_size=8,
        teacher_learning_rate=2e-3,
        student_learning_rate=3e-3,
        alpha=1.0,
        max_new_tokens=3,
        latency_batch_sizes=(1,),
        num_latency_runs=1,
    ),
}
