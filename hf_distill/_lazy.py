"""Lazy package namespaces, as TRL's: a package lists its public names and the module each lives in, and a name is
imported on first use. `import hf_distill` therefore loads neither torch nor transformers."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable

__all__ = ["lazy_namespace"]


def lazy_namespace(package: str, exports: dict[str, str]) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """The `__getattr__` and `__dir__` of `package`: `exports` maps each public name to its module, relative to
    `package` (e.g. `{"DistillationTrainer": ".training.trainer"}`); a submodule name imports the submodule."""
    module = sys.modules[package]

    def __getattr__(name: str) -> object:
        if name in exports:
            value = getattr(importlib.import_module(exports[name], package), name)
        elif not name.startswith("__") and importlib.util.find_spec(f"{package}.{name}") is not None:
            value = importlib.import_module(f"{package}.{name}")
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        setattr(module, name, value)  # later lookups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(module)) | set(exports))

    return __getattr__, __dir__
