"""The error every bad benchmark input raises, before any model is loaded or run."""

from __future__ import annotations

__all__ = ["BenchmarkInputError"]


class BenchmarkInputError(ValueError):
    """A benchmark argument or dataset that cannot be used: the message names the field, the value and the fix."""
