"""The errors of `hf-distill quickstart`, apart from the pipeline so that every stage can raise them."""

from __future__ import annotations

from ..errors import HfDistillError

__all__ = ["QuickstartError", "QuickstartStageError"]


class QuickstartError(HfDistillError, ValueError):
    """A quickstart argument is invalid, or a package it needs is missing (checked before anything is trained)."""


class QuickstartStageError(HfDistillError, RuntimeError):
    """A stage after the benchmark failed; what the earlier stages measured was printed and saved first."""
