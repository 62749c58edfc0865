"""`HfDistillError`: the base of every error hf_distill raises on purpose.

Each error also keeps the builtin it has always been (most are `ValueError`), so `except ValueError` keeps working;
`except HfDistillError` catches exactly the problems hf_distill diagnosed, with a message that names the field, the
value and the fix. `docs/errors.md` lists them.
"""

from __future__ import annotations

__all__ = ["HfDistillError", "MissingDependencyError"]


class HfDistillError(Exception):
    """A problem hf_distill found in its inputs or state; the message says what and how to fix it."""


class MissingDependencyError(HfDistillError, ImportError):
    """An optional package a feature needs is not installed; the message names the package and the extra."""
