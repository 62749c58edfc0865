"""A student initialised from its teacher: the same architecture and tokenizer with fewer decoder layers, each
copied from a chosen teacher layer (DistilBERT's every-other-layer start, Minitron's depth pruning), with the
embeddings, final norm and output head copied as they are."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedModel

from ..gguf import gguf_tokenizer_kwargs
from ..heads import unwrap_model
from ..teachers.local_model import load_teacher_model
from .layers import StudentInitError, decoder_layers, select_layers
from .record import save_initialised_student

__all__ = ["INIT_CONFIG_KEY", "init_student", "student_config"]

#: The key of the student's `config.json` recording the layer map (`config.student_init`).
INIT_CONFIG_KEY = "student_init"
# Config fields that hold one entry per decoder layer (Gemma 3 / Qwen3 attention types): sliced with the layers.
_PER_LAYER_FIELDS = ("layer_types",)


def init_student(
    teacher: str | os.PathLike | nn.Module,
    *,
    num_layers: int | None = None,
    strategy: str = "every_other",
    output_dir: str | os.PathLike | None = None,
    teacher_model_init_kwargs: dict[str, Any] | None = None,
    tokenizer=None,
    trust_remote_code: bool = False,
) -> PreTrainedModel:
    """Build a shallower copy of `teacher` to distil into.

    Args:
        teacher (`str`, `os.PathLike` or `nn.Module`): Hub id, local folder (a GGUF file with
            `teacher_model_init_kwargs={"gguf_file": ...}`) or a loaded causal LM.
        num_layers (`int`, *optional*): decoder layers of the student; half the teacher's (rounded up) by default.
        strategy (`str`, *optional*, defaults to `"every_other"`): which teacher layers to copy: `"every_other"`
            (0, 2, 4, ...; needs the default depth), `"uniform"` (evenly spaced, first and last kept), `"first"` or
            `"last"`.
        output_dir (`str`, *optional*): when set, the student, the teacher's tokenizer, `student_init.json` (the
            provenance) and a `README.md` card are written there.
        teacher_model_init_kwargs (`dict`, *optional*): `from_pretrained` keyword arguments for the teacher.
        tokenizer (*optional*): the teacher's tokenizer; read from the teacher when `None`.
        trust_remote_code (`bool`, *optional*, defaults to `False`): allow the teacher's custom code.

    Returns:
        `PreTrainedModel` of the teacher's class; `config.student_init` holds the teacher, the strategy and
        `layer_map` (student layer `i` starts as teacher layer `layer_map[i]`).

    Example:

    ```python
    >>> from hf_distill.students import init_student
    >>> student = init_student("HuggingFaceTB/SmolLM2-135M-Instruct", num_layers=15, output_dir="smollm2-15l")
    >>> student.config.student_init["layer_map"][:3]
    [0, 2, 4]
    ```
    """
    num_teacher_layers = _teacher_config(teacher, teacher_model_init_kwargs, trust_remote_code).num_hidden_layers
    layer_map = select_layers(num_teacher_layers, num_layers, strategy)  # bad arguments fail before any loading
    if isinstance(teacher, nn.Module):
        inner = unwrap_model(teacher)  # read only: the caller's model is neither frozen nor moved
    else:
        inner = load_teacher_model(teacher, teacher_model_init_kwargs, trust_remote_code=trust_remote_code)
    config = student_config(inner.config, layer_map)
    config.student_init = {
        "teacher": _source_name(teacher), "strategy": strategy, "teacher_num_layers": num_teacher_layers,
        "layer_map": layer_map,
    }
    student = AutoModelForCausalLM.from_config(config, dtype=next(inner.parameters()).dtype)
    student.load_state_dict(_mapped_state_dict(inner, student, layer_map))
    if getattr(inner, "generation_config", None) is not None:
        student.generation_config = copy.deepcopy(inner.generation_config)
    if output_dir is not None:
        tokenizer = tokenizer if tokenizer is not None else _teacher_tokenizer(teacher, teacher_model_init_kwargs)
        save_initialised_student(student, tokenizer, output_dir, teacher=teacher, teacher_model=inner)
    return student


def student_config(teacher_config, layer_map: list[int]):
    """The teacher's config with `len(layer_map)` layers (per-layer fields sliced alike)."""
    config = copy.deepcopy(teacher_config)
    config.num_hidden_layers = len(layer_map)
    for name in _PER_LAYER_FIELDS:
        values = getattr(config, name, None)
        if isinstance(values, (list, tuple)) and len(values) == teacher_config.num_hidden_layers:
            setattr(config, name, [values[index] for index in layer_map])
    for name in ("_name_or_path", "quantization_config", "gguf_source"):
        if hasattr(config, name) and name != "_name_or_path":
            delattr(config, name)
    config._name_or_path = ""
    return config


def _mapped_state_dict(teacher: nn.Module, student: nn.Module, layer_map: list[int]) -> dict:
    """The student's state dict filled from the teacher's: student layer `i` from teacher layer `layer_map[i]`,
    everything outside the layers (embeddings, final norm, head) under its own name."""
    prefix, _ = decoder_layers(student, len(layer_map))
    teacher_state = teacher.state_dict()
    mapped = {}
    for key in student.state_dict():
        if key.startswith(prefix + "."):
            index, rest = key[len(prefix) + 1:].split(".", 1)
            source = f"{prefix}.{layer_map[int(index)]}.{rest}"
        else:
            source = key
        mapped[key] = teacher_state[source]
    return mapped


def _teacher_config(teacher, init_kwargs: dict | None, trust_remote_code: bool):
    if isinstance(teacher, nn.Module):
        return unwrap_model(teacher).config
    kwargs = {"trust_remote_code": trust_remote_code, **gguf_tokenizer_kwargs(init_kwargs)}
    for key in ("revision", "cache_dir", "token"):
        if key in (init_kwargs or {}):
            kwargs[key] = init_kwargs[key]
    return AutoConfig.from_pretrained(str(teacher), **kwargs)


def _source_name(teacher) -> str:
    """A Hub id, a local folder's name (never the full path, which says nothing off this machine) or a class name."""
    name = teacher if isinstance(teacher, (str, os.PathLike)) else getattr(unwrap_model(teacher), "name_or_path", "")
    if not name:
        return type(unwrap_model(teacher)).__name__
    return Path(name).name if Path(name).exists() else str(name)


def _teacher_tokenizer(teacher, init_kwargs: dict | None):
    from transformers import AutoTokenizer

    source = str(teacher) if isinstance(teacher, (str, os.PathLike)) else getattr(teacher, "name_or_path", "")
    try:
        return AutoTokenizer.from_pretrained(source, **gguf_tokenizer_kwargs(init_kwargs))
    except (OSError, ValueError) as error:
        raise StudentInitError(
            f"No tokenizer could be read from the teacher {source!r} ({type(error).__name__}): pass the teacher's "
            "tokenizer (`tokenizer=`), since the student must share it."
        ) from error
