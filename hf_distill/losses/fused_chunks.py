"""The per-chunk pieces of the fused distillation loss ([`hf_distill.losses.fused`]): projecting hidden states
through an `lm_head`, the reusable chunk buffers, and each divergence together with its gradient with respect to the
student's logits, computed on one `(chunk, vocab)` block at a time."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from packaging.version import Version
from torch import nn

from ..heads import OutputHead
from .divergences import DIVERGENCES

__all__ = ["CLOSED_FORM", "DEFAULT_CHUNK_MEMORY_BYTES", "Projection", "Workspace", "autograd_divergence_",
           "choose_chunk_size", "head_is_fusable", "log_softmax_", "matmul_dtype", "matmul_into"]

#: Memory for one chunk's float32 `(chunk, vocab)` buffers when `chunk_size` is not given. At a 151,936-token
#: vocabulary that is up to 441 tokens for forward KL (three buffers), 662 for reverse KL (two), 264 for JSD (five);
#: 1,024 tokens of forward KL then need 1.2 GB with the weight gradient, a quarter of the full-logit loss. Much
#: smaller chunks stream the `lm_head` weights more often and slow the matmuls (on 2 CPU cores 128-token chunks cost
#: ~25% more than 512-token ones).
DEFAULT_CHUNK_MEMORY_BYTES = 768 * 2**20

# CUDA matmuls can read half-precision operands and write float32 (no rounded logits, no float32 weight copy).
_CUDA_FP32_OUT = Version(torch.__version__.split("+")[0]) >= Version("2.8.0")
_TINY = torch.finfo(torch.float32).tiny


# -- projections ----------------------------------------------------------------------------------------------------


def matmul_dtype(weight: torch.Tensor) -> torch.dtype:
    """The dtype the chunk matmuls read: half precision only where a matmul can write float32 from it (CUDA)."""
    device = weight.device.type
    if device == "cuda" and _CUDA_FP32_OUT:
        if torch.is_autocast_enabled(device):
            return torch.get_autocast_dtype(device)
        if weight.dtype in (torch.float16, torch.bfloat16):
            return weight.dtype
    return torch.float32


def matmul_into(out: torch.Tensor, a: torch.Tensor, b: torch.Tensor, *, accumulate: bool = False, alpha=1.0):
    """`out = alpha * a @ b`, or `out += alpha * a @ b` with `accumulate`, in a float32 `out` whatever the operands'
    dtype (`out`'s old values are ignored, NaN included, unless accumulating)."""
    a = a.to(b.dtype)
    if b.dtype == torch.float32:
        torch.addmm(out, a, b, beta=1.0 if accumulate else 0.0, alpha=alpha, out=out)
    elif accumulate:
        torch.addmm(out, a, b, alpha=alpha, out_dtype=torch.float32, out=out)
    else:
        torch.mm(a, b, out_dtype=torch.float32, out=out)
        if alpha != 1.0:
            out.mul_(alpha)


@dataclass
class Projection:
    """One model's output head as the chunk loop uses it: `softcap(scale * (hidden @ weight.T + bias))`.

    `weight` holds the `(vocab, hidden)` rows that count, in the matmul dtype; `None` projects through `module`
    (a quantized or wrapped `lm_head`, teacher only).
    """

    weight: torch.Tensor | None
    bias: torch.Tensor | None
    scale: float
    softcap: float | None
    vocab_size: int
    module: nn.Module | None = None

    @classmethod
    def from_head(cls, head: OutputHead, weight=None, bias=None, *, matmul_dtype=torch.float32, via_module=False):
        """The projection of `head`, reading `weight` / `bias` when given (the autograd inputs) or the head's own."""
        if via_module:
            return cls(None, None, head.logit_scale, head.softcap, head.vocab_size, head.module)
        weight = head.weight if weight is None else weight
        bias = head.bias if bias is None else bias
        # Half-precision weights are read in float32 on devices without float32-output matmuls: one copy per call.
        rows = weight.detach()[: head.vocab_size].to(matmul_dtype)
        bias = None if bias is None else bias.detach()[: head.vocab_size].float()
        return cls(rows, bias, head.logit_scale, head.softcap, head.vocab_size)

    @property
    def dtype(self) -> torch.dtype:
        return self.weight.dtype if self.weight is not None else torch.float32

    def project_(self, hidden: torch.Tensor, out: torch.Tensor, tanh_out: torch.Tensor | None = None) -> None:
        """Write the float32 logits `(n, vocab)` of `hidden` `(n, hidden)` into `out`; with a soft-cap and `tanh_out`,
        keep `tanh(.)` there for the gradient."""
        if self.weight is None:
            out.copy_(self.module(hidden)[..., : self.vocab_size])
        else:
            matmul_into(out, hidden, self.weight.t())
            if self.bias is not None:
                out.add_(self.bias)
        if self.scale != 1.0:
            out.mul_(self.scale)
        if self.softcap is not None:
            target = out if tanh_out is None else tanh_out
            torch.tanh(out.div_(self.softcap), out=target)
            torch.mul(target, self.softcap, out=out)


def head_is_fusable(head: OutputHead) -> bool:
    """A plain `nn.Linear` with a full floating weight: the fused loss may read it directly. Quantized, PEFT-wrapped
    or sharded heads (ZeRO-3 empties parameters outside their module's forward) must run their own forward."""
    weight = head.weight
    return (
        isinstance(head.module, nn.Linear)
        and not hasattr(head.module, "base_layer")
        and weight.is_floating_point()
        and weight.dim() == 2
        and weight.numel() > 0
        and type(weight) in (torch.Tensor, nn.Parameter)
    )


# -- chunk buffers and softmax ----------------------------------------------------------------------------------------


class Workspace:
    """Float32 `(chunk_size, vocab)` buffers allocated on first use and reused by every chunk."""

    def __init__(self, rows: int, vocab: int, device: torch.device):
        self.rows, self.vocab, self.device = rows, vocab, device
        self._buffers: dict[str, torch.Tensor] = {}

    def __call__(self, name: str, n: int) -> torch.Tensor:
        if name not in self._buffers:
            self._buffers[name] = torch.empty(self.rows, self.vocab, device=self.device, dtype=torch.float32)
        return self._buffers[name][:n]


def log_softmax_(logits: torch.Tensor) -> torch.Tensor:
    """log_softmax over the last axis, in place: one fused row-wise kernel (each row read from memory once) instead of
    max / exp / sum / subtract passes over the whole chunk."""
    return torch.ops.aten._log_softmax.out(logits, -1, False, out=logits)


# -- divergences with their gradient --------------------------------------------------------------------------------
# Each takes the chunk's student and teacher log-probabilities `s`, `t` (n, vocab) at the temperature and may overwrite
# both. It returns the per-token divergence `(n,)`, a factor `c`, the buffer holding `c * d divergence / d z` (z: the
# student logits at the temperature) and the buffer holding the student's probabilities p_s (the cross-entropy
# gradient reuses them). Each materialises only the probabilities it needs, in as few chunk buffers as it can.
# Sums run over log-probabilities, not raw logits (those carry each row's log-normaliser, often 10-40, and a float32
# sum of 150k such terms loses the divergence to cancellation), with torch's cascade `sum` over an in-place product
# rather than a BLAS dot product, whose float32 accumulation over 150k terms drifts by ~1e-4 relative.


def _forward_kl_(s, t, spec, workspace):
    """KL(p_t || p_s) = sum p_t (log p_t - log p_s); its logit gradient is p_s - p_t. Three buffers."""
    pt = torch.exp(t, out=workspace("teacher_probs", s.shape[0]))
    per_token = t.sub_(s).mul_(pt).sum(-1)
    ps = torch.exp(s, out=t)
    return per_token, 1.0, torch.sub(ps, pt, out=s), ps


def _reverse_kl_(s, t, spec, workspace):
    """KL(p_s || p_t); its logit gradient is p_s (log p_s - log p_t - KL). Two buffers."""
    grad = torch.sub(s, t, out=t)
    ps = s.exp_()
    per_token = grad.mul_(ps).sum(-1)
    grad.addcmul_(ps, per_token.unsqueeze(1), value=-1.0)
    return per_token, 1.0, grad, ps


def _jsd_(s, t, spec, workspace):
    """Generalized JSD with m = (1 - beta) p_s + beta p_t: beta KL(p_t || m) + (1 - beta) KL(p_s || m). Its logit
    gradient is (1 - beta) p_s (log p_s - log m - KL(p_s || m)); beta 0 and 1 are forward and reverse KL, as in TRL."""
    beta = spec.beta
    if beta == 0.0:
        return _forward_kl_(s, t, spec, workspace)
    if beta == 1.0:
        return _reverse_kl_(s, t, spec, workspace)
    n = s.shape[0]
    ps, pt = torch.exp(s, out=workspace("student_probs", n)), torch.exp(t, out=workspace("teacher_probs", n))
    log_mix = torch.mul(ps, 1.0 - beta, out=workspace("mixture", n))
    # Where both probabilities underflow the mixture is 0; flooring it keeps 0 * log(.) finite.
    log_mix.add_(pt, alpha=beta).clamp_(min=_TINY).log_()
    kl_teacher = t.sub_(log_mix).mul_(pt).sum(-1)
    kl_student = s.sub_(log_mix).mul_(ps).sum(-1)
    s.addcmul_(ps, kl_student.unsqueeze(1), value=-1.0)
    return beta * kl_teacher + (1.0 - beta) * kl_student, 1.0 - beta, s, ps


def autograd_divergence_(s, t, spec, workspace):
    """Any divergence of the table: its value from [`DIVERGENCES`], its logit gradient by autograd on the chunk."""
    fn = DIVERGENCES[spec.divergence]
    with torch.enable_grad():
        logits = s.detach().requires_grad_()  # log-probabilities are logits too
        per_token = fn(torch.log_softmax(logits, dim=-1), t, beta=spec.beta, skew=spec.skew)
        (grad,) = torch.autograd.grad(per_token.sum(), logits)
    ps = torch.exp(s, out=t)
    return per_token.detach(), 1.0, s.copy_(grad), ps


CLOSED_FORM = {"forward_kl": _forward_kl_, "reverse_kl": _reverse_kl_, "jsd": _jsd_}


def choose_chunk_size(num_tokens: int, vocab_size: int, *, num_buffers: int = 4,
                      memory_bytes: int = DEFAULT_CHUNK_MEMORY_BYTES) -> int:
    """Tokens per chunk so that `num_buffers` float32 `(chunk, vocab_size)` buffers fit in `memory_bytes`, evened out
    over the chunks (1,024 tokens with room for 441 run as 3 x 342, not 441 + 441 + 142: a thin last chunk makes
    slow matmuls)."""
    most = max(1, memory_bytes // (num_buffers * vocab_size * 4))
    num_chunks = max(1, -(-num_tokens // most))
    return max(1, -(-num_tokens // num_chunks))
