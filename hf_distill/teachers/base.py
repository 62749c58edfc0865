"""What a teacher source gives the trainer, and the protocol every source implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import torch

from ..heads import OutputHead
from ..losses.fused import fused_kd_terms
from ..losses.sparse import sparse_kd_terms
from ..losses.terms import KDTerms, LossSettings, dense_kd_terms

if TYPE_CHECKING:
    from ..training.trainer import DistillationTrainer

__all__ = ["TeacherHidden", "TeacherSource", "TeacherTopK", "TeacherTargets"]


@dataclass
class TeacherHidden:
    """A live teacher's final hidden states at the counted positions, `(tokens, hidden)`, and its output head."""

    hidden: torch.Tensor
    head: OutputHead

    def kd_terms(
        self, student_hidden: torch.Tensor, student_head: OutputHead, labels: torch.Tensor, settings: LossSettings
    ) -> KDTerms:
        if settings.use_fused:
            return fused_kd_terms(student_hidden, self.hidden, student_head, self.head, labels, settings)
        return dense_kd_terms(
            student_hidden, self.hidden, student_head, self.head, labels,
            **settings.divergence_kwargs(), ce_type=settings.ce_type,
        )


@dataclass
class TeacherTopK:
    """A cached teacher's top-k next-token ids and log-probabilities at the counted positions, `(tokens, k)` each,
    normalised over the teacher's full vocabulary (so their mass may sum to less than 1), and optionally the log of
    the mass outside the top-k, `(tokens,)` (the loss's tail bucket; derived from `log_probs` when `None`)."""

    token_ids: torch.Tensor
    log_probs: torch.Tensor
    tail_log_probs: torch.Tensor | None = None

    def kd_terms(
        self, student_hidden: torch.Tensor, student_head: OutputHead, labels: torch.Tensor, settings: LossSettings
    ) -> KDTerms:
        return sparse_kd_terms(
            student_hidden, student_head, self.token_ids, self.log_probs, labels,
            teacher_tail_log_probs=self.tail_log_probs, **settings.divergence_kwargs(), ce_type=settings.ce_type,
        )


TeacherTargets = TeacherHidden | TeacherTopK


@runtime_checkable
class TeacherSource(Protocol):
    """Where the teacher's next-token distributions come from during training.

    A new source is one file in `hf_distill/teachers/` implementing this protocol, plus one line in
    `TEACHER_SOURCES` (`hf_distill/teachers/__init__.py`).
    """

    #: dataset columns the source reads from each batch; the trainer keeps them through column pruning.
    dataset_columns: tuple[str, ...]

    def setup(self, trainer: DistillationTrainer) -> None:
        """Called once the trainer (and its accelerator) exists: place models, check the vocabulary."""

    def targets(self, inputs: dict[str, torch.Tensor], position_mask: torch.Tensor) -> TeacherTargets:
        """Teacher targets at the positions where `position_mask` `(batch, seq - 1)` is True, in row-major order."""
