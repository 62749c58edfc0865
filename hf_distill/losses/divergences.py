"""Per-token divergences between two next-token distributions, given as log-probabilities.

Every function takes `student_log_probs` and `teacher_log_probs` of shape `(..., vocab)` (float32, already
log-softmaxed at the chosen temperature) and returns the divergence per position, shape `(...)`. The table
`DIVERGENCES` maps the `divergence` name of [`DistillationConfig`] to its function; add a divergence by writing a
function here and adding one line to the table.

Conventions follow TRL where TRL has the same loss: `beta` in `jsd` weighs the teacher in the mixture exactly as in
TRL's GKD (`generalized_jsd_loss`), including its end points (`beta=0` is forward KL, `beta=1` reverse KL).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..errors import HfDistillError

__all__ = ["DIVERGENCES", "DivergenceFn", "LossInputError", "per_token_divergence"]


class LossInputError(HfDistillError, ValueError):
    """A loss function was called with arguments it cannot use (an unknown divergence or reduction, shapes that
    differ); the message names the argument and the fix."""

DivergenceFn = Callable[..., torch.Tensor]


def _kl(p_log: torch.Tensor, q_log: torch.Tensor) -> torch.Tensor:
    """KL(p || q) summed over the last axis; positions where p is exactly 0 contribute 0 (also when q is 0)."""
    p = p_log.exp()
    return torch.where(p > 0, p * (p_log - q_log), torch.zeros_like(p)).sum(-1)


def _log_mixture(a_log: torch.Tensor, b_log: torch.Tensor, weight_a: float) -> torch.Tensor:
    """log(weight_a * a + (1 - weight_a) * b), computed stably from log-probabilities."""
    return torch.logaddexp(a_log + math.log(weight_a), b_log + math.log1p(-weight_a))


def forward_kl(student_log_probs, teacher_log_probs, **_) -> torch.Tensor:
    """KL(p_teacher || p_student): mode-covering; the classic Hinton et al. distillation loss."""
    return _kl(teacher_log_probs, student_log_probs)


def reverse_kl(student_log_probs, teacher_log_probs, **_) -> torch.Tensor:
    """KL(p_student || p_teacher): mode-seeking (MiniLLM)."""
    return _kl(student_log_probs, teacher_log_probs)


def generalized_jsd(student_log_probs, teacher_log_probs, *, beta: float = 0.5, **_) -> torch.Tensor:
    """Generalized JSD of GKD: with m = (1 - beta) p_student + beta p_teacher,
    beta KL(p_teacher || m) + (1 - beta) KL(p_student || m). As in TRL, beta=0 is forward KL and beta=1 reverse KL
    (the literal formula is 0 at both ends)."""
    if beta == 0:
        return forward_kl(student_log_probs, teacher_log_probs)
    if beta == 1:
        return reverse_kl(student_log_probs, teacher_log_probs)
    mixture = _log_mixture(teacher_log_probs, student_log_probs, beta)
    return beta * _kl(teacher_log_probs, mixture) + (1 - beta) * _kl(student_log_probs, mixture)


def skew_forward_kl(student_log_probs, teacher_log_probs, *, skew: float = 0.1, **_) -> torch.Tensor:
    """Skew KL of DistiLLM: KL(p_teacher || skew p_teacher + (1 - skew) p_student)."""
    if skew == 0:
        return forward_kl(student_log_probs, teacher_log_probs)
    return _kl(teacher_log_probs, _log_mixture(teacher_log_probs, student_log_probs, skew))


def skew_reverse_kl(student_log_probs, teacher_log_probs, *, skew: float = 0.1, **_) -> torch.Tensor:
    """Skew reverse KL of DistiLLM: KL(p_student || skew p_student + (1 - skew) p_teacher)."""
    if skew == 0:
        return reverse_kl(student_log_probs, teacher_log_probs)
    return _kl(student_log_probs, _log_mixture(student_log_probs, teacher_log_probs, skew))


def total_variation(student_log_probs, teacher_log_probs, **_) -> torch.Tensor:
    """Total variation distance: 0.5 * sum |p_student - p_teacher|."""
    return 0.5 * (student_log_probs.exp() - teacher_log_probs.exp()).abs().sum(-1)


DIVERGENCES: dict[str, DivergenceFn] = {
    "forward_kl": forward_kl,
    "reverse_kl": reverse_kl,
    "jsd": generalized_jsd,
    "skew_forward_kl": skew_forward_kl,
    "skew_reverse_kl": skew_reverse_kl,
    "tvd": total_variation,
}


def per_token_divergence(
    student_log_probs: torch.Tensor,
    teacher_log_probs: torch.Tensor,
    *,
    divergence: str = "forward_kl",
    beta: float = 0.5,
    skew: float = 0.1,
) -> torch.Tensor:
    """Look up `divergence` in [`DIVERGENCES`] and apply it; raises `ValueError` naming the valid choices."""
    try:
        fn = DIVERGENCES[divergence]
    except KeyError:
        raise LossInputError(
            f"Unknown divergence {divergence!r}. Choose one of: {', '.join(DIVERGENCES)} "
            "(`DistillationConfig.divergence`, CLI `--divergence`)."
        ) from None
    return fn(student_log_probs, teacher_log_probs, beta=beta, skew=skew)
