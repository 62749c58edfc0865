"""Distillation loss from hidden states, one token chunk at a time: never both models' full `(tokens, vocab)` logits.

For each chunk of counted tokens both models are projected over the whole vocabulary in float32; the per-token
divergence AND its gradient with respect to the chunk's student logits are computed right there, and that gradient is
turned into the student's hidden-state, weight and bias gradients at once. The backward pass only scales the stored
gradients, so the whole loss costs the four unavoidable matmuls (two projections, two gradient products) plus a few
elementwise passes over one chunk, with no recomputation. Memory is one chunk's logits (a handful of
`(chunk, vocab)` float32 buffers, sized from a budget) plus the gradients the student needs anyway.

`forward_kl`, `reverse_kl` and `jsd` have closed-form gradients ([`hf_distill.losses.fused_chunks`]); every other
divergence of [`DIVERGENCES`] (and any added later) runs through autograd on the chunk's logits, elementwise work only.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from transformers.utils import logging

from ..errors import HfDistillError
from ..heads import OutputHead
from .divergences import DIVERGENCES
from .fused_chunks import (
    CLOSED_FORM,
    DEFAULT_CHUNK_MEMORY_BYTES,
    Projection,
    Workspace,
    autograd_divergence_,
    choose_chunk_size,
    head_is_fusable,
    log_softmax_,
    matmul_dtype,
    matmul_into,
)
from .terms import KDTerms, LossSettings, dense_kd_terms

logger = logging.get_logger(__name__)

__all__ = [
    "DEFAULT_CHUNK_MEMORY_BYTES",
    "FusedLossError",
    "FusedLossReuseError",
    "choose_chunk_size",
    "distillation_loss_from_hidden",
    "fused_kd_terms",
]


class FusedLossError(HfDistillError, ValueError):
    """Invalid input to the fused distillation loss; the message names the argument, its value and the fix."""


class FusedLossReuseError(FusedLossError, RuntimeError):
    """The fused loss was differentiated a second time: it computes its gradients once, in the forward pass."""


# -- the autograd function --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Spec:
    """Everything about one fused call that is not a differentiable tensor. No gradient reaches the teacher."""

    student_head: OutputHead  # scale, soft-cap and vocabulary; its tensors are the autograd inputs
    teacher_head: OutputHead
    divergence: str = "forward_kl"
    beta: float = 0.5
    skew: float = 0.1
    temperature: float = 1.0
    teacher_via_module: bool = False  # quantized or wrapped teacher head: project with its own forward
    chunk_size: int | None = None
    ce_type: str | None = None  # None: no cross-entropy term
    kd_weight: float = 1.0  # the stored gradient is that of kd_weight * kd_sum + ce_weight * ce_sum
    ce_weight: float = 0.0
    compute_metrics: bool = False
    # `needs_input_grad` ignores `torch.no_grad()`: record the grad mode at the call so evaluation skips gradients
    grad_enabled: bool = dataclasses.field(default_factory=torch.is_grad_enabled)

    @property
    def vocab_size(self) -> int:
        return self.student_head.vocab_size

    def num_buffers(self, need_grad: bool) -> int:
        """Chunk-sized float32 buffers one chunk uses (see the divergence functions)."""
        count = {"forward_kl": 3, "reverse_kl": 2, "jsd": 5 if 0.0 < self.beta < 1.0 else 3}.get(self.divergence, 2)
        count += need_grad and self.student_head.softcap is not None  # tanh of the soft-cap
        count += self.ce_type is not None and self.temperature != 1.0  # softmax at temperature 1
        # autograd keeps about eight chunk-sized temporaries alive
        return count + (0 if self.divergence in CLOSED_FORM else 8)


@dataclass
class _Gradients:
    """Float32 gradients of `kd_weight * kd_sum + ce_weight * ce_sum`, filled chunk by chunk in the forward pass."""

    hidden: torch.Tensor | None  # (tokens, hidden)
    weight: torch.Tensor | None  # (rows, hidden): rows beyond the vocabulary stay 0
    bias: torch.Tensor | None  # (rows,)

    @classmethod
    def allocate(cls, needs, hidden, weight, bias, vocab_size: int) -> _Gradients:
        """Uninitialised where the chunks write: every chunk its hidden rows, the first one the weight rows."""
        grads = cls(None, None, None)
        if needs[0]:
            grads.hidden = torch.empty(hidden.shape, device=hidden.device, dtype=torch.float32)
        if needs[1]:
            grads.weight = torch.empty(weight.shape, device=weight.device, dtype=torch.float32)
            # padded rows get no gradient; with no tokens at all, no chunk writes any row
            grads.weight[vocab_size if hidden.shape[0] else 0 :].zero_()
        if needs[2]:
            grads.bias = torch.zeros(bias.shape, device=bias.device, dtype=torch.float32)
        return grads

    @property
    def needed(self) -> bool:
        return self.hidden is not None or self.weight is not None or self.bias is not None


def _student_logit_grad(s, factor, probs, labels, label_log_probs, tanh, spec, ce_grad):
    """Turn `s` (holding `factor`-scaled d KD / d z) into d objective / d raw projection, returning it and a scalar
    still to apply. The objective is kd_weight * KD + ce_weight * CE; z = logits / temperature."""
    kd_coef = spec.kd_weight * factor / spec.temperature
    alpha = spec.student_head.logit_scale
    if ce_grad:
        # d CE / d logits = softmax - onehot(label), weighed per row by the detached p(label) for DFT
        weight = label_log_probs.exp() if spec.ce_type == "dft" else torch.ones_like(label_log_probs)
        weight = weight.mul_(spec.ce_weight).unsqueeze(1)
        if spec.kd_weight == 0.0:
            torch.mul(probs, weight, out=s)
        else:
            s.mul_(kd_coef).addcmul_(probs, weight)
        s.scatter_add_(1, labels.unsqueeze(1), -weight)
    else:
        alpha *= kd_coef
    if tanh is not None:  # d softcap * tanh(y / softcap) / dy = 1 - tanh^2
        s.mul_(tanh.mul_(tanh).neg_().add_(1.0))
    return s, alpha


def _backprop_chunk(grad, alpha, hidden, row_weights, student: Projection, grads: _Gradients, rows: slice):
    """Accumulate the chunk's hidden, weight and bias gradients from `alpha * grad` `(n, vocab)`: two matmuls."""
    if grads.hidden is not None:
        out = grads.hidden[rows]
        matmul_into(out, grad, student.weight, alpha=alpha)
        if row_weights is not None:
            out.mul_(row_weights.unsqueeze(1))
    vocab = student.vocab_size
    if grads.weight is not None:
        scaled = hidden if row_weights is None else hidden * row_weights.unsqueeze(1).to(hidden.dtype)
        matmul_into(grads.weight[:vocab], grad.t(), scaled, accumulate=rows.start > 0, alpha=alpha)
    if grads.bias is not None:
        column = grad.sum(0) if row_weights is None else torch.mv(grad.t(), row_weights)
        grads.bias[:vocab].add_(column, alpha=alpha)


def _chunk_step(hidden, teacher_hidden, labels, row_weights, rows, student, teacher, spec, workspace, grads):
    """One chunk: project both models, divergence, cross-entropy, agreement counts and gradients.
    Returns `[kd_sum, ce_sum, num_teacher_agree, num_label_correct]` of the chunk."""
    n = hidden.shape[0]
    s, t = workspace("student", n), workspace("teacher", n)
    tanh = workspace("tanh", n) if grads.needed and student.softcap is not None else None
    student.project_(hidden, s, tanh_out=tanh)
    teacher.project_(teacher_hidden, t)
    totals = torch.zeros(4, device=s.device)
    if spec.compute_metrics:
        top = s.argmax(-1)
        totals[2], totals[3] = (top == t.argmax(-1)).sum(), (top == labels).sum()
    label_log_probs = probs = None
    if spec.ce_type is not None and spec.temperature != 1.0:  # cross-entropy is at temperature 1
        probs = log_softmax_(workspace("ce_probs", n).copy_(s))
        label_log_probs = probs.gather(1, labels.unsqueeze(1)).squeeze(1)
        probs.exp_()
    if spec.temperature != 1.0:
        s.mul_(1.0 / spec.temperature)
        t.mul_(1.0 / spec.temperature)
    log_softmax_(s)
    log_softmax_(t)
    if spec.ce_type is not None and spec.temperature == 1.0:
        label_log_probs = s.gather(1, labels.unsqueeze(1)).squeeze(1)
    divergence = CLOSED_FORM.get(spec.divergence, autograd_divergence_)
    per_token, factor, grad, student_probs = divergence(s, t, spec, workspace)
    probs = student_probs if probs is None else probs
    totals[0] = per_token.sum() if row_weights is None else per_token @ row_weights
    if label_log_probs is not None:
        ce = -label_log_probs if spec.ce_type == "nll" else -label_log_probs * label_log_probs.exp()
        totals[1] = ce.sum() if row_weights is None else ce @ row_weights
    if grads.needed:
        ce_grad = spec.ce_type is not None and spec.ce_weight != 0.0
        grad, alpha = _student_logit_grad(grad, factor, probs, labels, label_log_probs, tanh, spec, ce_grad)
        _backprop_chunk(grad, alpha, hidden, row_weights, student, grads, rows)
    return totals


class _FusedDistillation(torch.autograd.Function):
    """`(kd_sum, ce_sum, num_teacher_agree, num_label_correct)` from hidden states, chunk by chunk; the gradient of
    `kd_weight * kd_sum + ce_weight * ce_sum` is computed in the forward pass and only scaled in the backward."""

    @staticmethod
    def forward(ctx, student_hidden, student_weight, student_bias, teacher_hidden, labels, row_weights, spec):
        ctx.set_materialize_grads(False)
        grads = _Gradients.allocate(
            [need and spec.grad_enabled for need in ctx.needs_input_grad[:3]],
            student_hidden, student_weight, student_bias, spec.vocab_size,
        )
        student_dtype, teacher_dtype = matmul_dtype(student_weight), matmul_dtype(spec.teacher_head.weight)
        num_tokens = student_hidden.shape[0]
        chunk_size = spec.chunk_size or choose_chunk_size(
            num_tokens, spec.vocab_size, num_buffers=spec.num_buffers(grads.needed)
        )
        totals = torch.zeros(4, device=student_hidden.device)
        with torch.autocast(student_hidden.device.type, enabled=False):
            student = Projection.from_head(
                spec.student_head, student_weight, student_bias, matmul_dtype=student_dtype
            )
            teacher = Projection.from_head(
                spec.teacher_head, matmul_dtype=teacher_dtype, via_module=spec.teacher_via_module
            )
            workspace = Workspace(min(chunk_size, num_tokens), spec.vocab_size, student_hidden.device)
            for start in range(0, num_tokens, chunk_size):
                rows = slice(start, min(start + chunk_size, num_tokens))
                totals += _chunk_step(
                    student_hidden[rows].to(student.dtype),
                    teacher_hidden[rows] if spec.teacher_via_module else teacher_hidden[rows].to(teacher.dtype),
                    None if labels is None else labels[rows],
                    None if row_weights is None else row_weights[rows].float(),
                    rows, student, teacher, spec, workspace, grads,
                )
        ctx.grads, ctx.spec = grads, spec
        ctx.dtypes = (student_hidden.dtype, student_weight.dtype, None if student_bias is None else student_bias.dtype)
        agree, correct = totals[2].long(), totals[3].long()
        ctx.mark_non_differentiable(agree, correct)
        return totals[0], totals[1], agree, correct

    @staticmethod
    def backward(ctx, grad_kd, grad_ce, *_):
        grads: _Gradients | None = ctx.grads
        if grads is None:
            raise FusedLossReuseError(
                "The fused distillation loss was differentiated twice: it computes its gradients once, in the "
                "forward pass. Recompute the loss for every backward pass (or use `use_fused_kd_loss=False`)."
            )
        ctx.grads = None  # the stored gradients are scaled in place below
        scale = _objective_scale(ctx.spec, grad_kd, grad_ce)
        out = []
        for grad, dtype in zip((grads.hidden, grads.weight, grads.bias), ctx.dtypes, strict=True):
            out.append(None if grad is None else grad.mul_(scale).to(dtype))
        return (*out, None, None, None, None)


def _objective_scale(spec: _Spec, grad_kd, grad_ce) -> torch.Tensor:
    """The factor lambda with (grad_kd, grad_ce) = lambda (kd_weight, ce_weight): the stored gradient times lambda is
    the true one. Any other combination of the two sums cannot be served from the stored gradient."""
    reference = grad_kd if grad_kd is not None else grad_ce
    zero = torch.zeros((), device=reference.device)
    grad_kd = zero if grad_kd is None else grad_kd.float()
    grad_ce = zero if grad_ce is None else grad_ce.float()
    scale = grad_kd / spec.kd_weight if spec.kd_weight != 0.0 else grad_ce / spec.ce_weight
    mismatch = (grad_kd - scale * spec.kd_weight).abs() + (grad_ce - scale * spec.ce_weight).abs()
    if mismatch > 1e-5 * (grad_kd.abs() + grad_ce.abs()):
        raise FusedLossError(
            f"The fused loss stored the gradient of {spec.kd_weight:g} * kd_sum + {spec.ce_weight:g} * ce_sum "
            f"(`LossSettings.alpha`), but the loss differentiated weighs them {grad_kd.item():g} : "
            f"{grad_ce.item():g}. "
            "Combine the terms as `alpha * kd_sum + (1 - alpha) * ce_sum` (any overall scale is fine), build the "
            "`LossSettings` with the alpha you use, or set `use_fused_kd_loss=False`."
        )
    return scale


# -- public API -----------------------------------------------------------------------------------------------------


def _check_inputs(student_hidden, teacher_hidden, student_weight, teacher_weight, mask, student_bias, teacher_bias,
                  *, divergence, beta, skew, temperature, chunk_size) -> None:
    """Every problem with the arguments of [`distillation_loss_from_hidden`], raised before any projection."""
    problems = []
    if divergence not in DIVERGENCES:
        problems.append(f"`divergence` is {divergence!r}; choose one of: {', '.join(DIVERGENCES)}.")
    if not 0.0 <= beta <= 1.0:
        problems.append(f"`beta` is {beta}; it must be in [0, 1] (0.5 is the symmetric JSD).")
    if not 0.0 <= skew < 1.0:
        problems.append(f"`skew` is {skew}; it must be in [0, 1).")
    if not temperature > 0.0:
        problems.append(f"`temperature` is {temperature}; it must be > 0.")
    if chunk_size is not None and chunk_size < 1:
        problems.append(f"`chunk_size` is {chunk_size}; it must be >= 1, or None to size chunks from memory.")
    for name, weight, hidden in (("student", student_weight, student_hidden), ("teacher", teacher_weight,
                                                                                  teacher_hidden)):
        if weight.dim() != 2 or not weight.is_floating_point():
            problems.append(
                f"`{name}_weight` must be a floating `(vocab, hidden)` lm_head weight, got {weight.dtype} of shape "
                f"{tuple(weight.shape)}; for a quantized head use the dense loss on `lm_head(hidden)`."
            )
        elif hidden.shape[-1] != weight.shape[1]:
            problems.append(
                f"`{name}_hidden` has width {hidden.shape[-1]} but `{name}_weight` {tuple(weight.shape)} expects "
                f"{weight.shape[1]}: pass the final hidden states of the same model as the weight."
            )
    if student_hidden.shape[:-1] != teacher_hidden.shape[:-1]:
        problems.append(
            f"`student_hidden` {tuple(student_hidden.shape)} and `teacher_hidden` {tuple(teacher_hidden.shape)} "
            "cover different positions; both must be `(tokens, hidden)` or `(batch, seq, hidden)` over the same "
            "tokens."
        )
    if teacher_weight.dim() == 2 and student_weight.dim() == 2 and teacher_weight.shape[0] < student_weight.shape[0]:
        problems.append(
            f"The teacher's vocabulary ({teacher_weight.shape[0]} rows) is smaller than the student's "
            f"({student_weight.shape[0]}); pass `student_weight[:{teacher_weight.shape[0]}]` if the extra student "
            "rows are padding, otherwise the models do not share a tokenizer."
        )
    for name, bias, weight in (("student", student_bias, student_weight), ("teacher", teacher_bias, teacher_weight)):
        if bias is not None and tuple(bias.shape) != tuple(weight.shape[:1]):
            problems.append(f"`{name}_bias` has shape {tuple(bias.shape)}; expected {tuple(weight.shape[:1])}.")
    if mask is not None and mask.shape != student_hidden.shape[:-1]:
        problems.append(f"`mask` has shape {tuple(mask.shape)}; expected {tuple(student_hidden.shape[:-1])}.")
    if problems:
        listed = "\n".join(f"- {problem}" for problem in problems)
        raise FusedLossError(f"Invalid input to distillation_loss_from_hidden:\n{listed}")


def distillation_loss_from_hidden(
    student_hidden: torch.Tensor,
    teacher_hidden: torch.Tensor,
    student_weight: torch.Tensor,
    teacher_weight: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    divergence: str = "forward_kl",
    beta: float = 0.5,
    temperature: float = 1.0,
    skew: float = 0.1,
    student_bias: torch.Tensor | None = None,
    teacher_bias: torch.Tensor | None = None,
    student_logit_scale: float = 1.0,
    teacher_logit_scale: float = 1.0,
    student_softcap: float | None = None,
    teacher_softcap: float | None = None,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """[`distillation_loss`] of the two models' logits, computed from their final hidden states and `lm_head` weights
    without ever holding the full `(tokens, vocab)` logits: same value, gradients to `student_hidden`,
    `student_weight` and `student_bias` (those that require grad; a frozen LoRA `lm_head` costs no weight-gradient
    matmul). No gradient reaches the teacher. Computed in float32 whatever the input dtype.

    The logits of each model are `softcap * tanh(scale * (hidden @ weight.T + bias) / softcap)` (scale and soft-cap
    when given), over the student's vocabulary: teacher rows beyond `student_weight.shape[0]` (a padded teacher
    vocabulary) are dropped. Masked positions are never projected.

    Args:
        student_hidden (`torch.Tensor` of shape `(tokens, student_hidden)` or `(batch, seq, student_hidden)`):
            Student final hidden states (any float dtype); gradients flow to them.
        teacher_hidden (`torch.Tensor` of shape `(tokens, teacher_hidden)` or `(batch, seq, teacher_hidden)`):
            Teacher final hidden states at the same positions.
        student_weight (`torch.Tensor` of shape `(vocab, student_hidden)`):
            Student `lm_head` weight (the input embedding when tied).
        teacher_weight (`torch.Tensor` of shape `(teacher_vocab, teacher_hidden)`, `teacher_vocab >= vocab`):
            Teacher `lm_head` weight.
        mask (`torch.Tensor` of shape `(tokens,)` or `(batch, seq)`, *optional*):
            1 where the position counts, 0 where it does not (other values weigh the position, as in
            `distillation_loss`). `None` counts every position.
        divergence, beta, temperature, skew:
            As in [`distillation_loss`]; `beta` means what it means in TRL's GKD.
        student_bias, teacher_bias (`torch.Tensor` of shape `(vocab,)`, *optional*):
            `lm_head` biases.
        student_logit_scale, teacher_logit_scale (`float`, *optional*, defaults to `1.0`):
            Multipliers applied to the projections (Cohere's `logit_scale`).
        student_softcap, teacher_softcap (`float`, *optional*):
            Final logit soft-capping (Gemma 2's `final_logit_softcapping`).
        chunk_size (`int`, *optional*):
            Tokens per chunk; by default chosen so the chunk buffers stay within
            [`DEFAULT_CHUNK_MEMORY_BYTES`].

    Returns:
        `torch.Tensor`: the scalar float32 mean of the per-position divergence over the counted positions.

    Example:

    ```python
    >>> import torch
    >>> from hf_distill.losses import distillation_loss_from_hidden
    >>> student_hidden = torch.randn(2, 8, 16, requires_grad=True)
    >>> teacher_hidden = torch.randn(2, 8, 24)
    >>> student_weight, teacher_weight = torch.randn(100, 16), torch.randn(100, 24)
    >>> loss = distillation_loss_from_hidden(student_hidden, teacher_hidden, student_weight, teacher_weight,
    ...                                      divergence="jsd", beta=0.5)
    >>> loss.backward()
    >>> student_hidden.grad.shape
    torch.Size([2, 8, 16])
    ```
    """
    _check_inputs(
        student_hidden, teacher_hidden, student_weight, teacher_weight, mask, student_bias, teacher_bias,
        divergence=divergence, beta=beta, skew=skew, temperature=temperature, chunk_size=chunk_size,
    )
    vocab_size = student_weight.shape[0]
    student_rows = student_hidden.reshape(-1, student_hidden.shape[-1])
    teacher_rows = teacher_hidden.reshape(-1, teacher_hidden.shape[-1])
    row_weights = None
    if mask is None:
        count = torch.tensor(student_rows.shape[0], device=student_rows.device)
    else:
        flat = mask.reshape(-1)
        keep = flat != 0
        student_rows, teacher_rows = student_rows[keep], teacher_rows[keep]
        if flat.dtype != torch.bool:  # a weighted (or 0/1 numeric) mask weighs each position, as the dense loss does
            row_weights = flat[keep].float()
        count = flat.sum()
    spec = _Spec(
        student_head=OutputHead(None, student_weight, student_bias, student_logit_scale, student_softcap, vocab_size),
        teacher_head=OutputHead(None, teacher_weight, teacher_bias, teacher_logit_scale, teacher_softcap, vocab_size),
        divergence=divergence, beta=beta, skew=skew, temperature=temperature, chunk_size=chunk_size,
    )
    kd_sum = _FusedDistillation.apply(
        student_rows, student_weight, student_bias, teacher_rows.detach(), None, row_weights, spec
    )[0]
    return kd_sum / count.clamp(min=1).to(kd_sum.dtype)


def fused_kd_terms(
    student_hidden: torch.Tensor,
    teacher_hidden: torch.Tensor,
    student_head: OutputHead,
    teacher_head: OutputHead,
    labels: torch.Tensor,
    settings: LossSettings,
) -> KDTerms:
    """[`KDTerms`] equal to [`dense_kd_terms`], from one chunked pass: divergence, cross-entropy on `labels`
    (`settings.ce_type`) and both agreement counts come from the same chunk logits, with no extra matmul.

    The gradient stored in the forward pass is that of `settings.alpha * kd_sum + (1 - settings.alpha) * ce_sum`
    (up to any overall scale), the trainer's loss. A student head the fused loss cannot read directly (quantized,
    PEFT-wrapped or sharded) falls back to [`dense_kd_terms`]; a quantized teacher head is run chunk by chunk.

    Args:
        student_hidden (`torch.Tensor` of shape `(tokens, student_hidden)`): student final hidden states.
        teacher_hidden (`torch.Tensor` of shape `(tokens, teacher_hidden)`): teacher final hidden states.
        student_head, teacher_head ([`OutputHead`]): the projections; their `vocab_size` must agree.
        labels (`torch.Tensor` of shape `(tokens,)`): next-token ids at those positions.
        settings ([`LossSettings`]): divergence, temperature, `ce_type`, `alpha` and `chunk_size`.
    """
    if not head_is_fusable(student_head):
        logger.warning_once(
            "The student's lm_head (%s) cannot be read directly by the fused distillation loss (quantized, wrapped or "
            "sharded); using the dense loss, which holds full logits.", type(student_head.module).__name__
        )
        return dense_kd_terms(
            student_hidden, teacher_hidden, student_head, teacher_head, labels,
            **settings.divergence_kwargs(), ce_type=settings.ce_type,
        )
    if student_head.vocab_size != teacher_head.vocab_size:
        raise FusedLossError(
            f"Student and teacher heads count {student_head.vocab_size} and {teacher_head.vocab_size} vocabulary "
            "rows; align them first (`hf_distill.teachers.align_vocabularies`)."
        )
    spec = _Spec(
        student_head=student_head, teacher_head=teacher_head, teacher_via_module=not head_is_fusable(teacher_head),
        divergence=settings.divergence, beta=settings.beta, skew=settings.skew, temperature=settings.temperature,
        chunk_size=settings.chunk_size, ce_type=settings.ce_type, kd_weight=settings.alpha,
        ce_weight=1.0 - settings.alpha, compute_metrics=True,
    )
    kd_sum, ce_sum, agree, correct = _FusedDistillation.apply(
        student_hidden, student_head.weight, student_head.bias, teacher_hidden.detach(), labels, None, spec
    )
    return KDTerms(kd_sum, ce_sum, agree, correct, labels.numel())
