"""The teacher of an offline run: loaded from an id, a path or a model, with its tokenizer and a provenance record."""

from __future__ import annotations

import os

from torch import nn
from transformers import AutoTokenizer

from ..heads import is_quantized, unwrap_model
from ..teachers.local_model import load_teacher_model

__all__ = ["load_offline_teacher"]


def load_offline_teacher(teacher: str | os.PathLike | nn.Module, tokenizer=None, *, model_kwargs: dict | None = None):
    """The teacher model (frozen, eval mode) and its tokenizer (`tokenizer`, or the one saved with the teacher).

    A teacher loaded here from an id or path goes to this process's accelerator (one GPU per rank under `torchrun`);
    a model passed in, quantized or dispatched with a `device_map` stays where it is. Raises `ValueError` when no
    tokenizer is given and none is stored with the teacher.
    """
    if tokenizer is None:
        tokenizer = _stored_tokenizer(teacher)
    model = load_teacher_model(teacher, model_kwargs)
    if not isinstance(teacher, nn.Module) and not is_quantized(model) and not getattr(model, "hf_device_map", None):
        from accelerate import PartialState

        model = model.to(PartialState().device)
    return model, tokenizer


def _stored_tokenizer(teacher):
    source = teacher if isinstance(teacher, (str, os.PathLike)) else getattr(unwrap_model(teacher), "name_or_path", "")
    if source:
        try:
            return AutoTokenizer.from_pretrained(str(source))
        except (OSError, ValueError):
            pass
    raise ValueError(
        f"No tokenizer is stored with the teacher ({str(source) or type(teacher).__name__!r}): pass the teacher's "
        "tokenizer (`tokenizer=`), e.g. `AutoTokenizer.from_pretrained(teacher_id)`."
    )
