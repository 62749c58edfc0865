"""NaN/inf in a teacher's outputs: detected on each step (online) or batch (caching), answered with the likely fix."""

from __future__ import annotations

import torch

from .errors import HfDistillError

__all__ = ["NonFiniteTeacherError", "check_teacher_finite"]


class NonFiniteTeacherError(HfDistillError, ValueError):
    """The teacher produced NaN or inf: its targets would turn the loss (and the student's weights) into NaN."""


def check_teacher_finite(values: torch.Tensor, *, dtype: torch.dtype | None, what: str, fix_flag: str) -> None:
    """Raise [`NonFiniteTeacherError`] when `values` (any shape) holds NaN or inf.

    One reduction over `values` and one device sync: cheap beside the teacher's forward that made them.

    Args:
        values (`torch.Tensor`): the teacher's hidden states `(tokens, hidden)` or log-probabilities `(tokens, k)`.
        dtype (`torch.dtype`, *optional*): the teacher's compute dtype, to name the likely cause.
        what (`str`): what `values` are, for the message.
        fix_flag (`str`): where the user sets the teacher's `dtype` (argument and CLI flag).
    """
    finite = torch.isfinite(values)
    if bool(finite.all()):
        return
    num_bad = int((~finite).sum())
    if dtype == torch.float16:
        cause = ("The teacher runs in float16, whose range ends at 65,504: its activations overflowed. Load it in "
                 f"bfloat16 or float32 ({fix_flag}).")
    else:
        cause = (f"The teacher runs in {dtype}; its weights may hold NaN/inf (check the checkpoint), or its "
                 f"activations overflowed: load it in float32 ({fix_flag}).")
    raise NonFiniteTeacherError(f"The teacher's {what} hold {num_bad} NaN/inf values of {values.numel()}. {cause}")
