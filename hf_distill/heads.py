"""The output head of a causal LM seen as data: `lm_head` weight and bias plus the model's logit post-processing
(Cohere's `logit_scale`, Gemma's final soft-capping), and the backbone call that yields the hidden states it
projects. Losses that work from hidden states (never building full logits) need exactly this."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["OutputHead", "add_hidden_states_forward", "backbone_hidden_states", "is_quantized", "unwrap_model"]


def unwrap_model(model: nn.Module) -> nn.Module:
    """The transformers model under PEFT / DDP wrappers (LoRA layers stay injected in it)."""
    while hasattr(model, "module") and isinstance(model.module, nn.Module):  # DDP / DataParallel
        model = model.module
    if hasattr(model, "get_base_model"):  # PeftModel
        model = model.get_base_model()
    return model


def is_quantized(model: nn.Module) -> bool:
    """Whether bitsandbytes loaded the model (under any wrapper) 8-bit or 4-bit: such weights neither train nor move
    between devices."""
    inner = unwrap_model(model)
    return bool(getattr(inner, "is_loaded_in_8bit", False) or getattr(inner, "is_loaded_in_4bit", False))


def _logit_scale(text_config) -> float:
    """Multiplier a model applies to its logits (Cohere `logit_scale`, Granite `logits_scaling`, ...)."""
    for name in ("logit_scale", "output_multiplier", "lm_head_multiplier"):
        value = getattr(text_config, name, None)
        if value is not None:
            return float(value)
    scaling = getattr(text_config, "logits_scaling", None)
    if scaling is not None:
        return float(scaling) if text_config.model_type == "hyperclovax" else 1.0 / float(scaling)
    return 1.0


@dataclass
class OutputHead:
    """A causal LM's output projection: `logits = softcap(scale * (hidden @ weight.T + bias))`.

    Args:
        module (`nn.Module`): the `lm_head` itself (used for the dense projection, so quantized heads work).
        weight (`torch.Tensor` of shape `(vocab, hidden)`): its weight; shared with the input embedding when tied.
        bias (`torch.Tensor` of shape `(vocab,)`, *optional*): its bias.
        logit_scale (`float`, defaults to `1.0`): multiplier applied after the projection.
        softcap (`float`, *optional*): final logit soft-capping, `softcap * tanh(logits / softcap)`.
        vocab_size (`int`): number of rows that count; rows beyond it (a padded vocabulary) are dropped.
    """

    module: nn.Module
    weight: torch.Tensor
    bias: torch.Tensor | None
    logit_scale: float
    softcap: float | None
    vocab_size: int

    @classmethod
    def from_model(cls, model: nn.Module, *, vocab_size: int | None = None) -> OutputHead:
        model = unwrap_model(model)
        lm_head = model.get_output_embeddings()
        if lm_head is None:
            raise ValueError(
                f"{type(model).__name__} has no output embeddings (`get_output_embeddings()` is None): distillation "
                "needs a causal language model (`AutoModelForCausalLM`)."
            )
        text_config = model.config.get_text_config()
        rows = lm_head.weight.shape[0]
        return cls(
            module=lm_head,
            weight=lm_head.weight,
            bias=getattr(lm_head, "bias", None),
            logit_scale=_logit_scale(text_config),
            softcap=getattr(text_config, "final_logit_softcapping", None),
            vocab_size=rows if vocab_size is None else vocab_size,
        )

    @property
    def num_rows(self) -> int:
        return self.weight.shape[0]

    def postprocess(self, logits: torch.Tensor) -> torch.Tensor:
        """Scale, soft-cap and drop padded rows of raw projections, in float32."""
        logits = logits[..., : self.vocab_size].float()
        if self.logit_scale != 1.0:
            logits = logits * self.logit_scale
        if self.softcap is not None:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Full float32 logits `(..., vocab_size)` of `hidden` `(..., hidden)`: the dense path."""
        if self.weight.is_floating_point():
            hidden = hidden.to(self.weight.dtype)
        return self.postprocess(self.module(hidden))


def backbone_hidden_states(model: nn.Module, *args, **inputs) -> torch.Tensor:
    """Final hidden states `(batch, seq, hidden)` from the model's backbone, without projecting to the vocabulary."""
    inner = unwrap_model(model)
    backbone = getattr(inner, inner.base_model_prefix, None)
    if backbone is None or backbone is inner:
        raise ValueError(
            f"Cannot find the backbone of {type(inner).__name__} (attribute {inner.base_model_prefix!r}); "
            "distillation needs a transformers causal LM."
        )
    inputs = {k: v for k, v in inputs.items() if k not in ("labels", "num_items_in_batch", "fused_lm_head")}
    inputs["use_cache"] = False
    return backbone(*args, **inputs).last_hidden_state


def add_hidden_states_forward(model: nn.Module) -> None:
    """Patch `model` so that `model(..., return_hidden_states_only=True)` returns the backbone's final hidden states
    `(batch, seq, hidden)` instead of logits; any other call is the original forward (generation is unchanged).

    The student is called through its wrappers (DDP, PEFT, accelerate), which must see the forward for gradient
    synchronisation, so the switch is a keyword of the top-level forward rather than a direct backbone call.
    """
    inner = unwrap_model(model)
    if getattr(inner, "_hf_distill_hidden_forward", False):
        return
    original_forward = inner.forward

    @functools.wraps(original_forward)
    def forward(*args, return_hidden_states_only: bool = False, **kwargs):
        if not return_hidden_states_only:
            return original_forward(*args, **kwargs)
        return backbone_hidden_states(inner, *args, **kwargs)

    inner.forward = forward
    inner._hf_distill_hidden_forward = True
