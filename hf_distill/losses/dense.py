"""Distillation loss on full logits: the reference form that every memory-lean form must equal."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .divergences import LossInputError, per_token_divergence

__all__ = ["distillation_loss", "log_softmax_fp32", "reduce_per_token"]


def log_softmax_fp32(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """`log_softmax(logits / temperature)` in float32, whatever the input dtype."""
    logits = logits.float()
    if temperature != 1.0:
        logits = logits / temperature
    return F.log_softmax(logits, dim=-1)


def reduce_per_token(per_token: torch.Tensor, mask: torch.Tensor | None, reduction: str) -> torch.Tensor:
    """Apply `mask` (1 = counted) and reduce: "mean" over counted positions, "sum", or "none" (masked are 0)."""
    if mask is not None:
        per_token = per_token * mask.to(per_token.dtype)
    if reduction == "none":
        return per_token
    if reduction == "sum":
        return per_token.sum()
    if reduction == "mean":
        count = mask.sum() if mask is not None else torch.tensor(per_token.numel(), device=per_token.device)
        # A batch without counted positions reduces to 0 rather than 0 / 0.
        return per_token.sum() / count.clamp(min=1).to(per_token.dtype)
    raise LossInputError(f"Unknown reduction {reduction!r}: use 'mean', 'sum' or 'none'.")


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    divergence: str = "forward_kl",
    beta: float = 0.5,
    temperature: float = 1.0,
    skew: float = 0.1,
    reduction: str = "mean",
) -> torch.Tensor:
    """Divergence between the student's and the teacher's next-token distributions, averaged over positions.

    Computed in float32 whatever the input dtype. `temperature` divides both logits; as in TRL, the loss is NOT
    multiplied by `temperature**2` (scale `alpha` or the learning rate instead if you want Hinton's gradient scale).

    Args:
        student_logits (`torch.Tensor` of shape `(..., vocab)`):
            Student logits; gradients flow through them.
        teacher_logits (`torch.Tensor` of shape `(..., vocab)`):
            Teacher logits over the same vocabulary.
        mask (`torch.Tensor` of shape `(...)`, *optional*):
            1 where the position counts, 0 where it does not. `None` counts every position.
        divergence (`str`, *optional*, defaults to `"forward_kl"`):
            One of `forward_kl`, `reverse_kl`, `jsd`, `skew_forward_kl`, `skew_reverse_kl`, `tvd`.
        beta (`float`, *optional*, defaults to `0.5`):
            Teacher weight of the `jsd` mixture, as in TRL's GKD.
        temperature (`float`, *optional*, defaults to `1.0`):
            Softmax temperature applied to both models.
        skew (`float`, *optional*, defaults to `0.1`):
            Mixing weight of the skew divergences (DistiLLM).
        reduction (`str`, *optional*, defaults to `"mean"`):
            `"mean"` over counted positions, `"sum"`, or `"none"` for the per-position values.

    Example:

    ```python
    >>> import torch
    >>> from hf_distill.losses import distillation_loss
    >>> student, teacher = torch.randn(2, 5, 32), torch.randn(2, 5, 32)
    >>> distillation_loss(student, teacher, divergence="jsd", beta=0.5).shape
    torch.Size([])
    ```
    """
    if student_logits.shape != teacher_logits.shape:
        raise LossInputError(
            f"Student logits {tuple(student_logits.shape)} and teacher logits {tuple(teacher_logits.shape)} differ "
            "in shape. Both must cover the same positions and vocabulary; align a padded teacher vocabulary by "
            "slicing `teacher_logits[..., :student_vocab_size]`."
        )
    if mask is not None and mask.shape != student_logits.shape[:-1]:
        raise LossInputError(f"`mask` has shape {tuple(mask.shape)}; expected {tuple(student_logits.shape[:-1])}.")
    per_token = per_token_divergence(
        log_softmax_fp32(student_logits, temperature),
        log_softmax_fp32(teacher_logits, temperature),
        divergence=divergence,
        beta=beta,
        skew=skew,
    )
    return reduce_per_token(per_token, mask, reduction)
