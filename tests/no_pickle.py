"""Make every way of unpickling raise, to prove a code path reads safetensors and JSON only: `pickle.load`,
`pickle.loads`, `pickle.Unpickler` and `torch.load` (PyTorch's allow-list loader, `weights_only=True`, included)."""

import pickle

import torch


class _Refused:
    """Raises when called or instantiated. A class, not a function: libraries (nltk) subclass `pickle.Unpickler`
    when they are imported, which must keep working."""

    def __init__(self, *args, **kwargs):
        raise AssertionError("something was unpickled")

    def __call__(self, *args, **kwargs):
        raise AssertionError("something was unpickled")


def refuse_unpickling(patch=setattr) -> None:
    """Replace the unpickling entry points; pass `monkeypatch.setattr` in a test to have them restored after it."""
    for name in ("load", "loads", "Unpickler"):
        patch(pickle, name, _Refused)
    patch(torch, "load", _Refused)
