"""Which of the teacher's decoder layers a shallower student keeps, and where a model holds its layers."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ..errors import HfDistillError

if TYPE_CHECKING:  # `hf-distill --help` reads LAYER_STRATEGIES from here: torch loads only when a model is cut
    from torch import nn

__all__ = ["LAYER_STRATEGIES", "StudentInitError", "decoder_layers", "select_layers"]

#: `strategy` values: which teacher layers the student's layers start from.
LAYER_STRATEGIES = ("every_other", "uniform", "first", "last")


class StudentInitError(HfDistillError, ValueError):
    """A bad `num_layers` or `strategy` for `init_student` (`hf-distill init-student`)."""


def _every_other(num_teacher_layers: int, num_layers: int) -> list[int]:
    return list(range(0, num_teacher_layers, 2))


def _uniform(num_teacher_layers: int, num_layers: int) -> list[int]:
    if num_layers == 1:
        return [0]
    step = (num_teacher_layers - 1) / (num_layers - 1)  # first and last layer kept, the rest evenly spaced
    return [round(index * step) for index in range(num_layers)]


_SELECTORS = {
    "every_other": _every_other,  # DistilBERT: layers 0, 2, 4, ...
    "uniform": _uniform,
    "first": lambda total, count: list(range(count)),
    "last": lambda total, count: list(range(total - count, total)),
}


def select_layers(num_teacher_layers: int, num_layers: int | None, strategy: str) -> list[int]:
    """The teacher layer each student layer is copied from (`layer_map[i]` for student layer `i`), in order.

    `num_layers=None` means half the teacher's depth (rounded up). `"every_other"` keeps layers 0, 2, 4, ..., so it
    needs exactly that many layers; `"uniform"` spaces any number evenly, first and last included.
    """
    if strategy not in _SELECTORS:
        raise StudentInitError(
            f"`strategy` (--strategy) is {strategy!r}; choose one of {', '.join(LAYER_STRATEGIES)}."
        )
    half = math.ceil(num_teacher_layers / 2)
    count = half if num_layers is None else num_layers
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= num_teacher_layers:
        raise StudentInitError(
            f"`num_layers` (--num_layers) is {num_layers!r}, but the teacher has {num_teacher_layers} layers: choose "
            f"a whole number from 1 to {num_teacher_layers} (e.g. {half}, half the depth)."
        )
    if strategy == "every_other" and count != half:
        raise StudentInitError(
            f"`strategy='every_other'` keeps layers 0, 2, 4, ... of the teacher's {num_teacher_layers}: that is "
            f"{half} layers, but `num_layers` (--num_layers) is {count}. Use num_layers={half}, or "
            "strategy='uniform' for any other depth."
        )
    return _SELECTORS[strategy](num_teacher_layers, count)


def decoder_layers(model: nn.Module, num_layers: int) -> tuple[str, nn.ModuleList]:
    """The qualified name and the `nn.ModuleList` of a causal LM's decoder layers (`model.layers` for Llama, Qwen,
    Gemma; `transformer.h` for GPT-2): the first module list with one entry per hidden layer."""
    from torch import nn

    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == num_layers:
            return name, module
    raise StudentInitError(
        f"{type(model).__name__} has no list of {num_layers} decoder layers (its config's num_hidden_layers): "
        "init_student supports decoder-only causal LMs that keep their layers in one `nn.ModuleList`."
    )
