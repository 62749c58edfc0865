"""Run an example script's `main()` as `accelerate launch` starts it, on CPU, and record what the engine did.

python -m accelerate.commands.launch --config_file CPU_VARIANT.yaml -m tests.scripts.launch_example \
    SCRIPT RECORD_JSON -- SCRIPT_ARGS...

accelerate (1.16) enables FSDP and DeepSpeed for accelerator devices only and leaves CPU processes in plain DDP, so
this wrapper switches its state to the engine the launcher asked for (`ACCELERATE_USE_FSDP` /
`ACCELERATE_USE_DEEPSPEED`), as it does on GPUs, and (FSDP2) gathers the full state dict without `cpu_offload` (see
`tests/scripts/fsdp_train.py`). Everything else is the example script as a user runs it.
"""

import importlib.util
import json
import os
import sys
from pathlib import Path

import torch

from tests.scripts.fsdp_train import allow_deepspeed_on_cpu, allow_fsdp_on_cpu, gather_fsdp2_state_dict_on_cpu


def _load_script(path: str):
    spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module while the file executes
    spec.loader.exec_module(module)
    return module


def main():
    script, record_path, separator, *script_args = sys.argv[1:]
    assert separator == "--", "usage: launch_example SCRIPT RECORD_JSON -- SCRIPT_ARGS..."
    on_cpu = not torch.cuda.is_available()  # on GPUs accelerate sets the engines up itself
    if on_cpu and os.environ.get("ACCELERATE_USE_FSDP") == "true":
        allow_fsdp_on_cpu()
        gather_fsdp2_state_dict_on_cpu()
    if on_cpu and os.environ.get("ACCELERATE_USE_DEEPSPEED") == "true":
        allow_deepspeed_on_cpu()
    trainer = _load_script(script).main(script_args)
    if trainer.is_world_process_zero():
        state = trainer.accelerator.state
        record = {
            "distributed_type": str(state.distributed_type).split(".")[-1],
            "num_processes": state.num_processes,
            "mixed_precision": str(state.mixed_precision),
            "global_step": trainer.state.global_step,
            "losses": [entry["loss"] for entry in trainer.state.log_history if "loss" in entry],
            "fsdp_version": state.fsdp_plugin.fsdp_version if trainer.is_fsdp_enabled else None,
            "zero_stage": state.deepspeed_plugin.zero_stage if trainer.is_deepspeed_enabled else None,
            "teacher_engine": type(trainer.teacher.model).__name__,
        }
        Path(record_path).write_text(json.dumps(record))


if __name__ == "__main__":
    main()
