"""Distillation losses: pure functions of logits (dense), of hidden states (fused, chunked) and of cached top-k
teacher log-probabilities (sparse). The trainer only calls into this package; no loss math lives in the trainer."""

from .dense import distillation_loss
from .divergences import DIVERGENCES, per_token_divergence

__all__ = ["DIVERGENCES", "distillation_loss", "per_token_divergence"]
