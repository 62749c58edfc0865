"""Distillation against a cached teacher that kept only its top-k next-token log-probabilities.

The teacher's distribution is known on its k most likely tokens plus one number: the mass outside them. The loss
compares **k + 1 buckets**: the teacher's top-k tokens one by one, and an explicit *tail bucket* holding the rest of
the vocabulary. The student is normalised over its full vocabulary, so its tail bucket is the mass it puts on every
token outside the teacher's top-k. This coarsening keeps the loss a true divergence between two distributions
(renormalising both to the top-k would let the student put any mass outside the support for free), it is a lower
bound of the full-vocabulary divergence for every divergence in [`DIVERGENCES`] (all are f-divergences, so the
data-processing inequality applies), and it equals the dense loss when k is the vocabulary size.

Temperature: the cache stores temperature-1 log-probabilities and the tail's mass at another temperature is not
recoverable from them, so `temperature` must be 1.
"""

from __future__ import annotations

import torch

from ..errors import HfDistillError
from ..heads import OutputHead
from .dense import log_softmax_fp32
from .divergences import per_token_divergence
from .terms import KDTerms, cross_entropy_per_token

__all__ = ["SparseTeacherError", "sparse_kd_terms", "tail_log_probs_from_topk"]

# A log-probability standing for "no mass" that keeps every difference finite (-inf - -inf is NaN in the backward).
_NO_MASS = -1e30


class SparseTeacherError(HfDistillError, ValueError):
    """Cached top-k teacher targets that the sparse loss cannot use as given."""


def tail_log_probs_from_topk(teacher_log_probs: torch.Tensor) -> torch.Tensor:
    """Log of the mass outside the top-k, `(tokens,)`, from top-k log-probabilities over the full vocabulary
    `(tokens, k)`. Computed in float64; prefer the exact tail stored by `cache_teacher_logits` when you have it
    (for a confident teacher `1 - sum(top-k)` loses digits)."""
    top_mass = torch.logsumexp(teacher_log_probs.double(), dim=-1)
    return torch.log((-torch.expm1(top_mass)).clamp(min=0.0)).float()


def sparse_kd_terms(
    student_hidden: torch.Tensor,
    student_head: OutputHead,
    teacher_token_ids: torch.Tensor,
    teacher_log_probs: torch.Tensor,
    labels: torch.Tensor,
    *,
    teacher_tail_log_probs: torch.Tensor | None = None,
    divergence: str = "forward_kl",
    beta: float = 0.5,
    skew: float = 0.1,
    temperature: float = 1.0,
    ce_type: str = "nll",
) -> KDTerms:
    """[`KDTerms`] against a cached top-k teacher, with an explicit tail bucket.

    Args:
        student_hidden (`torch.Tensor` of shape `(tokens, hidden)`): student final hidden states.
        student_head ([`OutputHead`]): the student's projection; the student is normalised over its
            `vocab_size` tokens.
        teacher_token_ids (`torch.Tensor` of shape `(tokens, k)`): the teacher's top-k token ids (any order,
            distinct within a position).
        teacher_log_probs (`torch.Tensor` of shape `(tokens, k)`): their log-probabilities over the teacher's full
            vocabulary at temperature 1.
        labels (`torch.Tensor` of shape `(tokens,)`): next-token ids, for the cross-entropy term.
        teacher_tail_log_probs (`torch.Tensor` of shape `(tokens,)`, *optional*): log of the teacher's mass outside
            its top-k; computed from `teacher_log_probs` when `None`.
        divergence, beta, skew, ce_type: as in [`DistillationConfig`]; every divergence is supported.
        temperature (`float`, *optional*, defaults to `1.0`): must be 1 (see the module docstring).

    Example:

    ```python
    >>> import torch
    >>> from torch import nn
    >>> from hf_distill.heads import OutputHead
    >>> head = OutputHead(nn.Linear(8, 32, bias=False), nn.Linear(8, 32).weight, None, 1.0, None, 32)
    >>> teacher = torch.log_softmax(torch.randn(5, 32), -1).topk(4, -1)
    >>> labels = torch.zeros(5, dtype=torch.long)
    >>> terms = sparse_kd_terms(torch.randn(5, 8), head, teacher.indices, teacher.values, labels)
    >>> terms.num_positions
    5
    ```
    """
    _check_targets(teacher_token_ids, teacher_log_probs, temperature, student_head.vocab_size)
    teacher_log_probs = teacher_log_probs.float()
    if teacher_tail_log_probs is None:
        teacher_tail_log_probs = tail_log_probs_from_topk(teacher_log_probs)
    student_logits = student_head.logits(student_hidden)
    teacher_ids = teacher_token_ids.long()
    if divergence == "forward_kl" and ce_type == "nll":
        kd_sum, ce_sum = _ForwardKLWithTail.apply(
            student_logits, teacher_ids, teacher_log_probs, teacher_tail_log_probs.float(), labels
        )
    else:
        kd_sum, ce_sum = _bucket_terms(
            student_logits, teacher_ids, teacher_log_probs, teacher_tail_log_probs.float(), labels,
            divergence=divergence, beta=beta, skew=skew, ce_type=ce_type,
        )
    student_top1 = student_logits.detach().argmax(-1)
    teacher_top1 = teacher_ids.gather(-1, teacher_log_probs.argmax(-1, keepdim=True)).squeeze(-1)
    return KDTerms(
        kd_sum=kd_sum,
        ce_sum=ce_sum,
        num_teacher_agree=(student_top1 == teacher_top1).sum(),
        num_label_correct=(student_top1 == labels).sum(),
        num_positions=labels.numel(),
    )


def _check_targets(token_ids: torch.Tensor, log_probs: torch.Tensor, temperature: float, vocab_size: int) -> None:
    if temperature != 1.0:
        raise SparseTeacherError(
            f"`temperature` (--temperature) is {temperature}, but a cached top-k teacher holds temperature-1 "
            "log-probabilities, and the mass of its tail at another temperature cannot be recovered from them. "
            "Set temperature=1.0, or distil with a live teacher."
        )
    if token_ids.shape != log_probs.shape or token_ids.ndim != 2:
        raise SparseTeacherError(
            f"Teacher top-k ids {tuple(token_ids.shape)} and log-probabilities {tuple(log_probs.shape)} must both be "
            "(tokens, k)."
        )
    if token_ids.numel() and int(token_ids.max()) >= vocab_size:
        raise SparseTeacherError(
            f"The cached teacher names token id {int(token_ids.max())}, but the student's vocabulary has "
            f"{vocab_size} tokens. The cache was made with another tokenizer: re-create it with the student's "
            "tokenizer (`cache_teacher_logits(..., tokenizer=student_tokenizer)`)."
        )


def _bucket_log_probs(log_probs: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
    """`(tokens, k + 1)`: the log-probabilities at `token_ids`, then the log of the mass everywhere else."""
    top = log_probs.gather(-1, token_ids)
    tail = torch.logsumexp(log_probs.scatter(-1, token_ids, _NO_MASS), dim=-1, keepdim=True)
    return torch.cat([top, tail], dim=-1)


def _bucket_terms(student_logits, teacher_ids, teacher_log_probs, teacher_tail, labels, *, ce_type, **kwargs):
    """Any divergence on the k + 1 buckets, through autograd."""
    student_log_probs = log_softmax_fp32(student_logits)
    student_buckets = _bucket_log_probs(student_log_probs, teacher_ids)
    teacher_buckets = torch.cat([teacher_log_probs, teacher_tail.unsqueeze(-1)], dim=-1).clamp(min=_NO_MASS)
    kd = per_token_divergence(student_buckets, teacher_buckets, **kwargs)
    ce = cross_entropy_per_token(student_log_probs, labels, ce_type=ce_type)
    return kd.sum(), ce.sum()


class _ForwardKLWithTail(torch.autograd.Function):
    """Forward KL on the k + 1 buckets plus SFT's cross-entropy, from the student's logits, with a fused backward.

    The gradient has a closed form: with q the student's softmax, p the teacher's top-k probabilities, t the
    teacher's tail and q_T the student's, d KL / d logit_j = m q_j - p_j inside the top-k and q_j (m - t / q_T)
    outside it (m = sum(p) + t, 1 up to rounding). Only q is kept for the backward: one `(tokens, vocab)` tensor,
    like SFT's cross-entropy.
    """

    @staticmethod
    def forward(ctx, logits, teacher_ids, teacher_log_probs, teacher_tail, labels):
        logits = logits.float()
        lse = torch.logsumexp(logits, dim=-1)
        probs = torch.exp(logits - lse.unsqueeze(-1))
        student_top = probs.gather(-1, teacher_ids)
        # Tail mass summed directly over the complement (no 1 - sum cancellation for a confident student).
        probs.scatter_(-1, teacher_ids, 0.0)
        student_tail = probs.sum(-1)
        probs.scatter_(-1, teacher_ids, student_top)

        teacher_top = teacher_log_probs.exp()
        tail_mass = teacher_tail.exp()
        student_top_log = logits.gather(-1, teacher_ids) - lse.unsqueeze(-1)
        student_tail_log = torch.log(student_tail.clamp(min=torch.finfo(torch.float32).tiny))
        top_terms = torch.where(teacher_top > 0, teacher_top * (teacher_log_probs - student_top_log), 0.0).sum(-1)
        tail_terms = torch.where(tail_mass > 0, tail_mass * (teacher_tail - student_tail_log), 0.0)
        ce = lse - logits.gather(-1, labels.unsqueeze(-1)).squeeze(-1)

        ctx.save_for_backward(probs, teacher_ids, teacher_top, student_top, tail_mass / student_tail.clamp(
            min=torch.finfo(torch.float32).tiny), teacher_top.sum(-1) + tail_mass, labels)
        return (top_terms + tail_terms).sum(), ce.sum()

    @staticmethod
    def backward(ctx, grad_kd, grad_ce):
        probs, teacher_ids, teacher_top, student_top, tail_ratio, teacher_mass, labels = ctx.saved_tensors
        row_scale = grad_kd * (teacher_mass - tail_ratio) + grad_ce
        grad = probs.mul_(row_scale.unsqueeze(-1))  # probs is not needed after this: reuse its memory
        grad.scatter_add_(-1, teacher_ids, grad_kd * (student_top * tail_ratio.unsqueeze(-1) - teacher_top))
        grad.scatter_add_(-1, labels.unsqueeze(-1), (-grad_ce).expand(labels.shape[0], 1).to(grad.dtype))
        return grad, None, None, None, None
