"""Which checkpoint a run can resume from.

`Trainer` writes `trainer_state.json` last when it saves a checkpoint, so a folder without it was cut off mid-write
(a crash, a SIGKILL, a pre-empted node). transformers would pick such a folder as "the last checkpoint" and fail to
load it; resuming from the newest complete one instead loses nothing that had been finished.

The files written before it (weights, then `optimizer.json`/`.safetensors`, `scheduler.json`, `scaler.json`,
`rng_state*.json`/`.safetensors` of [`hf_distill.checkpoint_state`]) are each replaced atomically, so a folder with
`trainer_state.json` holds them whole. (Processes other than the first write their `rng_state_{rank}` files without
waiting for it; a folder missing one resumes with that process's RNG unrestored, as transformers does.)

Under FSDP with `SHARDED_STATE_DICT`, checkpoints hold the engine's sharded files (resuming reads them), and
transformers' `save_model` writes no weights at all; the final save gathers a full state dict instead, so the output
folder loads with plain `from_pretrained` ([`full_state_dict_for_final_save`]).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re

logger = logging.getLogger(__name__)

__all__ = ["full_state_dict_for_final_save", "is_complete_checkpoint", "last_complete_checkpoint"]

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
_TRAINER_STATE = "trainer_state.json"


def is_complete_checkpoint(path: str | os.PathLike) -> bool:
    return os.path.isfile(os.path.join(path, _TRAINER_STATE))


def last_complete_checkpoint(output_dir: str | os.PathLike) -> str | None:
    """The newest `checkpoint-N` folder of `output_dir` whose save finished, or None; warns about skipped ones."""
    if not os.path.isdir(output_dir):
        return None
    steps = sorted(
        ((int(m.group(1)), name) for name in os.listdir(output_dir) if (m := _CHECKPOINT.match(name))), reverse=True
    )
    for _, name in steps:
        path = os.path.join(output_dir, name)
        if os.path.isdir(path) and is_complete_checkpoint(path):
            return path
        logger.warning("Skipping %s: its save did not finish (no %s).", path, _TRAINER_STATE)
    return None


@contextlib.contextmanager
def full_state_dict_for_final_save(trainer, *, internal: bool):
    """Within this block, a final `save_model` (`internal=False`) of an FSDP trainer set to a sharded state dict saves
    the full one: transformers saves weights only when the plugin's type is `FULL_STATE_DICT`, and
    `Accelerator.get_state_dict` always gathers the full state dict (on CPU, rank 0 holding it). Checkpoints
    (`internal=True`) and every other engine are left as they are."""
    plugin = trainer.accelerator.state.fsdp_plugin if getattr(trainer, "is_fsdp_enabled", False) else None
    if internal or plugin is None or "FULL_STATE_DICT" in str(plugin.state_dict_type):
        yield
        return
    from torch.distributed.fsdp import StateDictType

    sharded, plugin.state_dict_type = plugin.state_dict_type, StateDictType.FULL_STATE_DICT
    try:
        yield
    finally:
        plugin.state_dict_type = sharded
