"""A teacher that runs beside the student: a transformers causal LM (optionally 8-bit/4-bit), frozen, in eval mode."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from ..heads import OutputHead, backbone_hidden_states, is_quantized, unwrap_model
from ..nonfinite import check_teacher_finite
from ..safe_loading import check_safetensors_weights, safe_init_kwargs
from .base import TeacherHidden, TeacherSource

if TYPE_CHECKING:
    from ..training.trainer import DistillationTrainer

logger = logging.getLogger(__name__)

__all__ = ["LocalModelTeacher", "align_vocabularies", "load_teacher_model"]

# Inputs of the student's batch that the teacher's forward takes too (labels and cached columns are not).
_TEACHER_INPUT_KEYS = ("input_ids", "attention_mask", "position_ids")
_TEACHER_DTYPE_FIX = (
    "`teacher_model_init_kwargs={'dtype': 'bfloat16'}`, --teacher_model_init_kwargs '{\"dtype\": \"bfloat16\"}'"
)


def load_teacher_model(
    teacher: str | os.PathLike | nn.Module, init_kwargs: dict[str, Any] | None = None, *, trust_remote_code=False
) -> nn.Module:
    """Load a teacher from a Hub id or local path (with `init_kwargs`, e.g. a `quantization_config`), or check an
    instantiated one. Returns the model frozen and in eval mode."""
    if isinstance(teacher, (str, os.PathLike)):
        check_safetensors_weights(teacher, init_kwargs, argument="teacher_model")
        kwargs = safe_init_kwargs({"dtype": "auto", **(init_kwargs or {})}, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(str(teacher), **kwargs)
    elif isinstance(teacher, nn.Module):
        if init_kwargs:
            logger.warning("`teacher_model_init_kwargs` is ignored: the teacher is already instantiated.")
        model = teacher
    else:
        raise TypeError(
            f"`teacher_model` must be a Hub id, a local path or a model, got {type(teacher).__name__}. "
            "Pass e.g. teacher_model='Qwen/Qwen2.5-7B-Instruct'."
        )
    adapters = getattr(model, "peft_config", {})
    if any(getattr(config, "inference_mode", True) is False for config in adapters.values()):
        raise ValueError(
            "The teacher is a PEFT model with trainable adapters. A teacher is never trained: merge its adapter "
            "(`teacher = teacher.merge_and_unload()`) or load it with "
            "`PeftModel.from_pretrained(..., is_trainable=False)`; `peft_config` applies to the student only."
        )
    _warn_if_trainable(model)
    model.eval()
    model.requires_grad_(False)
    return model


def _warn_if_trainable(model: nn.Module) -> None:
    """A teacher is always frozen; say so when it looks like a model in training (train mode and trainable
    parameters: fresh from a training loop or `from_config`), since freezing changes the object the caller holds."""
    num_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if model.training and num_trainable:
        logger.warning(
            "The teacher is in training mode with %d trainable parameters: hf_distill freezes it "
            "(`requires_grad_(False)`, `eval()`), since a teacher is never trained. Pass the model to train as "
            "`model=` (the student); load the teacher with `from_pretrained` to silence this warning.",
            num_trainable,
        )


def _teacher_tokenizer(teacher: str | os.PathLike | nn.Module) -> PreTrainedTokenizerBase | None:
    """The teacher's own tokenizer when it can be found without the network: its local folder or the Hub cache."""
    path = teacher if isinstance(teacher, (str, os.PathLike)) else getattr(unwrap_model(teacher), "name_or_path", "")
    if not path:
        return None
    try:
        return AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except Exception:  # no tokenizer files there: fall back to the size checks
        return None


def _maps_ids_alike(tokenizer, teacher_tokenizer) -> bool:
    """Every token of the student's tokenizer has the same id in the teacher's (which may add tokens beyond it)."""
    teacher_vocab = teacher_tokenizer.get_vocab()
    return all(teacher_vocab.get(token) == index for token, index in tokenizer.get_vocab().items())


def align_vocabularies(
    student_head: OutputHead,
    teacher_head: OutputHead,
    tokenizer: PreTrainedTokenizerBase,
    teacher_tokenizer: PreTrainedTokenizerBase | None = None,
) -> int:
    """Make both heads count the same vocabulary rows, or raise `ValueError` when the vocabularies really differ.

    Embeddings are often padded beyond the tokenizer (Qwen2.5-7B has 152,064 rows, Qwen2.5-0.5B 151,936, both for a
    151,665-token tokenizer): rows no token id can reach are dropped from both. Different tokenizers cannot be
    aligned this way; they need sequence-level distillation.
    """
    num_tokens = len(tokenizer)
    student_rows, teacher_rows = student_head.num_rows, teacher_head.num_rows
    same_tokenizer = teacher_tokenizer is None or _maps_ids_alike(tokenizer, teacher_tokenizer)
    if not same_tokenizer or min(student_rows, teacher_rows) < num_tokens:
        teacher_tokens = len(teacher_tokenizer) if teacher_tokenizer is not None else "unknown"
        raise ValueError(
            f"The teacher's vocabulary ({teacher_rows} embedding rows, tokenizer of {teacher_tokens} tokens) does not "
            f"match the student's ({student_rows} embedding rows, tokenizer of {num_tokens} tokens). Logit "
            "distillation needs a shared tokenizer: choose a teacher of the same family, or distil at sequence level "
            "(`hf_distill.data.generate_completions` / `hf-distill generate`, then train on the generated "
            "completions)."
        )
    common = min(student_rows, teacher_rows)
    if student_rows != teacher_rows:
        logger.info(
            "Student and teacher embeddings are padded differently (%d vs %d rows, %d tokens): distilling over the "
            "first %d rows.", student_rows, teacher_rows, num_tokens, common
        )
    student_head.vocab_size = teacher_head.vocab_size = common
    return common


class LocalModelTeacher(TeacherSource):
    """A frozen causal LM run on each batch; gives [`TeacherHidden`] targets.

    Args:
        teacher (`str`, `os.PathLike` or `nn.Module`): Hub id, local path or model (already quantized models too).
        init_kwargs (`dict`, *optional*): `from_pretrained` keyword arguments when `teacher` is an id or path.
        teacher_tokenizer (*optional*): the teacher's tokenizer, to check it matches the student's.

    Example:

    ```python
    >>> teacher = LocalModelTeacher("Qwen/Qwen2.5-1.5B-Instruct", init_kwargs={"dtype": "bfloat16"})
    ```
    """

    dataset_columns: tuple[str, ...] = ()

    def __init__(self, teacher, init_kwargs=None, *, teacher_tokenizer=None, trust_remote_code=False):
        self.source = teacher
        self.model = load_teacher_model(teacher, init_kwargs, trust_remote_code=trust_remote_code)
        self.teacher_tokenizer = teacher_tokenizer if teacher_tokenizer is not None else _teacher_tokenizer(teacher)
        self.head: OutputHead | None = None

    def setup(self, trainer: DistillationTrainer) -> None:
        self.head = OutputHead.from_model(self.model)
        align_vocabularies(trainer.student_head, self.head, trainer.tokenizer, self.teacher_tokenizer)
        self.model = self._place(trainer)
        self.head = OutputHead.from_model(self.model, vocab_size=self.head.vocab_size)

    def _place(self, trainer: DistillationTrainer) -> nn.Module:
        """Put the teacher where the student is: DeepSpeed ZeRO-3 shards it, otherwise accelerate moves it."""
        if trainer.is_deepspeed_enabled:
            from trl.models.utils import prepare_deepspeed

            return prepare_deepspeed(self.model, trainer.accelerator)
        if trainer.is_fsdp_enabled:
            from trl.models.utils import prepare_fsdp

            return prepare_fsdp(self.model, trainer.accelerator)
        if is_quantized(self.model):  # bitsandbytes models cannot be moved; they live where they were loaded
            return self.model
        return trainer.accelerator.prepare_model(self.model, evaluation_mode=True)

    @torch.no_grad()
    def targets(self, inputs: dict[str, torch.Tensor], position_mask: torch.Tensor) -> TeacherHidden:
        teacher_inputs = {key: inputs[key] for key in _TEACHER_INPUT_KEYS if key in inputs}
        hidden = backbone_hidden_states(self.model, **teacher_inputs)[:, :-1][position_mask]
        check_teacher_finite(hidden, dtype=hidden.dtype, what="final hidden states",
                             fix_flag=_TEACHER_DTYPE_FIX)
        return TeacherHidden(hidden=hidden, head=self.head)
