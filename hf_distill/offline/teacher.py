"""The teacher of an offline run: loaded from an id, a path or a model, with its tokenizer and a provenance record."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import AutoTokenizer

from ..heads import is_quantized, unwrap_model
from ..teachers.local_model import load_teacher_model

__all__ = ["TeacherProvenance", "load_offline_teacher", "path_provenance", "teacher_provenance"]


@dataclass(frozen=True)
class TeacherProvenance:
    """Which teacher made a dataset: `name` (Hub id or local path, or the model's `name_or_path`) and `revision`
    (the Hub commit when known, else `sha256:` of its weights)."""

    name: str
    revision: str


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


def teacher_provenance(model: nn.Module, source: str | os.PathLike | nn.Module) -> TeacherProvenance:
    """Name and revision of the teacher. A Hub checkpoint is named by its commit (`config._commit_hash`); anything
    else by a sha256 of its parameters, so two datasets made from the same weights carry the same revision."""
    inner = unwrap_model(model)
    name = str(source) if isinstance(source, (str, os.PathLike)) else getattr(inner, "name_or_path", "") or type(
        inner
    ).__name__
    if isinstance(source, (str, os.PathLike)) and Path(source).exists():
        name = str(Path(source).resolve())
    commit = getattr(getattr(inner, "config", None), "_commit_hash", None)
    if commit and not Path(name).exists():
        return TeacherProvenance(name=name, revision=commit)
    return TeacherProvenance(name=name, revision="sha256:" + _parameters_sha256(inner))


def _parameters_sha256(model: nn.Module) -> str:
    digest = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        digest.update(key.encode())
        data = tensor.detach().to("cpu").contiguous()
        if data.dtype in (torch.bfloat16, torch.float16):
            data = data.view(torch.int16)
        digest.update(data.numpy().tobytes() if data.dtype != torch.bool else data.to(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def path_provenance(source: str | os.PathLike) -> TeacherProvenance:
    """Provenance of a teacher that is not loaded here (vLLM loads it): a local folder by a sha256 of its files, a Hub
    id by the commit of its cached snapshot (`"unresolved"` when it is not downloaded yet)."""
    path = Path(source)
    if path.is_dir():
        digest = hashlib.sha256()
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(str(file.relative_to(path)).encode())
            with open(file, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        return TeacherProvenance(name=str(path.resolve()), revision="sha256:" + digest.hexdigest())
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(str(source), "config.json")
    revision = Path(cached).parent.name if isinstance(cached, str) else "unresolved"
    return TeacherProvenance(name=str(source), revision=revision)
