"""One SHA-256 for each thing hf_distill fingerprints: a file, a model folder, an in-memory model, a tokenizer's
vocabulary, a chat template, and the (name, revision) a teacher is recorded under.

Every record (provenance, cached-logit datasets, generated datasets, cards) uses these, so one teacher always gets
one `sha256:` revision: a local folder is hashed over its config and weight files, a model with no folder over its
parameters, and a Hub checkpoint is named by its commit instead.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .heads import unwrap_model

__all__ = [
    "MODEL_FILE_PATTERNS",
    "TeacherProvenance",
    "chat_template_hash",
    "file_sha256",
    "folder_sha256",
    "is_sharded",
    "model_sha256",
    "path_provenance",
    "teacher_provenance",
    "tokenizer_hash",
    "tree_sha256",
]

#: What "config and weights" means for the hash of a local model folder (tokenizer files and cards are left out).
MODEL_FILE_PATTERNS = ("config.json", "adapter_config.json", "*.safetensors", "*.safetensors.index.json", "*.bin",
                       "*.pt")
_CHUNK = 8 * 1024 * 1024
_file_hashes: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | os.PathLike, *, reuse: bool = True) -> str:
    """SHA-256 of a file. With `reuse`, cached by (path, size, mtime) so checkpoints do not re-hash unchanged
    teachers; integrity checks pass `reuse=False` to read the bytes every time."""
    stat = os.stat(path)
    key = (os.path.abspath(path), stat.st_size, stat.st_mtime_ns)
    if not reuse or key not in _file_hashes:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
        _file_hashes[key] = digest.hexdigest()
    return _file_hashes[key]


def folder_sha256(folder: str | os.PathLike) -> str | None:
    """One SHA-256 over the config and weight files of a local model folder (names and contents), or None if the
    folder holds none."""
    folder = Path(folder)
    files = sorted({p for pattern in MODEL_FILE_PATTERNS for p in folder.glob(pattern) if p.is_file()})
    if not files:
        return None
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.name}\0{file_sha256(path)}\n".encode())
    return digest.hexdigest()


def tree_sha256(folder: str | os.PathLike) -> str:
    """SHA-256 over the relative names and contents of every file under `folder` (a `save_to_disk` dataset)."""
    folder = Path(folder)
    digest = hashlib.sha256()
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(file.relative_to(folder).as_posix().encode() + b"\0" + file_sha256(file).encode())
    return digest.hexdigest()


def model_sha256(model: nn.Module) -> str:
    """SHA-256 over the parameter names and raw bytes of an in-memory model (one with no folder to hash).

    A sharded model (FSDP2 `DTensor`s, DeepSpeed ZeRO-3 partitions) is hashed over its full tensors, gathered one at
    a time, so it hashes like the same model unsharded. The gathers are collectives: then every process of the run
    must call this, in the same order ([`is_sharded`] says when).
    """
    inner = unwrap_model(model)
    partitioned = {name: p for name, p in inner.named_parameters(remove_duplicate=False) if hasattr(p, "ds_id")}
    digest = hashlib.sha256()
    for name, tensor in sorted(inner.state_dict().items()):
        digest.update(name.encode())
        flat = _full_tensor(tensor, partitioned.get(name)).detach().to("cpu").contiguous().reshape(-1)
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def is_sharded(model: nn.Module) -> bool:
    """Whether `model` is sharded by FSDP2 (a `fully_shard` unit in it) or partitioned by DeepSpeed ZeRO-3. Asked of
    the modules, not of the parameters: a unit gathered for the loss holds plain tensors until its next forward."""
    from torch.distributed.fsdp import FSDPModule

    inner = unwrap_model(model)
    return any(isinstance(module, FSDPModule) for module in inner.modules()) or any(
        hasattr(p, "ds_id") for p in inner.parameters()
    )


def _full_tensor(tensor: torch.Tensor, partitioned: nn.Parameter | None) -> torch.Tensor:
    """The whole of `tensor`: ZeRO-3's partition gathered (`partitioned` is its parameter, whose state-dict entry is
    an empty tensor), an FSDP2 `DTensor` all-gathered, anything else as it is."""
    if partitioned is not None:
        import deepspeed

        with deepspeed.zero.GatheredParameters([partitioned]):
            return partitioned.data.detach().clone()
    return tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor


def tokenizer_hash(tokenizer) -> str:
    """sha256 of the tokenizer's id -> token mapping (added tokens included): equal exactly when every token id means
    the same string, which is what a cached teacher's ids need from the student."""
    inner = getattr(tokenizer, "tokenizer", tokenizer)  # processors wrap a tokenizer
    vocab = sorted(inner.get_vocab().items(), key=lambda item: item[1])
    return hashlib.sha256(json.dumps(vocab, ensure_ascii=False).encode()).hexdigest()


def chat_template_hash(tokenizer) -> str | None:
    """sha256 of the tokenizer's chat template (`None` without one)."""
    inner = getattr(tokenizer, "tokenizer", tokenizer)
    template = getattr(tokenizer, "chat_template", None) or getattr(inner, "chat_template", None)
    if not template:
        return None
    text = template if isinstance(template, str) else json.dumps(template, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class TeacherProvenance:
    """Which teacher made a dataset: `name` (Hub id or local path, or the model's `name_or_path`), `revision`
    (the Hub commit when known, else `sha256:` of its folder's config and weights, else of its parameters) and, for a
    teacher dequantised from a GGUF file, that file's name, SHA-256 and quantisation type (`GgufSource.to_dict()`)."""

    name: str
    revision: str
    gguf: dict | None = None


def teacher_provenance(model: nn.Module, source: str | os.PathLike | nn.Module) -> TeacherProvenance:
    """Name and revision of a loaded teacher. A Hub checkpoint is named by its commit (`config._commit_hash`); a
    local folder by [`folder_sha256`]; anything else by [`model_sha256`], so two datasets made from the same weights
    carry the same revision, the one the student's provenance records too."""
    inner = unwrap_model(model)
    name = str(source) if isinstance(source, (str, os.PathLike)) else getattr(inner, "name_or_path", "") or type(
        inner
    ).__name__
    gguf = inner.gguf_source.to_dict() if getattr(inner, "gguf_source", None) is not None else None
    if Path(name).exists():
        name = str(Path(name).resolve())
        folder_hash = folder_sha256(name) if Path(name).is_dir() else None
        if folder_hash is not None:
            return TeacherProvenance(name=name, revision="sha256:" + folder_hash, gguf=gguf)
    commit = getattr(getattr(inner, "config", None), "_commit_hash", None)
    if commit and not Path(name).exists():
        return TeacherProvenance(name=name, revision=commit, gguf=gguf)
    return TeacherProvenance(name=name, revision="sha256:" + model_sha256(inner), gguf=gguf)


def path_provenance(source: str | os.PathLike) -> TeacherProvenance:
    """Provenance of a teacher that is not loaded here (vLLM loads it): a local folder by [`folder_sha256`], a Hub
    id by the commit of its cached snapshot (`"unresolved"` when it is not downloaded yet)."""
    path = Path(source)
    if path.is_dir():
        folder_hash = folder_sha256(path)
        revision = f"sha256:{folder_hash}" if folder_hash else "unresolved"
        return TeacherProvenance(name=str(path.resolve()), revision=revision)
    from huggingface_hub import try_to_load_from_cache  # only a vLLM run on a Hub id needs the Hub client

    cached = try_to_load_from_cache(str(source), "config.json")
    revision = Path(cached).parent.name if isinstance(cached, str) else "unresolved"
    return TeacherProvenance(name=str(source), revision=revision)
