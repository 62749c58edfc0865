"""Shared by the Space tests: tiny student/teacher folders with a student card, free ports, loading app.py."""

from __future__ import annotations

import importlib.util
import socket
import sys
from pathlib import Path

STUDENT_CARD = """---
license: mit
tags:
- distillation
---

# tiny-student

A tiny student for tests.

## Training

Nothing to see.

## Benchmark results

| metric | student | teacher |
|---|---|---|
| perplexity | 41.5 | 38.2 |

### Notes

Measured on nothing.

## Limitations

None.
"""


def save_models(root: Path, model_factory) -> tuple[str, str]:
    """A student (hidden 32) with a card and a larger teacher (hidden 64), saved as folders under `root`."""
    student = model_factory.save(root / "tiny-student", "llama", hidden=32, layers=2, seed=0)
    teacher = model_factory.save(root / "tiny-teacher", "llama", hidden=64, layers=2, seed=1)
    (Path(student) / "README.md").write_text(STUDENT_CARD, encoding="utf-8")
    return student, teacher


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def import_app(folder: Path, name: str = "generated_space_app"):
    """Imports the generated `app.py` of a Space folder as a fresh module."""
    spec = importlib.util.spec_from_file_location(name, Path(folder) / "app.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module
