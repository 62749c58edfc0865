"""The output head of a causal LM seen as data: `lm_head` weight and bias plus the model's logit post-processing
(Cohere's `logit_scale`, Gemma's final soft-capping), and the backbone call that yields the hidden states it
projects. Losses that work from hidden states (never building full logits) need exactly this."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .errors import HfDistillError

__all__ = [
    "OutputHead", "OutputHeadCallError", "UnsupportedModelError", "backbone_hidden_states", "final_hidden_states",
    "is_quantized", "live_head", "unwrap_model", "weight_rows",
]


class UnsupportedModelError(HfDistillError, ValueError):
    """A model distillation cannot read: no output head, or no backbone under it (not a transformers causal LM)."""


class OutputHeadCallError(UnsupportedModelError, RuntimeError):
    """A model whose forward calls its output head other than once, so its final hidden states are not one tensor."""


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


def weight_rows(weight: torch.Tensor) -> int:
    """Rows of a head's weight as the model defines them. DeepSpeed ZeRO-3 partitions a parameter to an empty tensor
    and keeps its real shape in `ds_shape`; an FSDP2 `DTensor` reports its global shape."""
    shape = getattr(weight, "ds_shape", None)
    return int((weight.shape if shape is None else shape)[0])


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
            raise UnsupportedModelError(
                f"{type(model).__name__} has no output embeddings (`get_output_embeddings()` is None): distillation "
                "needs a causal language model (`AutoModelForCausalLM`)."
            )
        text_config = model.config.get_text_config()
        rows = weight_rows(lm_head.weight)
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
        return weight_rows(self.weight)

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


def _is_dtensor(tensor: torch.Tensor) -> bool:
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # torch built without distributed support
        return False
    return isinstance(tensor, DTensor)


def _fsdp_unit_of(model: nn.Module, module: nn.Module) -> nn.Module | None:
    """The FSDP2 unit holding `module`'s parameters: its nearest `fully_shard`-ed ancestor (itself included)."""
    from torch.distributed.fsdp import FSDPModule

    units = {name: unit for name, unit in model.named_modules() if isinstance(unit, FSDPModule)}
    path = next((name for name, candidate in model.named_modules() if candidate is module), None)
    if path is None:
        return None
    owners = [name for name in units if name == "" or path == name or path.startswith(name + ".")]
    return units[max(owners, key=len)] if owners else None


def live_head(model: nn.Module, *, vocab_size: int) -> OutputHead:
    """`model`'s output head as its engine holds it now, counting `vocab_size` rows. Read it on every step, never
    once before `accelerator.prepare`: FSDP2 replaces the parameters with sharded ones.

    Under FSDP2 the weight is a sharded `DTensor` outside its unit's forward (`reshard_after_forward`); this
    all-gathers the unit that owns the head (`FSDPModule.unshard()`) and returns its full, unsharded parameter.
    Gradients accumulate on that parameter, and FSDP's own post-backward reduce-scatters them to the shards and
    reshards the unit, exactly as for a gradient of the module's forward. Without backward (a frozen teacher,
    evaluation), the unit stays gathered until its next forward reshards it. ZeRO-3 heads (empty partitions) are
    returned as they are: the losses run the head's own forward, which gathers them.
    """
    head = OutputHead.from_model(model, vocab_size=vocab_size)
    if not _is_dtensor(head.weight):
        return head
    unit = _fsdp_unit_of(model, head.module)
    if unit is None:  # a DTensor from another engine (tensor parallel): projected through the module
        return head
    unit.unshard()
    return OutputHead.from_model(model, vocab_size=vocab_size)


def backbone_hidden_states(model: nn.Module, *args, **inputs) -> torch.Tensor:
    """Final hidden states `(batch, seq, hidden)` from the model's backbone, without projecting to the vocabulary."""
    inner = unwrap_model(model)
    backbone = getattr(inner, inner.base_model_prefix, None)
    if backbone is None or backbone is inner:
        raise UnsupportedModelError(
            f"Cannot find the backbone of {type(inner).__name__} (attribute {inner.base_model_prefix!r}); "
            "distillation needs a transformers causal LM."
        )
    inputs = {k: v for k, v in inputs.items() if k not in ("labels", "num_items_in_batch", "fused_lm_head")}
    inputs["use_cache"] = False
    return backbone(*args, **inputs).last_hidden_state


def final_hidden_states(model: nn.Module, **inputs) -> torch.Tensor:
    """The final hidden states `(batch, seq, hidden)` that `model`'s output head would project, from one call of
    `model(**inputs)` that builds no logits.

    The call goes through the model's wrappers (DDP, PEFT, accelerate), which must see the forward for gradient
    synchronisation. A forward pre-hook on the output head, removed when the call returns, keeps the head's input
    and hands the head an empty slice of it; nothing is set on the instance, so copies of the model
    (`copy.deepcopy`, `trl.create_reference_model`) stay models of their own, and only the last hidden state is
    kept (no `output_hidden_states`).
    """
    head = unwrap_model(model).get_output_embeddings()  # never None: `OutputHead.from_model` checked it
    captured = []

    def keep_input_project_nothing(module, args):
        captured.append(args[0])
        return (args[0][..., :0, :], *args[1:])

    # First among the head's hooks: ZeRO-3 (and FSDP2 on a head of its own) wrap the head's input in their
    # post-backward hook, which must see the empty slice (whose gradient never comes), not the kept hidden states.
    handle = head.register_forward_pre_hook(keep_input_project_nothing, prepend=True)
    try:
        model(**inputs, use_cache=False)
    finally:
        handle.remove()
    if len(captured) != 1:
        raise OutputHeadCallError(
            f"The output head of {type(unwrap_model(model)).__name__} ran {len(captured)} times in one forward, "
            "but distillation reads the final hidden states from its one call: this model class is not supported "
            "as a student."
        )
    return captured[0]
