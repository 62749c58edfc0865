"""Teacher sources: where the teacher's next-token distributions come from.

`TEACHER_SOURCES` is the registry: each entry maps the trainer's inputs to a source, or returns None when it does
not apply. The first match wins; a new source is one file here plus one line in the list.

`align_vocabularies`, `load_teacher_model` and `resolve_teacher_source` are importable from here as before, but are
the trainer's and the offline runs' own (not in `__all__`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .base import TeacherHidden, TeacherSetupError, TeacherSource, TeacherTargets, TeacherTopK, TeacherTypeError
from .cached_cross_tokenizer import CachedCrossTokenizerTeacher
from .cached_topk import CachedTopKTeacher
from .cross_tokenizer import CrossTokenizerTeacher
from .local_model import LocalModelTeacher, align_vocabularies, load_teacher_model  # noqa: F401 (see above)
from .served import ServedTeacher

__all__ = [
    "TEACHER_SOURCES",
    "CachedCrossTokenizerTeacher",
    "CachedTopKTeacher",
    "CrossTokenizerTeacher",
    "LocalModelTeacher",
    "ServedTeacher",
    "TeacherHidden",
    "TeacherSetupError",
    "TeacherSource",
    "TeacherTargets",
    "TeacherTopK",
    "TeacherTypeError",
]


def _local_model(teacher_model, args, dataset_columns, **kwargs) -> TeacherSource | None:
    teacher = teacher_model if teacher_model is not None else args.teacher_model_name_or_path
    if teacher is None:
        return None
    return LocalModelTeacher(
        teacher,
        args.teacher_model_init_kwargs,
        teacher_tokenizer=kwargs.get("teacher_processing_class"),
        trust_remote_code=args.trust_remote_code,
    )


TEACHER_SOURCES: list[Callable[..., TeacherSource | None]] = [
    CachedCrossTokenizerTeacher.from_trainer_inputs,  # `cross_tokenizer=` on a cache written across tokenizers
    CrossTokenizerTeacher.from_trainer_inputs,  # then `cross_tokenizer=` decides how any other teacher is read
    ServedTeacher.from_trainer_inputs,  # before the local model: a URL is not a path
    _local_model,
    CachedTopKTeacher.from_trainer_inputs,
]


def resolve_teacher_source(teacher_model: Any, args, dataset_columns: list[str], **kwargs) -> TeacherSource:
    """The first source in `TEACHER_SOURCES` that applies; raises [`TeacherSetupError`] naming the options when none
    does."""
    for factory in TEACHER_SOURCES:
        source = factory(teacher_model, args, dataset_columns, **kwargs)
        if source is not None:
            return source
    raise TeacherSetupError(
        "No teacher: pass `teacher_model=` (a Hub id, local path or model), set "
        "`DistillationConfig.teacher_model_name_or_path` (--teacher_model_name_or_path), or train on a dataset "
        "with cached teacher logits (`hf_distill.data.cache_teacher_logits`, `hf-distill cache-logits`)."
    )
