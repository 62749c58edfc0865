"""Load weights from safetensors only, and no remote code, unless the caller opts out explicitly.

A `pytorch_model.bin` is a pickle: transformers reads it with `torch.load(weights_only=True)`, PyTorch's allow-list
unpickler, which is far safer than plain pickle but still parses a format built to run code. Safetensors is plain
tensors and JSON, so hf_distill asks `from_pretrained` for `use_safetensors=True` for the student, the teacher and
every model the benchmark or push loads. A folder holding only pickled weights is refused before anything loads, with
the one-line conversion as the fix.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .errors import HfDistillError

__all__ = ["WEIGHT_FILE_PATTERNS", "PickledWeightsError", "check_safetensors_weights", "safe_init_kwargs"]

_PICKLED_WEIGHTS = ("*.bin", "*.pt", "*.pth", "*.ckpt")

#: The files of a saved model's weights (full or adapter, sharded or not), and not the other state a checkpoint
#: folder holds beside them (optimizer.safetensors, rng_state*.safetensors, training_args.json, ...).
WEIGHT_FILE_PATTERNS = (
    "model*.safetensors", "adapter_model*.safetensors", "pytorch_model*.bin", "adapter_model.bin", "*.gguf",
)


class PickledWeightsError(HfDistillError, ValueError):
    """A model folder holds pickled weights only, and safetensors loading was not turned off."""


def safe_init_kwargs(init_kwargs: dict[str, Any] | None, *, trust_remote_code: bool = False) -> dict[str, Any]:
    """`from_pretrained` kwargs with `use_safetensors=True` and `trust_remote_code` added unless given."""
    kwargs = dict(init_kwargs or {})
    kwargs.setdefault("use_safetensors", True)
    kwargs.setdefault("trust_remote_code", trust_remote_code)
    return kwargs


def check_safetensors_weights(source: Any, init_kwargs: dict[str, Any] | None, *, argument: str) -> None:
    """Raise [`PickledWeightsError`] when `source` is a local folder whose weights are pickled only and
    `init_kwargs` does not set `use_safetensors=False`. Hub ids and instantiated models pass (the Hub is checked by
    `from_pretrained` itself, which then names the missing `model.safetensors`)."""
    if not isinstance(source, (str, os.PathLike)) or not Path(source).is_dir():
        return
    if (init_kwargs or {}).get("use_safetensors", True) is False:
        return
    folder = Path(source)
    if any(folder.glob("*.safetensors")) or any(folder.glob("*.safetensors.index.json")):
        return
    pickled = sorted(
        path.name for pattern in _PICKLED_WEIGHTS for path in folder.glob(pattern) if path.name != "training_args.bin"
    )
    if pickled:
        kwargs_flag = "teacher_model_init_kwargs" if argument == "teacher_model" else "model_init_kwargs"
        raise PickledWeightsError(
            f"`{argument}` {str(source)!r} holds pickled weights only ({', '.join(pickled)}); hf_distill loads "
            "safetensors only, because unpickling can run code. If you trust the file, convert it once: "
            f"`AutoModelForCausalLM.from_pretrained({str(source)!r}, use_safetensors=False).save_pretrained(...)`, "
            f"or pass `{kwargs_flag}={{'use_safetensors': False}}` to load it as it is."
        )
