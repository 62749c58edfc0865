"""The models under test: load ids and paths (full models and PEFT adapter folders), accept model objects (PEFT
ones too), find each model's tokenizer, and keep them in eval mode only while the benchmark runs."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import AutoModelForCausalLM, PreTrainedTokenizerBase

from ..heads import is_quantized, unwrap_model
from ..safe_loading import check_safetensors_weights, safe_init_kwargs
from ..vocabulary import find_tokenizer
from .errors import BenchmarkInputError

logger = logging.getLogger(__name__)

__all__ = [
    "ModelUnderTest",
    "check_model_source",
    "eval_mode",
    "load_model_under_test",
    "resolve_tokenizer",
]


@dataclass
class ModelUnderTest:
    """A model ready to benchmark.

    Args:
        role (`str`): `"student"`, `"teacher"` or `"baseline"`.
        name (`str`): how the report names it (the id or path it came from, else its `name_or_path`).
        model (`nn.Module`): the causal LM (a `PeftModel` for adapters).
        tokenizer (`PreTrainedTokenizerBase`): its tokenizer.
        source (`str`, *optional*): the id or path it was loaded from; None for objects.
        tokenizer_is_own (`bool`, *optional*, defaults to `True`): False when no tokenizer was given or found for it
            and it reads the student's (then only its size and special tokens can be checked against the student's).
    """

    role: str
    name: str
    model: nn.Module
    tokenizer: PreTrainedTokenizerBase
    source: str | None = None
    tokenizer_is_own: bool = True


def check_model_source(value: Any, field: str) -> list[str]:
    """Problems with a model argument (`student=`, `teacher=`, `baseline=`), without loading anything."""
    if value is None or isinstance(value, (str, os.PathLike, nn.Module)):
        return []
    return [f"`{field}` must be a Hub id, a local path or a model, got {type(value).__name__}."]


def _name_or_path(model: nn.Module) -> str:
    return str(getattr(unwrap_model(model), "name_or_path", "") or "")


def _is_placed(model: nn.Module) -> bool:
    """Quantized and `device_map` models stay where they were loaded."""
    return is_quantized(model) or bool(getattr(unwrap_model(model), "hf_device_map", None))


def _load(source: str, device: torch.device) -> nn.Module:
    kwargs = safe_init_kwargs({"dtype": "auto"})
    if os.path.isfile(os.path.join(source, "adapter_config.json")):
        from peft import AutoPeftModelForCausalLM

        model = AutoPeftModelForCausalLM.from_pretrained(source, **kwargs)
    else:
        check_safetensors_weights(source, kwargs, argument="model")
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    return model.to(device)


def _tokenizer_candidates(value: str | os.PathLike | nn.Module) -> list[str]:
    """Where a model's tokenizer may be saved: its own id/folder, then the base model of an adapter."""
    if isinstance(value, (str, os.PathLike)):
        source = os.fspath(value)
        config_path = os.path.join(source, "adapter_config.json")
        base = None
        if os.path.isfile(config_path):
            with open(config_path) as handle:
                base = json.load(handle).get("base_model_name_or_path")
        return [name for name in (source, base) if name]
    peft_config = next(iter(getattr(value, "peft_config", {}).values()), None)
    return [name for name in (_name_or_path(value), getattr(peft_config, "base_model_name_or_path", None)) if name]


def resolve_tokenizer(
    role: str,
    value: str | os.PathLike | nn.Module,
    tokenizer: PreTrainedTokenizerBase | None,
    fallback: PreTrainedTokenizerBase | None = None,
) -> PreTrainedTokenizerBase:
    """`tokenizer` when given, else the one saved with the model (or its adapter's base), else `fallback` (the
    student's); found before the model is loaded, so a missing one fails fast."""
    if tokenizer is not None:
        return tokenizer
    for candidate in _tokenizer_candidates(value):
        found = find_tokenizer(candidate)  # None without tokenizer files (or with a stand-in built from the config)
        if found is not None:
            return found
    if fallback is not None:
        logger.info("No tokenizer saved with the %s: using the student's.", role)
        return fallback
    shown = value if isinstance(value, (str, os.PathLike)) else type(value).__name__
    argument = "tokenizer" if role == "student" else f"{role}_tokenizer"
    raise BenchmarkInputError(f"No tokenizer found for the {role} ({shown}): pass `{argument}=`.")


def load_model_under_test(
    role: str,
    value: str | os.PathLike | nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    *,
    device: torch.device | None,
) -> ModelUnderTest:
    """Load `value` (an id or path, onto `device` or the first GPU or the CPU) or take it as is (an object, moved to
    `device` only when one is given and it is not quantized or dispatched)."""
    source = os.fspath(value) if isinstance(value, (str, os.PathLike)) else None
    if source is not None:
        model = _load(source, device or torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    else:
        model = value
        if device is not None and not _is_placed(model):
            model.to(device)
    return ModelUnderTest(role=role, name=source or _name_or_path(model) or role, model=model, tokenizer=tokenizer,
                          source=source)


@contextlib.contextmanager
def eval_mode(models: Sequence[nn.Module]) -> Iterator[None]:
    """Put `models` in eval mode and restore each one's training flag afterwards (a trainer's student keeps
    training after `trainer.benchmark()`)."""
    modes = [model.training for model in models]
    try:
        for model in models:
            model.eval()
        yield
    finally:
        for model, mode in zip(models, modes, strict=True):
            model.train(mode)
