"""Old import paths of moved modules (`hf_distill.trainer`, `hf_distill.provenance`, `hf_distill.data.format`, ...)
resolve to the module that now holds the code: the same module object, so names, `isinstance` and monkeypatching
behave as before. New code imports the new paths (tests/test_layers.py refuses the old ones inside the package)."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

__all__ = ["OLD_PATHS", "install"]

#: old module path -> the module's path now (submodules of an old package follow it)
OLD_PATHS = {
    "hf_distill.checkpoint_state": "hf_distill.training.checkpoint_state",
    "hf_distill.checkpoints": "hf_distill.training.checkpoints",
    "hf_distill.collator": "hf_distill.training.collator",
    "hf_distill.config": "hf_distill.training.config",
    "hf_distill.preflight": "hf_distill.training.preflight",
    "hf_distill.trainer": "hf_distill.training.trainer",
    "hf_distill.card": "hf_distill.publish.card",
    "hf_distill.licenses": "hf_distill.publish.licenses",
    "hf_distill.provenance": "hf_distill.publish.provenance",
    "hf_distill.space": "hf_distill.publish.space",
    "hf_distill.data.card": "hf_distill.offline.card",
    "hf_distill.data.checks": "hf_distill.formats.checks",
    "hf_distill.data.codec": "hf_distill.formats.codec",
    "hf_distill.data.format": "hf_distill.formats.cache",
    "hf_distill.data.generation": "hf_distill.offline.generation",
    "hf_distill.data.logit_cache": "hf_distill.offline.logit_cache",
    "hf_distill.data.publish": "hf_distill.publish.dataset",
    "hf_distill.data.shards": "hf_distill.offline.shards",
    "hf_distill.data.teacher": "hf_distill.offline.teacher",
    "hf_distill.data.tokenization": "hf_distill.formats.tokenization",
    "hf_distill.data.truncation": "hf_distill.formats.truncation",
}


def _current_path(name: str) -> str | None:
    for old, new in OLD_PATHS.items():
        if name == old or name.startswith(old + "."):
            return new + name[len(old):]
    return None


class _OldPathFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers only for the old paths listed, none of which exists as a file any more."""

    def find_spec(self, fullname, path=None, target=None):
        return importlib.util.spec_from_loader(fullname, self) if _current_path(fullname) else None

    def create_module(self, spec):
        module = importlib.import_module(_current_path(spec.name))
        spec.loader_state = module.__spec__  # the import system now gives the module this spec: keep its own
        return module

    def exec_module(self, module) -> None:  # the module ran when it was imported under its own name
        module.__spec__ = module.__spec__.loader_state


def install() -> None:
    """First in `sys.meta_path`: an editable install's finder would otherwise map an old path to a stale file."""
    if not any(isinstance(finder, _OldPathFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _OldPathFinder())
