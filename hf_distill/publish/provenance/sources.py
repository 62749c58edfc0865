"""Where a teacher, starting checkpoint or dataset came from: Hub id and resolved commit (from the local Hub cache,
or the Hub API when online), or a content hash for local folders and in-memory objects; and its licence as read
at that revision."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

from huggingface_hub import constants, metadata_load
from huggingface_hub.errors import HFValidationError
from huggingface_hub.file_download import REGEX_COMMIT_HASH, repo_folder_name
from huggingface_hub.utils import validate_repo_id
from torch import nn

from ...fingerprints import file_sha256, folder_sha256, model_sha256, tree_sha256
from ...heads import unwrap_model
from ...privacy import scan_dataset, text_columns
from ..licenses import normalize_license
from .record import DatasetRecord, SourceRecord

logger = logging.getLogger(__name__)

__all__ = [
    "LICENSE_FILE_NAMES",
    "dataset_record",
    "is_hub_id",
    "model_record",
    "remember_local_source",
]

# Files beside a model whose text a derived model may have to ship (LICENSE copy, NOTICE, use policy).
LICENSE_FILE_NAMES = ("LICENSE", "LICENSE.txt", "LICENSE.md", "NOTICE", "NOTICE.txt", "USE_POLICY.md")
# datasets' cache layout for Hub datasets: {namespace}___{name}/{config}/{version}/{commit sha}/...
_DATASET_CACHE_RE = re.compile(r"([^/\\]+)___([^/\\]+)[/\\][^/\\]+[/\\][^/\\]+[/\\]([0-9a-f]{40})[/\\]")
# dataset fingerprint -> the local data file or folder it was loaded from (a loaded `json` dataset forgets its file)
_local_sources: dict[str, str] = {}


def remember_local_source(dataset: Any, path: str | os.PathLike) -> None:
    """Record that `dataset` was loaded from the local file or folder `path`, so that its provenance names the file
    and its content hash instead of the loader (`json`) and "in-memory"."""
    fingerprint = getattr(dataset, "_fingerprint", None)
    if fingerprint is not None:
        _local_sources[fingerprint] = str(Path(path).expanduser().resolve())


def _local_dataset_record(*datasets: Any) -> SourceRecord | None:
    """The record of the remembered local file or folder of the first of `datasets` that has one."""
    known = [getattr(d, "_fingerprint", None) for d in datasets]
    path = next((_local_sources[f] for f in known if f in _local_sources), None)
    if path is None:
        return None
    source = Path(path)
    digest = file_sha256(source) if source.is_file() else tree_sha256(source)
    return SourceRecord(role="dataset", kind="local", name=source.name, content_sha256=digest)


def is_hub_id(value: str) -> bool:
    """Whether `value` reads as a Hub repo id (`name` or `namespace/name`) rather than a local path."""
    if not value or value.startswith((".", "/", "~")) or "\\" in value or os.path.exists(value):
        return False
    try:
        validate_repo_id(value)
    except HFValidationError:
        return False
    return value.count("/") <= 1


def cached_snapshot(repo_id: str, repo_type: str = "model", revision: str | None = None) -> Path | None:
    """The local Hub cache folder of `repo_id` at `revision` (a branch, tag or commit), if it was downloaded."""
    root = Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=repo_id, repo_type=repo_type)
    revision = revision or constants.DEFAULT_REVISION
    commit = revision if REGEX_COMMIT_HASH.fullmatch(revision) else None
    if commit is None and (root / "refs" / revision).is_file():
        commit = (root / "refs" / revision).read_text().strip()
    snapshot = root / "snapshots" / commit if commit else None
    return snapshot if snapshot is not None and snapshot.is_dir() else None


def _card_license(folder: Path) -> str | None:
    readme = folder / "README.md"
    if not readme.is_file():
        return None
    metadata = metadata_load(readme) or {}
    return normalize_license(metadata.get("license"), metadata.get("license_name"))


def _license_files(folder: Path | None) -> list[str]:
    return [name for name in LICENSE_FILE_NAMES if folder is not None and (folder / name).is_file()]


def _hub_record(role: str, repo_id: str, revision: str | None, repo_type: str) -> SourceRecord:
    """Resolve a Hub repo at `revision`: the local cache first, then the Hub API unless offline."""
    record = SourceRecord(role=role, kind="hub", repo_id=repo_id, name=repo_id.split("/")[-1], revision=revision)
    snapshot = cached_snapshot(repo_id, repo_type, revision)
    if snapshot is not None:
        record.revision = snapshot.name
        record.license = _card_license(snapshot)
        record.license_source = "card" if record.license else "missing"
        record.license_files = _license_files(snapshot)
        record.local_folder = str(snapshot)
    if (record.license is None or not record.license_files) and not constants.is_offline_mode():
        _fill_from_hub_api(record, repo_type)
    return record


def _fill_from_hub_api(record: SourceRecord, repo_type: str) -> None:
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError

    try:
        info = HfApi().repo_info(record.repo_id, repo_type=repo_type, revision=record.revision)
    except (HfHubHTTPError, OSError) as error:  # no such repo, no network, gated without token: keep what we have
        logger.info("Could not read %s %r from the Hub (%s); its licence stays unknown.", repo_type, record.repo_id,
                    type(error).__name__)
        return
    record.revision = info.sha or record.revision
    card = info.card_data.to_dict() if getattr(info, "card_data", None) is not None else {}
    if record.license is None:
        record.license = normalize_license(card.get("license"), card.get("license_name"))
        record.license_source = "hub-api" if record.license else "missing"
    # Fetch the licence texts at the pinned commit: a derived model may have to ship them.
    names = {sibling.rfilename for sibling in info.siblings or []}
    for name in (n for n in LICENSE_FILE_NAMES if n in names and n not in record.license_files):
        try:
            path = hf_hub_download(record.repo_id, name, repo_type=repo_type, revision=record.revision)
        except (HfHubHTTPError, OSError):  # gated: the card's metadata is public, its files are not
            continue
        record.license_files.append(name)
        record.local_folder = str(Path(path).parent)


def _local_record(role: str, folder: Path) -> SourceRecord:
    record = SourceRecord(role=role, kind="local", name=folder.name)
    if folder.is_dir():
        record.content_sha256 = folder_sha256(folder)
        record.license = _card_license(folder)
        record.license_source = "card" if record.license else "missing"
        record.license_files = _license_files(folder)
        record.local_folder = str(folder.resolve())
    return record


def model_record(role: str, model: Any, *, revision: str | None = None) -> SourceRecord:
    """Where a model came from. `model` is a Hub id, a local path, or a loaded model (then its `name_or_path`)."""
    module = model if isinstance(model, nn.Module) else None
    source = getattr(unwrap_model(module), "name_or_path", "") if module is not None else os.fspath(model)
    if source and is_hub_id(str(source)):
        record = _hub_record(role, str(source), revision, "model")
    elif source:
        record = _local_record(role, Path(source))
    else:
        record = SourceRecord(role=role, kind="in-memory", name=type(unwrap_model(module)).__name__)
        record.content_sha256 = model_sha256(module)
    if module is not None:
        record.details = model_details(module)
    return record


def model_details(model: nn.Module) -> dict[str, Any]:
    """Architecture, size, dtype and quantization of a loaded model (PEFT adapters too)."""
    inner = unwrap_model(model)
    config = getattr(inner, "config", None)
    details: dict[str, Any] = {
        "architecture": (getattr(config, "architectures", None) or [type(inner).__name__])[0],
        "model_type": getattr(config, "model_type", None),
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "num_trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch.") if any(True for _ in model.parameters())
        else None,
    }
    gguf = getattr(inner, "gguf_source", None)  # dequantised from a GGUF file: which one, how it was quantised
    if gguf is not None:
        details["gguf"] = gguf.to_dict()
    quantization = getattr(config, "quantization_config", None)
    if quantization is not None:
        details["quantization"] = quantization if isinstance(quantization, dict) else quantization.to_dict()
    peft_config = getattr(model, "peft_config", None)
    if isinstance(peft_config, dict) and peft_config:
        adapter = next(iter(peft_config.values()))
        details["adapter"] = {
            "peft_type": str(getattr(adapter, "peft_type", "")).split(".")[-1],
            "r": getattr(adapter, "r", None),
            "lora_alpha": getattr(adapter, "lora_alpha", None),
            "target_modules": sorted(adapter.target_modules) if isinstance(adapter.target_modules, (set, list))
            else adapter.target_modules,
        }
    return details


def dataset_record(
    dataset: Any, split: str, *, repo_id: str | None = None, scan_source: Any = None
) -> DatasetRecord:
    """A training or evaluation dataset: Hub id and commit (from its `datasets` cache folder), licence, fingerprint,
    number of rows and of tokens, and a privacy scan of its text (of `scan_source` when given: the dataset as the
    user passed it, before tokenization or packing dropped its text columns)."""
    revision = None
    if repo_id is None:
        for cache_file in getattr(dataset, "cache_files", None) or []:
            match = _DATASET_CACHE_RE.search(cache_file.get("filename", ""))
            if match:
                repo_id, revision = f"{match.group(1)}/{match.group(2)}", match.group(3)
                break
    local = _local_dataset_record(scan_source, dataset) if repo_id is None else None
    if repo_id is not None:
        base = _hub_record("dataset", repo_id, revision, "dataset")
    elif local is not None:
        base = local
    else:
        name = getattr(getattr(dataset, "info", None), "dataset_name", None) or split
        base = SourceRecord(role="dataset", kind="in-memory", name=name)
    info_license = normalize_license(getattr(getattr(dataset, "info", None), "license", None))
    if base.license is None and info_license:
        base.license, base.license_source = info_license, "dataset-info"
    record = DatasetRecord(**{**base.to_dict(), "split": split})
    record.local_folder = base.local_folder
    record.fingerprint = getattr(dataset, "_fingerprint", None)
    record.num_rows = dataset.num_rows if hasattr(dataset, "num_rows") else None
    record.num_tokens, record.num_trained_tokens = count_tokens(dataset)
    record.privacy_scan = privacy_scan(scan_source if scan_source is not None else dataset, split)
    return record


def privacy_scan(dataset: Any, split: str) -> dict[str, Any] | None:
    """Counts of the privacy scan of a dataset's text (one pass; `None` for what cannot be read twice: streaming
    datasets). Findings are logged as a warning with the first flagged rows; the record keeps counts only."""
    from datasets import Dataset


    if not isinstance(dataset, Dataset):
        return None
    report = scan_dataset(dataset, text_columns(dataset))
    report.warn_if_found(f"the {split} dataset")
    return report.to_dict()


def count_tokens(dataset: Any) -> tuple[int | None, int | None]:
    """(all tokens, tokens the loss counts) of a tokenized dataset, summed in Arrow; `None` when not tokenized."""
    from datasets import Dataset

    names = getattr(dataset, "column_names", None) or []
    if not isinstance(dataset, Dataset) or "input_ids" not in names:  # never iterate a streaming dataset here
        return None, None
    import pyarrow.compute as pc

    # TRL marks the tokens the loss counts with labels != -100, or with a completion / assistant mask.
    mask = next((c for c in ("labels", "completion_mask", "assistant_masks") if c in names), None)
    total, trained = 0, 0
    for batch in dataset.with_format("arrow").iter(batch_size=10_000):
        total += pc.sum(pc.list_value_length(batch["input_ids"])).as_py() or 0
        if mask is not None:
            flat = pc.list_flatten(batch[mask])
            counted = pc.not_equal(flat, -100) if mask == "labels" else pc.not_equal(flat, 0)
            trained += pc.sum(pc.cast(counted, "int64")).as_py() or 0
    return total, (trained if mask is not None else total)
