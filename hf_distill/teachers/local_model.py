"""A teacher that runs beside the student: a transformers causal LM (optionally 8-bit/4-bit), frozen, in eval mode."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from ..gguf import load_causal_lm
from ..heads import OutputHead, final_hidden_states, is_quantized, live_head, unwrap_model
from ..nonfinite import check_teacher_finite
from ..safe_loading import check_safetensors_weights, safe_init_kwargs
from ..vocabulary import check_shared_vocabulary, find_tokenizer, hub_kwargs
from .base import TeacherHidden, TeacherSetupError, TeacherSource, TeacherTypeError

if TYPE_CHECKING:
    from ..training.trainer import DistillationTrainer

logger = logging.getLogger(__name__)

__all__ = ["LocalModelTeacher", "align_vocabularies", "load_teacher_model"]

# Inputs of the student's batch that the teacher's forward takes too (labels and cached columns are not).
_TEACHER_INPUT_KEYS = ("input_ids", "attention_mask", "position_ids")
TEACHER_DTYPE_FIX = (
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
        model = load_causal_lm(teacher, kwargs)
    elif isinstance(teacher, nn.Module):
        if init_kwargs:
            logger.warning("`teacher_model_init_kwargs` is ignored: the teacher is already instantiated.")
        model = teacher
    else:
        raise TeacherTypeError(
            f"`teacher_model` must be a Hub id, a local path or a model, got {type(teacher).__name__}. "
            "Pass e.g. teacher_model='Qwen/Qwen2.5-7B-Instruct'."
        )
    adapters = getattr(model, "peft_config", {})
    if any(getattr(config, "inference_mode", True) is False for config in adapters.values()):
        raise TeacherSetupError(
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


def align_vocabularies(
    student_head: OutputHead,
    teacher_head: OutputHead,
    tokenizer: PreTrainedTokenizerBase,
    teacher_tokenizer: PreTrainedTokenizerBase | None = None,
    *,
    teacher_config=None,
    texts: Iterable[str] = (),
) -> int:
    """Make both heads count exactly the tokenizer's rows, or raise [`VocabularyMismatchError`] when the teacher
    cannot read the student's token ids as its own ([`hf_distill.vocabulary.check_shared_vocabulary`]).

    Embeddings are often padded beyond the tokenizer (Qwen2.5-7B has 152,064 rows, Qwen2.5-0.5B 151,936, both for a
    151,665-token tokenizer): rows no token id can reach are dropped from both. Different tokenizers cannot be
    aligned this way; they need sequence-level distillation.
    """
    num_tokens = check_shared_vocabulary(
        tokenizer, student_rows=student_head.num_rows, teacher_rows=teacher_head.num_rows,
        teacher_tokenizer=teacher_tokenizer, teacher_config=teacher_config, texts=texts, cross_tokenizer_fix=True,
    )
    if max(student_head.num_rows, teacher_head.num_rows) > num_tokens:
        logger.info("Embeddings padded beyond the tokenizer (student %d, teacher %d rows): distilling over its %d "
                    "tokens.", student_head.num_rows, teacher_head.num_rows, num_tokens)
    student_head.vocab_size = teacher_head.vocab_size = num_tokens
    return num_tokens


def _training_texts(trainer: DistillationTrainer, num_rows: int = 16) -> list[str]:
    """A few training rows as text (decoded from the prepared dataset), to compare both tokenizers on."""
    dataset = trainer.train_dataset
    if dataset is None or not hasattr(dataset, "__len__") or "input_ids" not in (dataset.column_names or []):
        return []
    rows = dataset.select(range(min(num_rows, len(dataset))))["input_ids"]
    return [trainer.tokenizer.decode(list(row), skip_special_tokens=True) for row in rows]


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
        if teacher_tokenizer is None:  # fetched like the model: same revision, token, cache, offline setting
            located = hub_kwargs({**(init_kwargs or {}), "trust_remote_code": trust_remote_code})
            teacher_tokenizer = find_tokenizer(teacher, config=unwrap_model(self.model).config, **located)
        self.teacher_tokenizer = teacher_tokenizer
        self.head: OutputHead | None = None

    def setup(self, trainer: DistillationTrainer) -> None:
        self.head = OutputHead.from_model(self.model)
        align_vocabularies(trainer.student_head, self.head, trainer.tokenizer, self.teacher_tokenizer,
                           teacher_config=unwrap_model(self.model).config, texts=_training_texts(trainer))
        self.model = self._place(trainer)
        self.head = OutputHead.from_model(self.model, vocab_size=self.head.vocab_size)

    def _place(self, trainer: DistillationTrainer) -> nn.Module:
        """Put the teacher where the student is: DeepSpeed ZeRO-3 and FSDP2 shard it, otherwise accelerate moves it.
        A bitsandbytes teacher is neither moved nor sharded (its packed weights are no plain parameters): every
        process keeps the whole quantized copy it loaded (docs/scaling.md counts its memory)."""
        if is_quantized(self.model):
            return self.model
        if trainer.is_deepspeed_enabled:
            from trl.models.utils import prepare_deepspeed

            return prepare_deepspeed(self.model, trainer.accelerator)
        if trainer.is_fsdp_enabled:
            from trl.models.utils import prepare_fsdp

            return prepare_fsdp(self.model, trainer.accelerator)
        return trainer.accelerator.prepare_model(self.model, evaluation_mode=True)

    @torch.no_grad()
    def targets(self, inputs: dict[str, torch.Tensor], position_mask: torch.Tensor) -> TeacherHidden:
        teacher_inputs = {key: inputs[key] for key in _TEACHER_INPUT_KEYS if key in inputs}
        # Through the model's own call, whose FSDP2 / ZeRO-3 hooks gather the root's weights (embeddings), not its
        # backbone directly; then the head as the engine holds it (gathered under FSDP2).
        hidden = final_hidden_states(self.model, **teacher_inputs)[:, :-1][position_mask]
        check_teacher_finite(hidden, dtype=hidden.dtype, what="final hidden states",
                             fix_flag=TEACHER_DTYPE_FIX)
        return TeacherHidden(hidden=hidden, head=live_head(self.model, vocab_size=self.head.vocab_size))
