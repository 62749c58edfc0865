"""Training: `DistillationConfig`, `DistillationTrainer` (TRL's `SFTTrainer` with a distillation loss), its collator,
the checks run before any model loads, and pickle-free checkpoints (`CheckpointingMixin`).

The trainer sits above `benchmark/` and `publish/`: it benchmarks itself, writes its provenance and card, and pushes
(`push_to_hub`), while neither of those ever needs the trainer.
"""

from .._lazy import lazy_namespace

_EXPORTS = {
    "CheckpointStateError": ".checkpoint_state",
    "DistillationCollator": ".collator",
    "DistillationConfig": ".config",
    "DistillationConfigError": ".config",
    "DistillationTrainer": ".trainer",
    "HardwareSFTConfig": ".config",
    "ModelSetupError": ".preflight",
    "last_complete_checkpoint": ".checkpoints",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_namespace(__name__, _EXPORTS)
