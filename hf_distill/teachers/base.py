"""What a teacher source gives the trainer, and `TeacherSource`, the base class of every source with every hook the
trainer, the benchmark and the provenance read."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from ..errors import HfDistillError
from ..fingerprints import TeacherProvenance
from ..heads import OutputHead
from ..losses.fused import fused_kd_terms
from ..losses.sparse import sparse_kd_terms
from ..losses.terms import KDTerms, LossSettings, dense_kd_terms

if TYPE_CHECKING:
    from ..training.trainer import DistillationTrainer

__all__ = ["TeacherHidden", "TeacherSetupError", "TeacherSource", "TeacherTopK", "TeacherTargets", "TeacherTypeError"]


class TeacherSetupError(HfDistillError, ValueError):
    """No teacher was given, or the one given cannot teach (e.g. a PEFT model with trainable adapters)."""


class TeacherTypeError(TeacherSetupError, TypeError):
    """`teacher_model` is neither a Hub id, a local path nor a model."""


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


class TeacherSource:
    """Where the teacher's next-token distributions come from during training: the base class of every source.

    A new source is one file in `hf_distill/teachers/` with a subclass that implements `setup` and `targets` and sets
    the hooks below that apply to it, plus one line in `TEACHER_SOURCES` (`hf_distill/teachers/__init__.py`). The
    trainer, the benchmark and the provenance read these hooks and nothing else of a source.
    """

    #: dataset columns the source reads from each batch; the trainer keeps them through column pruning.
    dataset_columns: tuple[str, ...] = ()
    #: per-token columns the collator pads for the source, with their padding values (none for a live teacher).
    collator_columns: Mapping[str, float | int] = MappingProxyType({})
    #: columns of their own length per row (a cross-tokenizer teacher's token ids), with their padding values.
    collator_sequence_columns: Mapping[str, int] = MappingProxyType({})
    #: a `Dataset.with_transform` function turning stored columns into `collator_columns`; None: nothing to decode.
    decode_batch: Callable[[dict], dict] | None = None
    #: the teacher model run beside the student (None for a cached teacher); the benchmark compares against it.
    model: nn.Module | None = None
    #: the teacher's tokenizer when known; the vocabulary check and the benchmark's fidelity use it.
    teacher_tokenizer: PreTrainedTokenizerBase | None = None
    #: what the user gave as the teacher (Hub id, local path or model), recorded in the student's provenance.
    source: str | os.PathLike | nn.Module | None = None
    #: the model that wrote cached targets (name and revision), recorded in the provenance when `source` is None.
    teacher_provenance: TeacherProvenance | None = None
    #: whether the source can score token sequences it has not seen before (sampled completions, `lmbda` > 0):
    #: a live or served teacher can, a cache of stored targets cannot.
    scores_new_sequences: bool = True

    def setup(self, trainer: DistillationTrainer) -> None:
        """Called once the trainer (and its accelerator) exists: place models, check the vocabulary."""
        raise NotImplementedError(f"{type(self).__name__} must implement setup(trainer)")

    def prepare_dataset(self, dataset, processing_class, args, dataset_name: str):
        """Rows as the source needs them, before TRL's preparation (tokenizing, labels, truncation) runs: by default
        unchanged; a cross-tokenizer teacher tokenizes each row for both models here."""
        return dataset

    def targets(self, inputs: dict[str, torch.Tensor], position_mask: torch.Tensor) -> TeacherTargets:
        """Teacher targets at the positions where `position_mask` `(batch, seq - 1)` is True, in row-major order."""
        raise NotImplementedError(f"{type(self).__name__} must implement targets(inputs, position_mask)")
