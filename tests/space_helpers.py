"""Shared by the Space tests and benchmarks/space_load.py: tiny student/teacher folders with a student card, free
ports, loading and serving app.py."""

from __future__ import annotations

import importlib.util
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
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


@contextmanager
def serve_app(app, settings) -> Iterator[tuple[object, str]]:
    """Builds the app and serves it on a free loopback port with the queue `build_demo` set up (never re-queued:
    `demo.queue()` would reset it); yields `(demo, url)` and always closes the server."""
    previous = os.environ.get("GRADIO_ANALYTICS_ENABLED")
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    try:
        demo = app.build_demo(settings)
        port = free_port()
        demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
        try:
            yield demo, f"http://127.0.0.1:{port}/"
        finally:
            demo.close()
    finally:
        if previous is None:
            os.environ.pop("GRADIO_ANALYTICS_ENABLED", None)
        else:
            os.environ["GRADIO_ANALYTICS_ENABLED"] = previous
