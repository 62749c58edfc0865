"""Distillation losses: pure functions of logits (dense), of hidden states (fused, chunked), of cached top-k
teacher log-probabilities (sparse), and across tokenizers at positions matched by text (ULD, span). The trainer only
calls into this package; no loss math lives in the trainer."""

from .cross_tokenizer import CROSS_TOKENIZER_METHODS, cross_tokenizer_loss
from .dense import distillation_loss
from .divergences import DIVERGENCES, LossInputError, per_token_divergence
from .fused import distillation_loss_from_hidden

__all__ = [
    "CROSS_TOKENIZER_METHODS", "DIVERGENCES", "LossInputError", "cross_tokenizer_loss", "distillation_loss",
    "distillation_loss_from_hidden", "per_token_divergence",
]
