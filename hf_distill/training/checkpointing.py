"""`CheckpointingMixin`: how [`DistillationTrainer`] saves checkpoints and resumes from them, apart from the loss.

It overrides `Trainer`'s checkpoint hooks so that a checkpoint holds no pickle (the formats are in
[`hf_distill.training.checkpoint_state`]; what stays transformers' to write is said there), and lets
`train(resume_from_checkpoint=True)` skip a checkpoint whose save was cut off
([`hf_distill.training.checkpoints`]). Each hook falls back to `Trainer`'s own where transformers' format applies,
so the mixin goes before the `Trainer` subclass in the bases:
`DistillationTrainer(CheckpointingMixin, TokenStatsMixin, SFTTrainer)`.
"""

from __future__ import annotations

from . import checkpoint_state
from .checkpoint_state import CheckpointStateError
from .checkpoints import last_complete_checkpoint

__all__ = ["CheckpointingMixin"]


class CheckpointingMixin:
    """Pickle-free checkpoints and resumption from the last complete one, for a `transformers.Trainer` subclass."""

    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs):
        """`Trainer.train`, except that `resume_from_checkpoint=True` skips checkpoints whose save was cut off."""
        if resume_from_checkpoint is True:
            resume_from_checkpoint = last_complete_checkpoint(self.args.output_dir)
            if resume_from_checkpoint is None:
                raise CheckpointStateError(
                    f"No complete checkpoint to resume from in {self.args.output_dir!r}. Start without "
                    "`resume_from_checkpoint` (--resume_from_checkpoint), or point it at a checkpoint folder."
                )
        return super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)

    # -- checkpoints without pickle (hf_distill.checkpoint_state: formats, and what is left to transformers) ---------

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        scheduler = super().create_scheduler(num_training_steps, optimizer)
        checkpoint_state.check_scheduler_state(self)  # before any step: checkpoints store it as JSON
        return scheduler

    def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
        if not checkpoint_state.save_optimizer_and_scheduler(self, output_dir):
            super()._save_optimizer_and_scheduler(output_dir)

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        if not checkpoint_state.load_optimizer_and_scheduler(self, checkpoint):
            super()._load_optimizer_and_scheduler(checkpoint)

    def _save_scaler(self, output_dir: str) -> None:
        if not checkpoint_state.save_scaler(self, output_dir):
            super()._save_scaler(output_dir)

    def _load_scaler(self, checkpoint: str | None) -> None:
        if not checkpoint_state.load_scaler(self, checkpoint):
            super()._load_scaler(checkpoint)

    def _save_rng_state(self, output_dir: str) -> None:
        if not checkpoint_state.save_rng_state(self, output_dir):
            super()._save_rng_state(output_dir)

    def _load_rng_state(self, checkpoint: str | None) -> None:
        if not checkpoint_state.load_rng_state(self, checkpoint):
            super()._load_rng_state(checkpoint)

    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        # `Trainer._save` pickles the arguments into training_args.bin: keep the Hub token out of that file, which
        # `save_training_args` then replaces with training_args.json (no pickle left in the folder).
        token, self.args.hub_token = self.args.hub_token, None
        try:
            super()._save(output_dir, state_dict=state_dict)
            if self.args.should_save:
                checkpoint_state.save_training_args(self.args, output_dir or self.args.output_dir)
        finally:
            self.args.hub_token = token
