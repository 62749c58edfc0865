"""hf_distill: distil LLMs into small students on the Hugging Face stack, and publish them with an honest card."""

from .collator import DistillationCollator
from .config import DistillationConfig, DistillationConfigError
from .losses import distillation_loss
from .trainer import DistillationTrainer

__version__ = "0.1.0"

__all__ = [
    "DistillationCollator",
    "DistillationConfig",
    "DistillationConfigError",
    "DistillationTrainer",
    "__version__",
    "distillation_loss",
]
