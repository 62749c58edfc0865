"""Which checkpoint a run can resume from.

`Trainer` writes `trainer_state.json` last when it saves a checkpoint, so a folder without it was cut off mid-write
(a crash, a SIGKILL, a pre-empted node). transformers would pick such a folder as "the last checkpoint" and fail to
load it; resuming from the newest complete one instead loses nothing that had been finished.

The files written before it (weights, then `optimizer.json`/`.safetensors`, `scheduler.json`, `scaler.json`,
`rng_state*.json`/`.safetensors` of [`hf_distill.checkpoint_state`]) are each replaced atomically, so a folder with
`trainer_state.json` holds them whole. (Processes other than the first write their `rng_state_{rank}` files without
waiting for it; a folder missing one resumes with that process's RNG unrestored, as transformers does.)
"""

from __future__ import annotations

import logging
import os
import re

logger = logging.getLogger(__name__)

__all__ = ["is_complete_checkpoint", "last_complete_checkpoint"]

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
