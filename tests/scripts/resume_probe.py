"""What a resumed run really did, seen from a callback (the trainer's own log history cannot tell: a resumed run
loads the history of the steps it skipped): the steps this process executed, and the optimizer moments it started
from and had after a given step. Also `with_dropout`, so that the RNG state a resume restores changes the weights."""

import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import TrainerCallback


def with_dropout(model, probability: float = 0.3):
    """Attention dropout on a model built with none: the dropout masks come from the global RNG, so a resume that
    does not restore the checkpoint's RNG state trains with other masks than the uninterrupted run."""
    modules = [module for module in model.modules() if hasattr(module, "attention_dropout")]
    assert modules, f"{type(model).__name__} has no attention dropout"
    for module in modules:
        module.attention_dropout = probability
    model.config.attention_dropout = probability
    return model


def optimizer_moments(optimizer) -> dict[str, torch.Tensor]:
    """Every tensor of the optimizer's per-parameter state (Adam's `step`, `exp_avg`, `exp_avg_sq`), copied."""
    return {
        f"{index}.{name}": value.detach().clone().cpu()
        for index, state in optimizer.state_dict()["state"].items()
        for name, value in state.items()
        if isinstance(value, torch.Tensor)
    }


class ResumeProbe(TrainerCallback):
    """Records the steps this process executed, the optimizer moments at the start of `train()`, and those after
    step `snapshot_step`; with `folder`, each process also writes them there as `probe-<tag>-<rank>.json` and
    `probe-<tag>-<rank>-start.safetensors` / `-snapshot.safetensors`."""

    def __init__(self, snapshot_step: int | None = None, folder: str | None = None, tag: str = "run", rank: int = 0):
        self.snapshot_step, self.folder, self.tag, self.rank = snapshot_step, folder, tag, rank
        self.executed_steps: list[int] = []
        self.moments_at_start: dict[str, torch.Tensor] = {}
        self.moments_at_snapshot: dict[str, torch.Tensor] = {}

    def on_train_begin(self, args, state, control, optimizer=None, **kwargs):
        self.moments_at_start = optimizer_moments(optimizer)

    def on_step_end(self, args, state, control, optimizer=None, **kwargs):
        self.executed_steps.append(state.global_step)
        if state.global_step == self.snapshot_step:
            self.moments_at_snapshot = optimizer_moments(optimizer)

    def on_train_end(self, args, state, control, **kwargs):
        if self.folder is None:
            return
        folder = Path(self.folder)
        folder.mkdir(parents=True, exist_ok=True)
        tag = f"{self.tag}-{self.rank}"
        (folder / f"probe-{tag}.json").write_text(json.dumps({"executed_steps": self.executed_steps}))
        for name, moments in (("start", self.moments_at_start), ("snapshot", self.moments_at_snapshot)):
            if moments:
                save_file(moments, str(folder / f"probe-{tag}-{name}.safetensors"))
