"""hf_distill: distil LLMs into small students on the Hugging Face stack, and publish them with an honest card."""

from .cli.quiet import silence_unactionable_logs

silence_unactionable_logs()  # before trl/peft import bitsandbytes, which logs an unactionable line at import

from .collator import DistillationCollator  # noqa: E402
from .config import DistillationConfig, DistillationConfigError  # noqa: E402
from .losses import distillation_loss  # noqa: E402
from .trainer import DistillationTrainer  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "DistillationCollator",
    "DistillationConfig",
    "DistillationConfigError",
    "DistillationTrainer",
    "__version__",
    "distillation_loss",
]
