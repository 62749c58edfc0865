"""The per-batch sums the trainer turns into its loss and metrics, computed by one of the loss forms.

The trainer hands every form the student's final hidden states at the positions that count, the next-token labels
there, and a teacher target; each form returns [`KDTerms`]. The dense form here projects both models to full
logits; it is the reference the memory-lean forms are tested against.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..heads import OutputHead
from .dense import log_softmax_fp32
from .divergences import per_token_divergence

__all__ = ["KDTerms", "LossSettings", "cross_entropy_per_token", "dense_kd_terms"]


@dataclass(frozen=True)
class LossSettings:
    """The loss fields of [`DistillationConfig`] that every loss form reads."""

    divergence: str = "forward_kl"
    beta: float = 0.5
    skew: float = 0.1
    temperature: float = 1.0
    ce_type: str = "nll"
    alpha: float = 0.9  # weight of KD in alpha * KD + (1 - alpha) * CE; the fused form stores that gradient
    use_fused: bool = True
    chunk_size: int | None = None

    @classmethod
    def from_config(cls, args) -> LossSettings:
        return cls(**{name: getattr(args, field) for name, field in _CONFIG_FIELDS.items()})

    def apply_to(self, args) -> None:
        """Write these settings into `args` (a [`DistillationConfig`]), the field `from_config` reads them from."""
        for name, field in _CONFIG_FIELDS.items():
            setattr(args, field, getattr(self, name))

    def divergence_kwargs(self) -> dict:
        return dict(divergence=self.divergence, beta=self.beta, skew=self.skew, temperature=self.temperature)


# `LossSettings` field -> `DistillationConfig` field.
_CONFIG_FIELDS = {
    "divergence": "divergence", "beta": "beta", "skew": "skew", "temperature": "temperature", "ce_type": "loss_type",
    "alpha": "alpha", "use_fused": "use_fused_kd_loss", "chunk_size": "kd_chunk_size",
}


@dataclass
class KDTerms:
    """Sums over the counted positions of one micro-batch.

    Args:
        kd_sum (`torch.Tensor`, scalar): sum of the per-position divergence (differentiable).
        ce_sum (`torch.Tensor`, scalar): sum of the per-position cross-entropy on the labels (differentiable).
        num_teacher_agree (`torch.Tensor`, scalar): positions where the student's argmax equals the teacher's.
        num_label_correct (`torch.Tensor`, scalar): positions where the student's argmax equals the label.
        num_positions (`int`): counted positions.
        num_kd_positions (`int`, *optional*): the counted positions that have a teacher prediction, when fewer than
            `num_positions` (across tokenizers, only positions matched by text); `num_teacher_agree` is out of these.
    """

    kd_sum: torch.Tensor
    ce_sum: torch.Tensor
    num_teacher_agree: torch.Tensor
    num_label_correct: torch.Tensor
    num_positions: int
    num_kd_positions: int | None = None


def cross_entropy_per_token(
    student_log_probs: torch.Tensor, labels: torch.Tensor, *, ce_type: str = "nll"
) -> torch.Tensor:
    """SFT's per-token loss from float32 log-probabilities `(tokens, vocab)`: `"nll"` is -log p(label); `"dft"`
    weighs it by the detached p(label) (Dynamic Fine-Tuning), as `SFTConfig.loss_type` defines them."""
    label_log_probs = student_log_probs.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    per_token = -label_log_probs
    if ce_type == "dft":
        per_token = per_token * label_log_probs.detach().exp()
    return per_token


def dense_kd_terms(
    student_hidden: torch.Tensor,
    teacher_hidden: torch.Tensor,
    student_head: OutputHead,
    teacher_head: OutputHead,
    labels: torch.Tensor,
    *,
    divergence: str = "forward_kl",
    beta: float = 0.5,
    skew: float = 0.1,
    temperature: float = 1.0,
    ce_type: str = "nll",
) -> KDTerms:
    """[`KDTerms`] from full logits of both models.

    Args:
        student_hidden (`torch.Tensor` of shape `(tokens, student_hidden)`): student final hidden states.
        teacher_hidden (`torch.Tensor` of shape `(tokens, teacher_hidden)`): teacher final hidden states.
        student_head, teacher_head ([`OutputHead`]): the projections; their `vocab_size` must agree.
        labels (`torch.Tensor` of shape `(tokens,)`): next-token ids at those positions.
    """
    student_logits = student_head.logits(student_hidden)
    with torch.no_grad():
        teacher_logits = teacher_head.logits(teacher_hidden)
    kd = per_token_divergence(
        log_softmax_fp32(student_logits, temperature),
        log_softmax_fp32(teacher_logits, temperature),
        divergence=divergence,
        beta=beta,
        skew=skew,
    )
    ce = cross_entropy_per_token(log_softmax_fp32(student_logits), labels, ce_type=ce_type)
    student_top1 = student_logits.detach().argmax(-1)
    return KDTerms(
        kd_sum=kd.sum(),
        ce_sum=ce.sum(),
        num_teacher_agree=(student_top1 == teacher_logits.argmax(-1)).sum(),
        num_label_correct=(student_top1 == labels).sum(),
        num_positions=labels.numel(),
    )
