"""hf_distill: distil LLMs into small students on the Hugging Face stack, and publish them with an honest card.

The public names below load on first use (`import hf_distill` stays fast); subpackages, bottom to top: `losses`,
`formats`, `teachers`, `offline`, `benchmark`, `publish`, `training`, `quickstart`, `cli` (see CONTRIBUTING.md).
"""

from ._aliases import install as _install_old_paths
from ._lazy import lazy_namespace
from ._version import __version__
from .quiet import silence_unactionable_logs

_EXPORTS = {
    "DistillationCollator": ".training.collator",
    "DistillationConfig": ".training.config",
    "DistillationConfigError": ".training.config",
    "DistillationTrainer": ".training.trainer",
    "HfDistillError": ".errors",
    "distillation_loss": ".losses",
}

__all__ = [
    "DistillationCollator",
    "DistillationConfig",
    "DistillationConfigError",
    "DistillationTrainer",
    "HfDistillError",
    "__version__",
    "distillation_loss",
]

__getattr__, __dir__ = lazy_namespace(__name__, _EXPORTS)
_install_old_paths()
silence_unactionable_logs()  # before trl/peft import bitsandbytes, which logs an unactionable line at import
