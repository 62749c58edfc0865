"""The teacher of an offline run: loaded from an id, a path or a model, with its tokenizer and a provenance record."""

from __future__ import annotations

import os

from torch import nn

from ..gguf import gguf_file_of, load_gguf_tokenizer
from ..heads import is_quantized, unwrap_model
from ..teachers.local_model import load_teacher_model
from ..vocabulary import MissingTokenizerError, find_tokenizer, hub_kwargs

__all__ = ["load_offline_teacher"]


def load_offline_teacher(teacher: str | os.PathLike | nn.Module, tokenizer=None, *, model_kwargs: dict | None = None):
    """The teacher model (frozen, eval mode) and its tokenizer (`tokenizer`, or the one saved with the teacher).

    A teacher loaded here from an id or path goes to this process's accelerator (one GPU per rank under `torchrun`);
    a model passed in, quantized or dispatched with a `device_map` stays where it is. Raises
    [`~hf_distill.vocabulary.MissingTokenizerError`] when no tokenizer is given and none is stored with the teacher.
    """
    gguf_file = gguf_file_of(model_kwargs)
    if tokenizer is None and gguf_file and isinstance(teacher, (str, os.PathLike)):
        tokenizer = load_gguf_tokenizer(teacher, gguf_file)  # a GGUF file holds its tokenizer and chat template
    if tokenizer is None:
        tokenizer = _stored_tokenizer(teacher, model_kwargs)
    model = load_teacher_model(teacher, model_kwargs)
    if not isinstance(teacher, nn.Module) and not is_quantized(model) and not getattr(model, "hf_device_map", None):
        from accelerate import PartialState

        model = model.to(PartialState().device)
    return model, tokenizer


def _stored_tokenizer(teacher, model_kwargs: dict | None):
    """The tokenizer saved with the teacher, fetched like the model (same revision, token and cache)."""
    tokenizer = find_tokenizer(teacher, **hub_kwargs(model_kwargs))
    if tokenizer is None:
        shown = teacher if isinstance(teacher, (str, os.PathLike)) else getattr(
            unwrap_model(teacher), "name_or_path", "") or type(teacher).__name__
        raise MissingTokenizerError(
            f"No tokenizer is stored with the teacher ({str(shown)!r}): pass the teacher's tokenizer (`tokenizer=`, "
            "--tokenizer), e.g. `AutoTokenizer.from_pretrained(teacher_id)`."
        )
    return tokenizer
