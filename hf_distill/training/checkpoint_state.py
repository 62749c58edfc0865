"""Checkpoint state without pickle: optimizer, LR scheduler, RNG and grad-scaler states as safetensors + JSON.

`Trainer` checkpoints hold `optimizer.pt`, `scheduler.pt`, `scaler.pt`, `rng_state.pth` (all `torch.save` pickles,
read back with `torch.load(weights_only=True)`) and `training_args.bin` (a pickle of the whole `TrainingArguments`).
[`DistillationTrainer`] writes, instead:

| state | files |
|---|---|
| optimizer | `optimizer.json` (param groups, non-tensor values) + `optimizer.safetensors` (`state.0.exp_avg`, ...) |
| LR scheduler | `scheduler.json` |
| grad scaler (fp16) | `scaler.json` |
| RNG | `rng_state.json` + `rng_state.safetensors` (`rng_state_{rank}.*` per process when `world_size > 1`) |
| arguments | `training_args.json` (`to_dict()`, every `*_token` masked; nothing reads it back) |

Each JSON file is written after its tensors, atomically, so a JSON file present means its state is whole.

Deferred to transformers, whose formats these are: DeepSpeed, FSDP, XLA/TPU and SageMaker model parallel (their
optimizer state is sharded and saved by their own engines), an optimizer whose state holds something other than
tensors, numbers, strings, lists and dicts (a warning is logged), and checkpoints written by plain transformers
(read as transformers reads them, with `torch.load(weights_only=True)`, PyTorch's allow-list loader).
"""

from __future__ import annotations

import json
import logging
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..errors import HfDistillError

logger = logging.getLogger(__name__)

__all__ = [
    "CheckpointStateError",
    "TRAINING_ARGS_NAME",
    "check_scheduler_state",
    "decode_state",
    "encode_state",
    "load_optimizer_and_scheduler",
    "load_rng_state",
    "load_scaler",
    "load_state",
    "save_optimizer_and_scheduler",
    "save_rng_state",
    "save_scaler",
    "save_state",
    "save_training_args",
]

OPTIMIZER_STATE = "optimizer"
SCHEDULER_STATE = "scheduler"
SCALER_STATE = "scaler"
TRAINING_ARGS_NAME = "training_args.json"
_PICKLED_TRAINING_ARGS = "training_args.bin"
# JSON objects with exactly one of these keys stand for a value JSON has no type for.
_TENSOR, _NDARRAY, _TUPLE, _ITEMS = "__tensor__", "__ndarray__", "__tuple__", "__items__"
_TAGS = (_TENSOR, _NDARRAY, _TUPLE, _ITEMS)
# Accelerators whose RNG transformers saves beside the CPU's (XLA defers to transformers altogether).
_ACCELERATORS = ("cuda", "npu", "hpu", "mlu", "musa")
_UNSUPPORTED_FIX = (
    "safetensors + JSON hold tensors, numpy arrays, numbers, strings, None and lists/tuples/dicts of those"
)


class CheckpointStateError(HfDistillError, ValueError):
    """A training state cannot be written without pickle, a checkpoint's state files are incomplete, or there is no
    complete checkpoint to resume from."""


# -- the codec: any nest of dicts, lists and tuples of tensors and JSON scalars ------------------------------------


def encode_state(state: Any, *, what: str) -> tuple[Any, dict[str, torch.Tensor]]:
    """Split `state` into a JSON-able tree and the tensors it held.

    Args:
        state (`Any`): a state dict (`optimizer.state_dict()`, `random.getstate()`, ...): dicts (any hashable JSON
            scalar keys), lists, tuples, tensors, numpy arrays, `None`, `bool`, `int`, `float`, `str`.
        what (`str`): names the state in errors (`"optimizer"`).

    Returns:
        `(tree, tensors)`: `tree` holds `{"__tensor__": key}` where a tensor was; `tensors` maps each key (the path
        of the tensor in `state`, like `state.0.exp_avg`) to the tensor, detached and on its own storage.

    Raises:
        [`CheckpointStateError`]: a value of another type (named with its path).
    """
    tensors: dict[str, torch.Tensor] = {}
    storages: set[int] = set()

    def tensor_key(path: str, tensor: torch.Tensor) -> str:
        key = path or what
        while key in tensors:  # a key with dots in it could collide with a nested path
            key += "_"
        tensor = tensor.detach()
        storage = tensor.untyped_storage().data_ptr()
        # safetensors refuses tensors sharing memory (bitsandbytes shares its quantization maps): copy those.
        if storage in storages or not tensor.is_contiguous():
            tensor = tensor.clone(memory_format=torch.contiguous_format)
        storages.add(storage)
        tensors[key] = tensor
        return key

    def encode(value: Any, path: str) -> Any:
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, torch.Tensor):
            return {_TENSOR: tensor_key(path, value)}
        if isinstance(value, np.ndarray):
            return {_NDARRAY: tensor_key(path, torch.from_numpy(np.ascontiguousarray(value)))}
        if isinstance(value, tuple):
            return {_TUPLE: [encode(item, f"{path}.{i}".lstrip(".")) for i, item in enumerate(value)]}
        if isinstance(value, list):
            return [encode(item, f"{path}.{i}".lstrip(".")) for i, item in enumerate(value)]
        if isinstance(value, dict):
            items = {key: encode(item, f"{path}.{key}".lstrip(".")) for key, item in value.items()}
            if all(isinstance(key, str) and key not in _TAGS for key in value):
                return items
            return {_ITEMS: [[encode(key, f"{path}.<key>"), item] for key, item in items.items()]}
        raise CheckpointStateError(
            f"The {what} state holds a `{type(value).__qualname__}` at `{path or '<root>'}`, which cannot be stored "
            f"without pickle ({_UNSUPPORTED_FIX})."
        )

    return encode(state, ""), tensors


def decode_state(tree: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """The inverse of [`encode_state`]: rebuild the state from its JSON tree and tensors."""
    if isinstance(tree, list):
        return [decode_state(item, tensors) for item in tree]
    if not isinstance(tree, dict):
        return tree
    if len(tree) == 1 and (tag := next(iter(tree))) in _TAGS:
        value = tree[tag]
        if tag == _TENSOR:
            return tensors[value]
        if tag == _NDARRAY:
            return tensors[value].numpy()
        if tag == _TUPLE:
            return tuple(decode_state(item, tensors) for item in value)
        return {decode_state(key, tensors): decode_state(item, tensors) for key, item in value}
    return {key: decode_state(item, tensors) for key, item in tree.items()}


# -- files ------------------------------------------------------------------------------------------------------------


def save_state(state: Any, folder: str | os.PathLike, name: str, *, what: str | None = None) -> list[str]:
    """Write `state` to `folder/{name}.json` (+ `folder/{name}.safetensors` when it holds tensors); returns the file
    names written. The state is encoded before anything is written, so a refused state leaves no file behind."""
    tree, tensors = encode_state(state, what=what or name)
    return _write_encoded(tree, tensors, folder, name)


def _write_encoded(tree: Any, tensors: dict[str, torch.Tensor], folder: str | os.PathLike, name: str) -> list[str]:
    """Write what [`encode_state`] returned: the tensors first, then the JSON that makes the state count as whole."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    if tensors:
        _atomic(folder / f"{name}.safetensors", lambda path: save_file(tensors, path, metadata={"format": "pt"}))
        written.append(f"{name}.safetensors")
    text = json.dumps({"state": tree, "tensors": f"{name}.safetensors" if tensors else None}, indent=1)
    _atomic(folder / f"{name}.json", lambda path: Path(path).write_text(text, encoding="utf-8"))
    return [*written, f"{name}.json"]


def has_state(folder: str | os.PathLike, name: str) -> bool:
    return (Path(folder) / f"{name}.json").is_file()


def load_state(folder: str | os.PathLike, name: str, *, device: str | torch.device = "cpu") -> Any:
    """Read a state written by [`save_state`]; tensors are loaded onto `device`."""
    path = Path(folder) / f"{name}.json"
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        tree, tensors_name = record["state"], record["tensors"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CheckpointStateError(f"Cannot read {path}: {error}. The checkpoint is damaged; resume from an "
                                   "earlier checkpoint.") from error
    tensors = {}
    if tensors_name is not None:
        tensors_path = Path(folder) / tensors_name
        if not tensors_path.is_file():
            raise CheckpointStateError(f"{path} refers to {tensors_path}, which is missing. The checkpoint is "
                                       "damaged; resume from an earlier checkpoint.")
        tensors = load_file(str(tensors_path), device=str(device))
    return decode_state(tree, tensors)


def _atomic(path: Path, write) -> None:
    partial = path.with_name(f".{path.name}.partial")
    write(str(partial))
    os.replace(partial, path)


# -- the trainer's states -----------------------------------------------------------------------------------------


def transformers_format_reason(trainer) -> str | None:
    """Why `trainer` saves its optimizer state in transformers' own format, or None when hf_distill's applies."""
    from transformers.utils import is_sagemaker_mp_enabled, is_torch_xla_available

    if getattr(trainer, "is_deepspeed_enabled", False):
        return "DeepSpeed"
    if getattr(trainer, "is_fsdp_enabled", False):
        return "FSDP"
    if is_torch_xla_available():
        return "XLA"
    if is_sagemaker_mp_enabled():
        return "SageMaker model parallel"
    return None


def check_scheduler_state(trainer) -> None:
    """Refuse, before training starts, a LR scheduler whose state the checkpoints could not store."""
    args = trainer.args
    if args.save_strategy == "no" or args.save_only_model or transformers_format_reason(trainer):
        return
    try:
        encode_state(trainer.lr_scheduler.state_dict(), what="LR scheduler")
    except CheckpointStateError as error:
        raise CheckpointStateError(
            f"{error} Checkpoints store the scheduler as JSON: use one of transformers' schedulers "
            "(`lr_scheduler_type`, --lr_scheduler_type), or set `save_only_model=True` (--save_only_model) to "
            "checkpoint the weights only."
        ) from None


def save_optimizer_and_scheduler(trainer, output_dir: str) -> bool:
    """Write the optimizer (safetensors + JSON) and LR scheduler (JSON) states of `trainer`; False when the
    checkpoint is transformers' to write (see the module docstring)."""
    reason = transformers_format_reason(trainer)
    if reason is not None:
        logger.info("Saving the optimizer state in %s's format (torch.save files).", reason)
        return False
    if not trainer.args.should_save:
        return True
    try:  # encoded before anything is written: a refused optimizer leaves no half-written state
        optimizer_tree, optimizer_tensors = encode_state(trainer.optimizer.state_dict(), what="optimizer")
    except CheckpointStateError as error:
        logger.warning("%s Saving it with torch.save (optimizer.pt), as transformers does.", error)
        return False
    _write_encoded(optimizer_tree, optimizer_tensors, output_dir, OPTIMIZER_STATE)
    save_state(trainer.lr_scheduler.state_dict(), output_dir, SCHEDULER_STATE, what="LR scheduler")
    return True


def load_optimizer_and_scheduler(trainer, checkpoint: str | None) -> bool:
    """Restore the optimizer and LR scheduler states from `checkpoint`; False when transformers should read it (its
    own formats, or a checkpoint without hf_distill's files, which it reads with `torch.load(weights_only=True)`)."""
    if checkpoint is None or transformers_format_reason(trainer) or not has_state(checkpoint, OPTIMIZER_STATE):
        return False
    if not has_state(checkpoint, SCHEDULER_STATE):
        raise CheckpointStateError(f"{checkpoint} has {OPTIMIZER_STATE}.json but no {SCHEDULER_STATE}.json. The "
                                   "checkpoint is damaged; resume from an earlier checkpoint.")
    args = trainer.args
    # Like transformers: onto each process's device when distributed (no num_processes copies in CPU memory).
    device = args.device if args.world_size > 1 and args.device.type != "cpu" else "cpu"
    trainer.optimizer.load_state_dict(load_state(checkpoint, OPTIMIZER_STATE, device=device))
    trainer.lr_scheduler.load_state_dict(load_state(checkpoint, SCHEDULER_STATE))
    return True


def save_scaler(trainer, output_dir: str) -> bool:
    """Write the fp16 grad scaler's state as JSON (when there is one); False on XLA (transformers' format)."""
    scaler = getattr(trainer.accelerator, "scaler", None)
    if transformers_format_reason(trainer) == "XLA":
        return False
    if scaler is not None and trainer.args.should_save:
        save_state(scaler.state_dict(), output_dir, SCALER_STATE, what="grad scaler")
    return True


def load_scaler(trainer, checkpoint: str | None) -> bool:
    if checkpoint is None or transformers_format_reason(trainer) == "XLA" or not has_state(checkpoint, SCALER_STATE):
        return False
    trainer.accelerator.scaler.load_state_dict(load_state(checkpoint, SCALER_STATE))
    return True


def rng_state_name(args) -> str:
    """`rng_state`, or `rng_state_{process_index}` when several processes train (transformers' file names)."""
    return "rng_state" if args.world_size <= 1 else f"rng_state_{args.process_index}"


def collect_rng_state(*, distributed: bool) -> dict[str, Any]:
    """This process's RNG states: python, numpy, torch CPU and each available accelerator (all its devices when
    `distributed`, the current one otherwise), with transformers' keys."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "cpu": torch.random.get_rng_state()}
    for name, module in _available_accelerators():
        rng = getattr(module, "random", module)
        state[name] = rng.get_rng_state_all() if distributed else rng.get_rng_state()
    return state


def restore_rng_state(state: dict[str, Any], *, distributed: bool) -> None:
    from transformers.trainer_pt_utils import set_rng_state_for_device

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.random.set_rng_state(state["cpu"])
    for name, module in _available_accelerators():
        set_rng_state_for_device(name.upper(), module, state, distributed)


def _available_accelerators():
    for name in _ACCELERATORS:
        module = getattr(torch, name, None)
        if module is not None and getattr(module, "is_available", lambda: False)():
            yield name, module


def _distributed(args) -> bool:
    from transformers.training_args import ParallelMode

    return args.parallel_mode == ParallelMode.DISTRIBUTED


def save_rng_state(trainer, output_dir: str) -> bool:
    """Write this process's RNG states (safetensors + JSON); False on XLA (transformers' format)."""
    if transformers_format_reason(trainer) == "XLA":
        return False
    # Every process writes its own file, possibly before process 0 has created the folder.
    save_state(collect_rng_state(distributed=_distributed(trainer.args)), output_dir, rng_state_name(trainer.args),
               what="RNG")
    return True


def load_rng_state(trainer, checkpoint: str | None) -> bool:
    """Restore this process's RNG states; False when transformers should (XLA, or no hf_distill RNG file: it reads
    `rng_state*.pth` or logs that resumption will not be reproducible)."""
    name = rng_state_name(trainer.args) if checkpoint is not None else None
    if name is None or transformers_format_reason(trainer) == "XLA" or not has_state(checkpoint, name):
        return False
    restore_rng_state(load_state(checkpoint, name), distributed=_distributed(trainer.args))
    return True


def save_training_args(args, output_dir: str | os.PathLike) -> str:
    """Write `args.to_dict()` (every `*_token` field masked) as `training_args.json`, and remove the
    `training_args.bin` pickle `Trainer._save` writes. Returns the path written. Nothing reads the file back."""
    folder = Path(output_dir)
    text = json.dumps(args.to_dict(), indent=2, sort_keys=True, default=str)
    _atomic(folder / TRAINING_ARGS_NAME, lambda path: Path(path).write_text(text, encoding="utf-8"))
    (folder / _PICKLED_TRAINING_ARGS).unlink(missing_ok=True)
    return str(folder / TRAINING_ARGS_NAME)
