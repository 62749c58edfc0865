"""Collect a [`Provenance`] from a `DistillationTrainer` at save time: sources, data, tokenizer, settings,
environment, timing and the hashes of the weights just written."""

from __future__ import annotations

import datetime
import fnmatch
import functools
import json
import os
import platform
import subprocess
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from ..._version import __version__
from ...fingerprints import chat_template_hash, file_sha256, is_sharded, tokenizer_hash
from ...heads import unwrap_model
from ...safe_loading import WEIGHT_FILE_PATTERNS
from ...teachers import TeacherSource
from .record import DatasetRecord, Provenance, SourceRecord
from .sources import dataset_record, model_details, model_record

__all__ = [
    "collect_provenance",
    "environment_info",
    "cross_tokenizer_record",
    "non_default_config",
    "provenance_sources",
    "sources_gather_the_teacher",
    "tokenizer_hashes",
    "weight_file_hashes",
]

_LIBRARIES = (
    "torch", "transformers", "trl", "peft", "datasets", "huggingface_hub", "accelerate", "safetensors", "tokenizers",
    "bitsandbytes",
)
# Never recorded, whatever their value; `TrainingArguments.to_dict()` also masks every `*_token` field.
_SECRET_FIELDS = ("hub_token", "push_to_hub_token")


@functools.cache
def _default_config(config_class: type) -> dict[str, Any]:
    """`to_dict()` of a default instance of a `TrainingArguments` class, built once per process.

    Building `TrainingArguments` resets accelerate's shared state (its `__post_init__` sets up devices), which breaks
    a trainer that is running: the state is saved and restored around it.
    """
    from accelerate.state import AcceleratorState, PartialState

    saved = dict(AcceleratorState._shared_state), dict(PartialState._shared_state)
    try:
        with warnings.catch_warnings():  # building the defaults repeats deprecation warnings the user already saw
            warnings.simplefilter("ignore")
            return config_class(output_dir="defaults").to_dict()
    finally:
        for state, values in zip((AcceleratorState._shared_state, PartialState._shared_state), saved, strict=True):
            state.clear()
            state.update(values)


def non_default_config(args: Any) -> dict[str, Any]:
    """The fields of a `DistillationConfig` (any `TrainingArguments`) that differ from their defaults, JSON-ready.

    Tokens never appear: secret fields are dropped and every `*_token` value is masked by `to_dict()`.
    """
    defaults = _default_config(type(args))
    values = args.to_dict()
    changed = {
        key: value for key, value in values.items()
        if key not in _SECRET_FIELDS and key != "output_dir" and not key.endswith("_token")
        and value != defaults.get(key)
    }
    return json.loads(json.dumps(changed, default=str))


def tokenizer_hashes(tokenizer: Any) -> dict[str, Any]:
    """Class and size of a tokenizer, the SHA-256 of its vocabulary and of its chat template (the same hashes a
    cached-logits dataset records, `hf_distill.fingerprints`)."""
    if tokenizer is None:
        return {}
    inner = getattr(tokenizer, "tokenizer", tokenizer)  # processors wrap a tokenizer
    return {
        "class": type(inner).__name__,
        "vocab_size": len(inner),
        "sha256": tokenizer_hash(tokenizer),
        "chat_template_sha256": chat_template_hash(tokenizer),
    }


def cross_tokenizer_record(trainer: Any) -> dict[str, Any]:
    """How the student was distilled across tokenizers (`cross_tokenizer=`): the method and both tokenizers' hashes;
    empty when teacher and student share a tokenizer."""
    method = getattr(trainer.args, "cross_tokenizer", None)
    if method is None:
        return {}
    teacher = tokenizer_hashes(trainer.teacher.teacher_tokenizer)
    cache = getattr(trainer.teacher, "cache", None)  # a cached teacher without its tokenizer: as the cache records
    if not teacher and cache is not None and cache.cross_tokenizer:
        teacher = dict(cache.cross_tokenizer["teacher_tokenizer"])
    return {"method": method, "student_tokenizer": tokenizer_hashes(trainer.processing_class),
            "teacher_tokenizer": teacher}


def weight_file_hashes(folder: str | os.PathLike) -> dict[str, str]:
    """SHA-256 of every weight file at the top of `folder`, by file name."""
    folder = Path(folder)
    return {
        path.name: file_sha256(path)
        for path in sorted(folder.iterdir())
        if path.is_file() and any(fnmatch.fnmatch(path.name, pattern) for pattern in WEIGHT_FILE_PATTERNS)
    }


def _git_commit() -> str | None:
    package_dir = Path(__file__).resolve().parents[1]
    try:
        result = subprocess.run(
            ["git", "-C", str(package_dir), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment_info(num_processes: int = 1) -> dict[str, Any]:
    """Library versions, hf_distill version and git commit, and the hardware, as provenance sections."""
    libraries: dict[str, str | None] = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            libraries[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            libraries[name] = None
    accelerators = []
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            accelerators.append({"name": props.name, "memory_gb": round(props.total_memory / 2**30, 1)})
    hardware = {
        "platform": platform.platform(),
        "cpu": _cpu_name(),
        "num_cpus": os.cpu_count(),
        "accelerators": accelerators,
        "device_type": "cuda" if accelerators else "cpu",
        "num_processes": num_processes,
    }
    return {
        "libraries": libraries,
        "hf_distill": {"version": __version__, "git_commit": _git_commit()},
        "hardware": hardware,
    }


def provenance_sources(trainer: Any) -> tuple[SourceRecord | None, SourceRecord | None, list[DatasetRecord]]:
    """(teacher, starting checkpoint, datasets) of a trainer. Hashing local folders is slow for big models: the
    trainer caches the result, since its sources do not change during training."""
    teacher = _teacher_record(trainer)
    base = _base_record(trainer.model)
    # The datasets as passed to the trainer (before tokenization or packing dropped their text) are what gets scanned.
    raw_train, raw_eval = getattr(trainer, "_source_datasets", (None, None))
    datasets: list[DatasetRecord] = []
    if trainer.train_dataset is not None:
        datasets.append(dataset_record(trainer.train_dataset, "train", scan_source=raw_train))
    eval_sets = trainer.eval_dataset
    if isinstance(eval_sets, dict):
        raw = raw_eval if isinstance(raw_eval, dict) else {}
        datasets.extend(
            dataset_record(ds, f"eval/{name}", scan_source=raw.get(name)) for name, ds in eval_sets.items()
        )
    elif eval_sets is not None:
        datasets.append(dataset_record(eval_sets, "eval", scan_source=raw_eval))
    return teacher, base, datasets


def sources_gather_the_teacher(trainer: Any) -> bool:
    """Whether [`provenance_sources`] hashes a sharded in-memory teacher (FSDP2 or ZeRO-3, no folder or Hub id to
    name it by): its shards are then gathered, a collective, and every process must resolve the sources together."""
    teacher = getattr(trainer, "teacher", None)
    model = getattr(teacher, "model", None)
    source = getattr(teacher, "source", None) or getattr(trainer.args, "teacher_model_name_or_path", None)
    if model is None or isinstance(source, (str, os.PathLike)) or not is_sharded(model):
        return False
    return not getattr(unwrap_model(model), "name_or_path", "")


def _teacher_record(trainer: Any) -> SourceRecord | None:
    teacher: TeacherSource = getattr(trainer, "teacher", None) or TeacherSource()  # no teacher: every hook is None
    cached = teacher.teacher_provenance  # a cached-logits teacher names the model that made them
    if cached is not None and teacher.source is None:
        revision = None if str(cached.revision).startswith(("sha256:", "unresolved")) else cached.revision
        record = model_record("teacher", cached.name, revision=revision)
        if cached.gguf:
            record.details["gguf"] = cached.gguf
        return record
    source = teacher.source or getattr(trainer.args, "teacher_model_name_or_path", None)
    model = teacher.model
    if source is None and model is None:
        return None
    fallback = model if model is not None else source
    record = model_record("teacher", source if isinstance(source, (str, os.PathLike)) else fallback)
    if model is not None:
        record.details = model_details(model)
    return record


def _base_record(model: Any) -> SourceRecord | None:
    """The checkpoint the student's weights start from: a PEFT model's base, else the model's own origin; None for
    a student built from a config (trained from scratch)."""
    peft_config = getattr(model, "peft_config", None)
    if isinstance(peft_config, dict) and peft_config:
        origin = next(iter(peft_config.values())).base_model_name_or_path
    else:
        origin = getattr(unwrap_model(model), "name_or_path", "")
    if not origin:
        return None
    record = model_record("base_model", str(origin))
    init = getattr(getattr(unwrap_model(model), "config", None), "student_init", None)
    if init:  # a shallower copy of the teacher made by `init_student`: its layer map
        record.details["student_init"] = dict(init)
    gguf = getattr(unwrap_model(model), "gguf_source", None)  # a student dequantised from a GGUF file
    if gguf is not None:
        record.details["gguf"] = gguf.to_dict()
    return record


def _same_source(a: SourceRecord | None, b: SourceRecord | None) -> bool:
    if a is None or b is None:
        return False
    if a.repo_id is not None or b.repo_id is not None:
        return a.repo_id == b.repo_id
    return a.content_sha256 is not None and a.content_sha256 == b.content_sha256


def _timing(trainer: Any, num_accelerators: int) -> tuple[float | None, float | None]:
    """Training wall-clock seconds (from the trainer's log) and accelerator hours (0 on CPU-only machines)."""
    runtime = next(
        (entry["train_runtime"] for entry in reversed(trainer.state.log_history) if "train_runtime" in entry), None
    )
    if runtime is None:
        return None, None
    return float(runtime), round(float(runtime) * num_accelerators / 3600, 6)


def collect_provenance(
    trainer: Any, folder: str | os.PathLike | None = None, *, sources: tuple | None = None
) -> Provenance:
    """Build the [`Provenance`] of `trainer`'s student, with the weight hashes of `folder` (where it was just saved).

    Args:
        trainer ([`DistillationTrainer`]): the trainer.
        folder (`str`, *optional*): the folder the student was saved to.
        sources (`tuple`, *optional*): a cached result of [`provenance_sources`].
    """
    teacher, base, datasets = sources if sources is not None else provenance_sources(trainer)
    num_processes = trainer.accelerator.num_processes
    env = environment_info(num_processes)
    accelerators = num_processes if env["hardware"]["device_type"] != "cpu" else 0
    wall_clock, accelerator_hours = _timing(trainer, accelerators)
    args = trainer.args
    student = {
        "name": (args.hub_model_id or Path(args.output_dir).name).split("/")[-1],
        **model_details(trainer.model),
    }
    return Provenance(
        student=student,
        teacher=teacher,
        base_model=base,
        weight_derived=_same_source(teacher, base),
        datasets=datasets,
        tokenizer=tokenizer_hashes(trainer.processing_class),
        cross_tokenizer=cross_tokenizer_record(trainer),
        config=non_default_config(args),
        seed=args.seed,
        wall_clock_seconds=wall_clock,
        accelerator_hours=accelerator_hours,
        weight_files=weight_file_hashes(folder) if folder is not None else {},
        created_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **env,
    )
