"""Cross-tokenizer losses against a cached teacher that kept only its top-k log-probabilities.

At a matched position the cached teacher gives its k most likely tokens (ids of *its* vocabulary of `V_t` tokens,
log-probabilities over that full vocabulary) and the log of the mass outside them, the tail `T`. The student's
distribution is known in full. What each method computes from that (with `k = V_t` both are exactly the dense losses
of [`hf_distill.losses.cross_tokenizer`]):

- `"uld"`: the teacher's vector is completed by spreading `T` evenly over the `V_t - k` tokens outside its top-k
  (each gets `T / (V_t - k)`), then ULD runs as in the dense loss (both vectors sorted in decreasing order, the
  shorter padded with zeros, `sum |sorted_s - sorted_t|`). Approximated: the teacher's tail tokens all get their
  mean instead of their own values. Sorting is non-expansive in L1, so the result differs from the dense ULD by at
  most `sum_tail |p_i - T / (V_t - k)| <= 2 T` per position.
- `"span"`: `S` = the tokens of the teacher's top-k at that position that the student's vocabulary shares (same
  bytes, [`hf_distill.alignment.shared_vocabulary`]). The matched part is the configured divergence between
  `[p(S) one by one, 1 - p(S)]` of each side (the teacher's from its top-k and tail, the student's from its full
  softmax); when exactly one vocabulary has no unshared token, both sides are renormalised over `S` instead, as in
  the dense loss. The remainder is ULD between the student's unshared probabilities and the teacher's: its unshared
  top-k entries plus, for each of its unshared tokens outside the top-k, `T / (V_t - k)` (the same completion as
  `"uld"`). Approximated: shared tokens outside the teacher's top-k are not compared one by one but fall into both
  buckets (a coarsening of the dense matched part, so for every divergence here it is no larger), and the
  remainder's tail as in `"uld"`.
"""

from __future__ import annotations

import torch

from ..heads import OutputHead
from .cross_tokenizer import (
    _BUFFERS_PER_CHUNK,
    _LOG_EMPTY,
    VocabularyPairs,
    _cross_entropy_sums,
    _maybe_checkpoint,
    uld_distance,
)
from .dense import log_softmax_fp32
from .divergences import LossInputError, per_token_divergence
from .fused_chunks import choose_chunk_size
from .terms import KDTerms, LossSettings

__all__ = ["completed_teacher_probs", "cross_tokenizer_topk_divergence", "cross_tokenizer_topk_kd_terms"]


def completed_teacher_probs(teacher_ids, teacher_log_probs, teacher_tail, teacher_vocab: int) -> torch.Tensor:
    """`(n, teacher_vocab)` probabilities: the top-k at their ids, the tail mass spread evenly over the others."""
    num_rest = teacher_vocab - teacher_ids.shape[-1]
    fill = teacher_tail.float().exp() / max(num_rest, 1)
    dense = fill.unsqueeze(-1).expand(teacher_ids.shape[0], teacher_vocab).clone()
    return dense.scatter(-1, teacher_ids.long(), teacher_log_probs.float().exp())


def _matched_part(student_log_probs, teacher_ids, teacher_log_probs, teacher_tail, pairs: VocabularyPairs):
    """`(n, k + 1)` log-probabilities of each side: the shared top-k tokens (others empty), then the bucket; or,
    when exactly one vocabulary lies inside the other, `(n, k)` renormalised over the shared top-k tokens."""
    to_student = pairs.teacher_to_student()[teacher_ids.long()]
    shared = to_student >= 0
    student_top = torch.where(shared, student_log_probs.gather(-1, to_student.clamp(min=0)), _LOG_EMPTY)
    teacher_top = torch.where(shared, teacher_log_probs.float(), _LOG_EMPTY)
    student_rest, teacher_rest = bool(pairs.unmatched("student").any()), bool(pairs.unmatched("teacher").any())
    if student_rest != teacher_rest:
        return (student_top - torch.logsumexp(student_top, -1, keepdim=True),
                teacher_top - torch.logsumexp(teacher_top, -1, keepdim=True))
    in_s = torch.zeros_like(student_log_probs).scatter_add(-1, to_student.clamp(min=0), shared.float()) > 0
    student_bucket = torch.logsumexp(student_log_probs.masked_fill(in_s, float("-inf")), -1, keepdim=True)
    teacher_outside = torch.cat([teacher_log_probs.float().masked_fill(shared, float("-inf")),
                                 teacher_tail.float().unsqueeze(-1)], -1)
    teacher_bucket = torch.logsumexp(teacher_outside, -1, keepdim=True)
    return (torch.cat([student_top, student_bucket.clamp(min=_LOG_EMPTY)], -1),
            torch.cat([teacher_top, teacher_bucket.clamp(min=_LOG_EMPTY)], -1))


def cross_tokenizer_topk_divergence(
    student_log_probs: torch.Tensor,
    teacher_ids: torch.Tensor,
    teacher_log_probs: torch.Tensor,
    teacher_tail: torch.Tensor,
    *,
    method: str,
    teacher_vocab: int,
    pairs: VocabularyPairs | None = None,
    divergence: str = "forward_kl",
    beta: float = 0.5,
    skew: float = 0.1,
) -> torch.Tensor:
    """Per-position loss `(n,)` between `(n, student_vocab)` student log-probabilities and a teacher's top-k
    `(n, k)` ids and log-probabilities with its tail log-mass `(n,)` (see the module doc)."""
    teacher_probs = completed_teacher_probs(teacher_ids, teacher_log_probs, teacher_tail, teacher_vocab)
    if method == "uld":
        return uld_distance(student_log_probs.exp(), teacher_probs)
    if method != "span":
        raise LossInputError(f"Unknown cross-tokenizer method {method!r}: choose 'uld' or 'span'.")
    if pairs is None:
        raise LossInputError("`cross_tokenizer='span'` needs `pairs` (the shared vocabulary): give the teacher's "
                             "tokenizer (`teacher_processing_class=`).")
    student_matched, teacher_matched = _matched_part(student_log_probs, teacher_ids, teacher_log_probs,
                                                     teacher_tail, pairs)
    matched = per_token_divergence(student_matched, teacher_matched, divergence=divergence, beta=beta, skew=skew)
    remainder = uld_distance(student_log_probs[:, pairs.unmatched("student")].exp(),
                             teacher_probs[:, pairs.unmatched("teacher")])
    return matched + remainder


def cross_tokenizer_topk_kd_terms(
    student_hidden: torch.Tensor,
    student_head: OutputHead,
    labels: torch.Tensor,
    teacher_ids: torch.Tensor,
    teacher_log_probs: torch.Tensor,
    teacher_tail: torch.Tensor,
    student_index: torch.Tensor,
    settings: LossSettings,
    *,
    method: str,
    teacher_vocab: int,
    pairs: VocabularyPairs | None,
) -> KDTerms:
    """[`KDTerms`] of a batch against a cached cross-tokenizer teacher: cross-entropy over every trained position,
    the top-k cross-tokenizer loss over the matched ones (`student_index` `(matched,)`: their rows in
    `student_hidden`; `teacher_*`: `(matched, k)` and `(matched,)`), chunk by chunk like the live loss."""
    vocab = student_head.vocab_size + teacher_vocab
    chunk_size = settings.chunk_size or choose_chunk_size(max(student_hidden.shape[0], 1), vocab,
                                                          num_buffers=_BUFFERS_PER_CHUNK)
    ce_sum, correct = _cross_entropy_sums(student_hidden, student_head, labels, settings, chunk_size)
    divergence = {key: value for key, value in settings.divergence_kwargs().items() if key != "temperature"}
    teacher_to_student = pairs.teacher_to_student() if pairs is not None else None

    def chunk_kd(hidden, ids, log_probs, tail):
        student_logits = student_head.logits(hidden)
        per_position = cross_tokenizer_topk_divergence(
            log_softmax_fp32(student_logits), ids, log_probs, tail, method=method, teacher_vocab=teacher_vocab,
            pairs=pairs, **divergence,
        )
        agree = torch.zeros((), dtype=torch.long, device=hidden.device)
        if teacher_to_student is not None:
            teacher_top1 = ids.long().gather(-1, log_probs.argmax(-1, keepdim=True)).squeeze(-1)
            agree = (teacher_to_student[teacher_top1] == student_logits.detach().argmax(-1)).sum()
        return per_position.sum(), agree

    kd_sum = student_hidden.new_zeros((), dtype=torch.float32)
    agree = torch.zeros((), dtype=torch.long, device=student_hidden.device)
    for start in range(0, student_index.shape[0], chunk_size):
        rows = slice(start, start + chunk_size)
        kd, hits = _maybe_checkpoint(chunk_kd, student_hidden[student_index[rows]], teacher_ids[rows],
                                     teacher_log_probs[rows], teacher_tail[rows])
        kd_sum, agree = kd_sum + kd, agree + hits
    return KDTerms(kd_sum=kd_sum, ce_sum=ce_sum, num_teacher_agree=agree, num_label_correct=correct,
                   num_positions=labels.numel())
