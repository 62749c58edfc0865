"""Distillation losses between models with different tokenizers, at positions matched by text.

Both models have read the same text at a matched position (see [`hf_distill.alignment`]); their next-token
distributions live over different vocabularies. Two ways to compare them:

- `"uld"`, Universal Logit Distillation (Boizard et al., 2024): both probability vectors sorted in decreasing order,
  the shorter padded with zeros to the longer's length, and the closed-form Wasserstein-1 distance between them,
  `sum_i |sort(p_s)_i - sort(p_t)_i|`. It needs no correspondence between the vocabularies (and so ignores which
  token has which probability).
- `"span"`: the tokens both vocabularies share (the same bytes, [`hf_distill.alignment.shared_vocabulary`]) are
  compared one to one with the configured divergence, each distribution restricted to the shared tokens plus one
  bucket holding the rest of its mass (so both still sum to 1), and the unshared remainder of each side is compared
  with ULD: the hybrid matched/unmatched loss of TRL's GOLD trainer, which uses JSD on the raw shared probabilities
  and weights the two parts by vocabulary overlap; here the configured divergence, a bucket, weight 1 each. When one
  vocabulary lies inside the other (a byte-level BPE against a SentencePiece one with byte fallback), that side's
  bucket is always empty and a KL against it infinite: both sides are then renormalised over the shared tokens
  instead (the other side's remainder still enters ULD). With the same tokenizer on both sides every token is
  shared, nothing is left over, and the loss is exactly the ordinary one.

Both run over chunks of positions, recomputed in the backward pass (activation checkpointing): only one chunk's
`(chunk, vocab)` logits of each model exist at a time, never both models' full logits.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from ..heads import OutputHead
from .dense import log_softmax_fp32, reduce_per_token
from .divergences import LossInputError, per_token_divergence
from .fused_chunks import choose_chunk_size
from .terms import KDTerms, LossSettings, cross_entropy_per_token

__all__ = [
    "CROSS_TOKENIZER_METHODS",
    "VocabularyPairs",
    "cross_tokenizer_divergence",
    "cross_tokenizer_kd_terms",
    "cross_tokenizer_loss",
    "uld_distance",
]

#: `DistillationConfig.cross_tokenizer` values.
CROSS_TOKENIZER_METHODS = ("uld", "span")
#: Log-probability standing for an empty bucket: exp() is 0 in float32, and no -inf enters a subtraction.
_LOG_EMPTY = -1.0e4
#: `(chunk, vocab)` float32 buffers one chunk keeps alive (logits, log-probs, sorted copies and their indices).
_BUFFERS_PER_CHUNK = 8


@dataclass(frozen=True)
class VocabularyPairs:
    """Token ids both vocabularies share, paired: `student_ids[i]` and `teacher_ids[i]` stand for the same bytes.

    Args:
        student_ids, teacher_ids (`torch.Tensor` of shape `(shared,)`): the paired ids (long).
        student_vocab, teacher_vocab (`int`): the vocabulary sizes the logits cover.
    """

    student_ids: torch.Tensor
    teacher_ids: torch.Tensor
    student_vocab: int
    teacher_vocab: int

    @classmethod
    def from_lists(cls, student_ids, teacher_ids, *, student_vocab: int, teacher_vocab: int) -> VocabularyPairs:
        student = torch.as_tensor(list(student_ids), dtype=torch.long)
        teacher = torch.as_tensor(list(teacher_ids), dtype=torch.long)
        keep = (student < student_vocab) & (teacher < teacher_vocab)  # ids beyond the rows a loss counts
        return cls(student[keep], teacher[keep], student_vocab, teacher_vocab)

    def to(self, device) -> VocabularyPairs:
        return VocabularyPairs(self.student_ids.to(device), self.teacher_ids.to(device), self.student_vocab,
                               self.teacher_vocab)

    def unmatched(self, side: str) -> torch.Tensor:
        """Bool mask `(vocab,)` of the `side`'s ("student" or "teacher") ids that pair with nothing."""
        ids, size = (self.student_ids, self.student_vocab) if side == "student" else (self.teacher_ids,
                                                                                        self.teacher_vocab)
        mask = torch.ones(size, dtype=torch.bool, device=ids.device)
        mask[ids] = False
        return mask

    def teacher_to_student(self) -> torch.Tensor:
        """`(teacher_vocab,)` student id of each teacher id, -1 where it pairs with none."""
        mapping = torch.full((self.teacher_vocab,), -1, dtype=torch.long, device=self.teacher_ids.device)
        mapping[self.teacher_ids] = self.student_ids
        return mapping


def uld_distance(student_probs: torch.Tensor, teacher_probs: torch.Tensor) -> torch.Tensor:
    """ULD's closed-form Wasserstein-1 distance per position: `(n, a)` and `(n, b)` probabilities sorted in decreasing
    order, the shorter padded with zeros, `sum |sorted_s - sorted_t|`. Returns `(n,)`."""
    width = max(student_probs.shape[-1], teacher_probs.shape[-1])
    student_sorted = F.pad(student_probs.sort(-1, descending=True).values, (0, width - student_probs.shape[-1]))
    teacher_sorted = F.pad(teacher_probs.sort(-1, descending=True).values, (0, width - teacher_probs.shape[-1]))
    return (student_sorted - teacher_sorted).abs().sum(-1)


def _with_bucket(log_probs: torch.Tensor, paired: torch.Tensor, unmatched: torch.Tensor) -> torch.Tensor:
    """Log-probabilities of the paired ids, then one bucket with the log of the rest of the mass: `(n, shared + 1)`."""
    bucket = torch.logsumexp(log_probs[:, unmatched], dim=-1).clamp(min=_LOG_EMPTY)
    return torch.cat([log_probs[:, paired], bucket.unsqueeze(-1)], dim=-1)


def _renormalised(log_probs: torch.Tensor, paired: torch.Tensor) -> torch.Tensor:
    shared = log_probs[:, paired]
    return shared - torch.logsumexp(shared, dim=-1, keepdim=True)


def _span_divergence(student_log_probs, teacher_log_probs, pairs: VocabularyPairs, divergence_kwargs) -> torch.Tensor:
    student_unmatched, teacher_unmatched = pairs.unmatched("student"), pairs.unmatched("teacher")
    student_rest, teacher_rest = bool(student_unmatched.any()), bool(teacher_unmatched.any())
    if not student_rest and not teacher_rest:  # one vocabulary, maybe reordered: exactly the ordinary loss
        return per_token_divergence(student_log_probs[:, pairs.student_ids], teacher_log_probs[:, pairs.teacher_ids],
                                    **divergence_kwargs)
    if student_rest and teacher_rest:
        student_matched = _with_bucket(student_log_probs, pairs.student_ids, student_unmatched)
        teacher_matched = _with_bucket(teacher_log_probs, pairs.teacher_ids, teacher_unmatched)
    else:  # one vocabulary inside the other: its bucket is always empty, so both compare over the shared tokens
        student_matched = _renormalised(student_log_probs, pairs.student_ids)
        teacher_matched = _renormalised(teacher_log_probs, pairs.teacher_ids)
    matched = per_token_divergence(student_matched, teacher_matched, **divergence_kwargs)
    remainder = uld_distance(student_log_probs[:, student_unmatched].exp(),
                             teacher_log_probs[:, teacher_unmatched].exp())
    return matched + remainder


def cross_tokenizer_divergence(
    student_log_probs: torch.Tensor,
    teacher_log_probs: torch.Tensor,
    *,
    method: str,
    pairs: VocabularyPairs | None = None,
    divergence: str = "forward_kl",
    beta: float = 0.5,
    skew: float = 0.1,
) -> torch.Tensor:
    """Per-position loss `(n,)` between `(n, student_vocab)` and `(n, teacher_vocab)` log-probabilities (see the
    module doc); `pairs` is needed by `"span"`, `divergence`, `beta`, `skew` are those of the matched part."""
    if method == "uld":
        return uld_distance(student_log_probs.exp(), teacher_log_probs.exp())
    if method == "span":
        if pairs is None:
            raise LossInputError("`cross_tokenizer='span'` needs `pairs` (the shared vocabulary, "
                                 "`VocabularyPairs.from_lists(*hf_distill.alignment.shared_vocabulary(...))`).")
        return _span_divergence(student_log_probs, teacher_log_probs, pairs,
                                dict(divergence=divergence, beta=beta, skew=skew))
    raise LossInputError(
        f"Unknown cross-tokenizer method {method!r}: choose one of {', '.join(CROSS_TOKENIZER_METHODS)} "
        "(`DistillationConfig.cross_tokenizer`, CLI --cross_tokenizer)."
    )


def cross_tokenizer_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    method: str = "uld",
    pairs: VocabularyPairs | None = None,
    divergence: str = "forward_kl",
    beta: float = 0.5,
    skew: float = 0.1,
    temperature: float = 1.0,
    reduction: str = "mean",
) -> torch.Tensor:
    """[`cross_tokenizer_divergence`] on logits `(..., student_vocab)` and `(..., teacher_vocab)` at matched
    positions, at `temperature`, reduced like [`distillation_loss`] (float32).

    Example:

    ```python
    >>> import torch
    >>> from hf_distill.losses.cross_tokenizer import cross_tokenizer_loss
    >>> cross_tokenizer_loss(torch.randn(4, 50), torch.randn(4, 70), method="uld").shape
    torch.Size([])
    ```
    """
    if student_logits.shape[:-1] != teacher_logits.shape[:-1]:
        raise LossInputError(
            f"Student logits {tuple(student_logits.shape)} and teacher logits {tuple(teacher_logits.shape)} cover "
            "different positions: pass both models' logits at the matched positions only."
        )
    student = log_softmax_fp32(student_logits, temperature).reshape(-1, student_logits.shape[-1])
    teacher = log_softmax_fp32(teacher_logits, temperature).reshape(-1, teacher_logits.shape[-1])
    per_position = cross_tokenizer_divergence(student, teacher, method=method, pairs=pairs, divergence=divergence,
                                              beta=beta, skew=skew).reshape(student_logits.shape[:-1])
    return reduce_per_token(per_position, mask, reduction)


# -- the trainer's terms, chunk by chunk -----------------------------------------------------------------------


def _maybe_checkpoint(function, *tensors):
    """`function(*tensors)`, recomputed in the backward pass when a gradient is wanted (one chunk alive at a time)."""
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors if t is not None):
        return checkpoint(function, *tensors, use_reentrant=False)
    return function(*tensors)


def _cross_entropy_sums(student_hidden, student_head, labels, settings, chunk_size):
    """Cross-entropy sum (differentiable) and label-correct count over every trained position, chunk by chunk."""
    ce_sum = student_hidden.new_zeros((), dtype=torch.float32)
    correct = torch.zeros((), dtype=torch.long, device=student_hidden.device)

    def chunk_ce(hidden, chunk_labels):
        logits = student_head.logits(hidden)
        ce = cross_entropy_per_token(log_softmax_fp32(logits), chunk_labels, ce_type=settings.ce_type).sum()
        return ce, (logits.detach().argmax(-1) == chunk_labels).sum()

    for start in range(0, student_hidden.shape[0], chunk_size):
        rows = slice(start, start + chunk_size)
        ce, hits = _maybe_checkpoint(chunk_ce, student_hidden[rows], labels[rows])
        ce_sum, correct = ce_sum + ce, correct + hits
    return ce_sum, correct


def cross_tokenizer_kd_terms(
    student_hidden: torch.Tensor,
    student_head: OutputHead,
    labels: torch.Tensor,
    teacher_hidden: torch.Tensor,
    teacher_head: OutputHead,
    student_index: torch.Tensor,
    settings: LossSettings,
    *,
    method: str,
    pairs: VocabularyPairs | None,
) -> KDTerms:
    """[`KDTerms`] of a cross-tokenizer batch: cross-entropy over every trained position, the cross-tokenizer loss
    over the matched ones only.

    Args:
        student_hidden (`torch.Tensor` of shape `(tokens, student_hidden)`): student final hidden states at the
            trained positions.
        labels (`torch.Tensor` of shape `(tokens,)`): next-token ids there.
        teacher_hidden (`torch.Tensor` of shape `(matched, teacher_hidden)`): teacher final hidden states at the
            matched positions.
        student_index (`torch.Tensor` of shape `(matched,)`): the row of `student_hidden` each matched position is.
        settings ([`LossSettings`]): divergence (of the `"span"` matched part), temperature, `ce_type`.
        method (`str`): `"uld"` or `"span"`; pairs ([`VocabularyPairs`]): the shared vocabulary (for `"span"` and
            for the agreement count).
    """
    vocab = student_head.vocab_size + teacher_head.vocab_size
    chunk_size = settings.chunk_size or choose_chunk_size(max(student_hidden.shape[0], 1), vocab,
                                                          num_buffers=_BUFFERS_PER_CHUNK)
    ce_sum, correct = _cross_entropy_sums(student_hidden, student_head, labels, settings, chunk_size)
    divergence = {key: value for key, value in settings.divergence_kwargs().items() if key != "temperature"}
    teacher_to_student = pairs.teacher_to_student() if pairs is not None else None

    def chunk_kd(hidden, chunk_teacher_hidden):
        student_logits = student_head.logits(hidden)
        with torch.no_grad():
            teacher_logits = teacher_head.logits(chunk_teacher_hidden)
        per_position = cross_tokenizer_divergence(
            log_softmax_fp32(student_logits, settings.temperature), log_softmax_fp32(teacher_logits,
                                                                                     settings.temperature),
            method=method, pairs=pairs, **divergence,
        )
        agree = torch.zeros((), dtype=torch.long, device=hidden.device)
        if teacher_to_student is not None:
            agree = (teacher_to_student[teacher_logits.argmax(-1)] == student_logits.detach().argmax(-1)).sum()
        return per_position.sum(), agree

    kd_sum = student_hidden.new_zeros((), dtype=torch.float32)
    agree = torch.zeros((), dtype=torch.long, device=student_hidden.device)
    for start in range(0, student_index.shape[0], chunk_size):
        rows = slice(start, start + chunk_size)
        kd, hits = _maybe_checkpoint(chunk_kd, student_hidden[student_index[rows]], teacher_hidden[rows].detach())
        kd_sum, agree = kd_sum + kd, agree + hits
    return KDTerms(kd_sum=kd_sum, ce_sum=ce_sum, num_teacher_agree=agree, num_label_correct=correct,
                   num_positions=labels.numel(), num_kd_positions=student_index.shape[0])
