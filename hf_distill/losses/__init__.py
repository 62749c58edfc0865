"""Distillation losses: pure functions of logits (dense), of hidden states (fused, chunked) and of cached top-k
teacher log-probabilities (sparse). The trainer only calls into this package; no loss math lives in the trainer."""

from .dense import distillation_loss
from .divergences import DIVERGENCES, LossInputError, per_token_divergence
from .fused import distillation_loss_from_hidden

__all__ = [
    "DIVERGENCES", "LossInputError", "distillation_loss", "distillation_loss_from_hidden", "per_token_divergence",
]
