"""The error every bad benchmark input raises, before any model is loaded or run."""

from __future__ import annotations

from ..errors import HfDistillError

__all__ = ["BenchmarkInputError"]


class BenchmarkInputError(HfDistillError, ValueError):
    """A benchmark argument or dataset that cannot be used: the message names the field, the value and the fix."""
