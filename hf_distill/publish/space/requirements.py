"""`requirements.txt` of a generated Space: the installed versions of what the app imports, pinned."""

from __future__ import annotations

import sys
from importlib import metadata

from packaging.version import Version

from .errors import SpaceConfigError

CPU_HARDWARE = ("cpu-basic", "cpu-upgrade")
CPU_TORCH_INDEX = "https://download.pytorch.org/whl/cpu"
# The Gradio release app.py is written for and tested with (tests/test_space_app.py runs it). Writing a Space folder
# needs no Gradio, since it is files: README.md's `sdk_version` and requirements.txt pin this version, so the Space
# runs the Gradio the app was tested with whatever is installed here. Running the app locally needs Gradio.
GRADIO_SDK_VERSION = "6.31.0"
# What app.py imports besides gradio; all are hf_distill's own dependencies, pinned to the installed versions.
APP_PACKAGES = ("torch", "transformers", "accelerate", "huggingface_hub")


def installed_version(package: str) -> str:
    """The installed version without its local label (`2.13.0+cpu` -> `2.13.0`): PyPI knows no local labels."""
    try:
        return Version(metadata.version(package)).public
    except metadata.PackageNotFoundError:
        raise SpaceConfigError([f"The Space app needs `{package}`, which is not installed: install it."]) from None


def python_version() -> str:
    """`major.minor` of this interpreter, for the README's `python_version`."""
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def space_requirements(*, hardware: str, adapter: bool) -> str:
    """The text of `requirements.txt`.

    Args:
        hardware (`str`): Space hardware flavour; CPU flavours install torch's CPU-only wheel.
        adapter (`bool`): Whether a model is a PEFT adapter (adds `peft`).

    Returns:
        `str`: One pinned requirement a line, with comments saying why.
    """
    packages = APP_PACKAGES + (("peft",) if adapter else ())
    lines = ["# Pinned to the versions this Space was generated and tested with."]
    if hardware in CPU_HARDWARE:
        lines += [
            "# CPU hardware: torch's CPU-only wheel is a fraction of the default CUDA wheel's size, so the Space",
            "# builds and starts faster. Remove this line when moving the Space to GPU hardware.",
            f"--extra-index-url {CPU_TORCH_INDEX}",
        ]
    elif hardware == "zero-a10g":
        lines.append(
            "# ZeroGPU supports a fixed list of torch versions: see https://huggingface.co/docs/hub/spaces-zerogpu"
        )
    lines += [f"{package}=={installed_version(package)}" for package in packages]
    lines += ["# The Gradio the app is tested with (README's `sdk_version`).", f"gradio=={GRADIO_SDK_VERSION}"]
    return "\n".join(lines) + "\n"
