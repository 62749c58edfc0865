"""Publish a dataset (generated completions, cached teacher logits, or any `datasets` dataset) to the Hub.

The dataset is scanned for personal data and secrets first ([`hf_distill.privacy`]); a split with secrets in it is
refused with [`PrivateDataError`] before any request is sent, unless `allow_private_data=True`. Then every split goes
up as Parquet shards (`data/{split}-00000-of-0000N.parquet`, the layout the Hub and `datasets.load_dataset` read
without a loading script, features kept in the Parquet schema) together with its `README.md` card, in ONE commit:
a push cut off before its commit leaves the repo unchanged. `Dataset.push_to_hub` would make one commit per split and
rewrite the card; this keeps the card hf_distill wrote and adds the scan made at publication.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import datasets
from datasets import Dataset, DatasetDict
from huggingface_hub import CommitOperationAdd, DatasetCard, HfApi

from ..errors import HfDistillError
from ..offline.card import privacy_section, write_dataset_card
from ..privacy import PrivacyReport, PrivateDataError, check_publishable, scan_dataset, text_columns
from .repo import require_token, validate_repo_id

__all__ = [
    "DatasetPushError",
    "DatasetPushResult",
    "PrivateDataError",
    "check_push_target",
    "push_dataset",
    "scan_for_publication",
]

logger = logging.getLogger(__name__)

_MAX_SHARD_BYTES = 500 * 2**20  # the size `Dataset.push_to_hub` shards at


class DatasetPushError(HfDistillError, ValueError):
    """The dataset given to `push_dataset` cannot be read or scanned as asked."""


@dataclass
class DatasetPushResult:
    """What `push_dataset` published.

    Args:
        repo_id (`str`), repo_url (`str`): the dataset repository.
        commit_url (`str`), commit_oid (`str`): the single commit holding every file.
        revision (`str`): the branch pushed to.
        files (`list[str]`): paths in the repository, in upload order.
        privacy (`dict[str, PrivacyReport]`): the scan of each split, made just before the push.
    """

    repo_id: str
    repo_url: str
    commit_url: str
    commit_oid: str
    revision: str
    files: list[str]
    privacy: dict[str, PrivacyReport] = field(repr=False)


def check_push_target(repo_id: str, token: str | None = None, *, argument: str = "repo_id") -> tuple[str, str]:
    """The validated repo id and the token to push with; raises `PushError` / `HubAuthError` without any request.
    Call it before expensive work (generation, caching) whose result is to be pushed; `argument` names the option
    in the error (`"--push_to_hub"` for the CLI)."""
    return validate_repo_id(repo_id, argument=argument), require_token(token)


def _load(dataset) -> tuple[dict[str, Dataset], DatasetCard | None]:
    """Splits by name and the card found beside a saved dataset (`README.md` of a `save_to_disk` folder)."""
    card = None
    if isinstance(dataset, (str, os.PathLike)):
        folder = Path(dataset)
        if not folder.is_dir():
            raise DatasetPushError(f"{str(folder)!r} is not a folder: pass a `datasets.Dataset`, a `DatasetDict`, or "
                                   "a folder written by `save_to_disk` (the output_dir of generate / cache-logits).")
        try:
            dataset = datasets.load_from_disk(str(folder))
        except FileNotFoundError as error:
            raise DatasetPushError(f"{str(folder)!r} holds no saved dataset ({error}); save it with "
                                   "`Dataset.save_to_disk` first.") from None
        if (folder / "README.md").is_file():
            card = DatasetCard.load(folder / "README.md")
    if isinstance(dataset, Dataset):
        return {"train": dataset}, card
    if isinstance(dataset, DatasetDict):
        return dict(dataset), card
    raise DatasetPushError(f"`dataset` must be a `datasets.Dataset`, a `DatasetDict` or a saved folder, got "
                           f"{type(dataset).__name__} (streaming datasets cannot be scanned before publishing).")


def _scan_token_ids(dataset: Dataset, tokenizer, batch_size: int = 1000) -> PrivacyReport:
    """Decode `input_ids` (what a tokenized dataset publishes) and scan the text."""
    report, row = PrivacyReport(columns=["input_ids"]), 0
    for batch in dataset.select_columns(["input_ids"]).iter(batch_size=batch_size):
        for text in tokenizer.batch_decode(batch["input_ids"], skip_special_tokens=True):
            report.add(row, (text,))
            row += 1
    return report


def scan_for_publication(
    dataset: Dataset, *, tokenizer=None, split: str = "train", allow_private_data: bool = False
) -> PrivacyReport:
    """Scan what a split publishes: its text columns, else its token ids decoded with `tokenizer`.

    A split with neither text nor a tokenizer to decode it cannot be scanned: [`DatasetPushError`], unless
    `allow_private_data=True` (then it is published unscanned, and the card says so).
    """
    columns = text_columns(dataset)
    if columns:
        return scan_dataset(dataset, columns)
    if "input_ids" in dataset.column_names:
        if tokenizer is not None:
            return _scan_token_ids(dataset, tokenizer)
        if not allow_private_data:
            raise DatasetPushError(
                f"Split {split!r} holds token ids and no text, so it cannot be scanned for secrets without its "
                "tokenizer: pass `tokenizer=` (the one it was tokenized with), or `allow_private_data=True` "
                "(--allow_private_data) to publish it unscanned."
            )
    return PrivacyReport(num_texts=len(dataset))  # nothing to scan: `columns` stays empty


def _card(card: DatasetCard | None, splits: dict[str, Dataset], privacy: dict[str, PrivacyReport], repo_id: str,
          workdir: Path) -> DatasetCard:
    """The card to publish: the one written beside the dataset (or a short new one), plus the scan made now."""
    if card is None:
        workdir.mkdir(parents=True, exist_ok=True)
        sizes = ", ".join(f"{name}: {len(ds):,} rows" for name, ds in splits.items())
        card = write_dataset_card(
            workdir, title=repo_id.split("/")[-1], summary=f"A dataset published with hf_distill ({sizes}).",
            function="hf_distill.hub.push_dataset", settings={"num_rows": sum(len(ds) for ds in splits.values())},
            usage=f"import datasets\n\ndataset = datasets.load_dataset({repo_id!r})", tags=[],
        )
    scans = {f"{split} split{'' if report.columns else ' (no text: not scanned)'}": report
             for split, report in privacy.items()}
    metadata = card.data.to_dict()
    metadata["hf_distill"] = {**(metadata.get("hf_distill") or {}),
                              "privacy_scan_at_publication": {s: r.to_dict() for s, r in privacy.items()}}
    data = type(card.data)(**metadata)
    text = card.text.rstrip() + "\n\n" + privacy_section(scans, heading="Privacy scan at publication")
    return DatasetCard(f"---\n{data.to_yaml()}\n---\n\n{text.lstrip()}")


def _parquet_files(splits: dict[str, Dataset], workdir: Path, max_shard_bytes: int) -> dict[str, Path]:
    """{repo path: local Parquet file} for every shard of every split."""
    files = {}
    for split, dataset in splits.items():
        num_shards = max(1, math.ceil((dataset.data.nbytes or 0) / max_shard_bytes))
        for index in range(num_shards):
            name = f"data/{split}-{index:05d}-of-{num_shards:05d}.parquet"
            path = workdir / name
            path.parent.mkdir(parents=True, exist_ok=True)
            dataset.shard(num_shards, index, contiguous=True).to_parquet(str(path))
            files[name] = path
    return files


def push_dataset(
    dataset: Dataset | DatasetDict | str | os.PathLike,
    repo_id: str,
    *,
    tokenizer=None,
    allow_private_data: bool = False,
    private: bool | None = None,
    token: str | None = None,
    revision: str | None = None,
    commit_message: str | None = None,
    max_shard_bytes: int = _MAX_SHARD_BYTES,
) -> DatasetPushResult:
    """Scan a dataset for personal data and secrets, refuse secrets, then publish it with its card in one commit.

    Args:
        dataset (`Dataset`, `DatasetDict` or `str`): the dataset, or a folder written by `save_to_disk` (the
            `output_dir` of `generate_completions` / `cache_teacher_logits`, whose `README.md` card is published).
        repo_id (`str`): `namespace/name` of the dataset repo.
        tokenizer (*optional*): decodes `input_ids` for the scan when a split has no text (cached teacher logits).
        allow_private_data (`bool`, defaults to `False`): publish even though the scan found secrets (or could not
            scan); the card's counts say what was found.
        private (`bool`, *optional*): visibility of a newly created repo.
        token (`str`, *optional*): a write token; defaults to `HF_TOKEN` or the stored login. Never logged.
        revision (`str`, *optional*): branch to push to (created if missing); `main` when unset.
        commit_message (`str`, *optional*): defaults to "Upload dataset with hf_distill".
        max_shard_bytes (`int`, *optional*, defaults to 500 MiB): Arrow bytes per Parquet shard.

    Returns:
        [`DatasetPushResult`]

    Raises:
        [`PrivateDataError`]: a split holds secrets and `allow_private_data` is `False` (nothing is sent).

    Example:

    ```python
    >>> from hf_distill.hub import push_dataset
    >>> result = push_dataset("qwen7b-completions", "me/qwen7b-completions")
    >>> result.privacy["train"].summary()
    '0 of 2000 texts flagged: nothing'
    ```
    """
    repo_id = validate_repo_id(repo_id)
    if max_shard_bytes < 1:
        raise DatasetPushError(f"`max_shard_bytes` is {max_shard_bytes}; it must be >= 1 (500 MiB is usual).")
    splits, card = _load(dataset)
    privacy = {
        split: scan_for_publication(ds, tokenizer=tokenizer, split=split, allow_private_data=allow_private_data)
        for split, ds in splits.items()
    }
    for split, report in privacy.items():
        report.warn_if_found(f"split {split!r} of the dataset for {repo_id}")
        check_publishable(report, what=f"split {split!r} of the dataset to {repo_id!r} (nothing was uploaded)",
                          allow_private_data=allow_private_data)
    token = require_token(token)
    with tempfile.TemporaryDirectory(prefix="hf_distill_dataset_push_") as workdir:
        workdir = Path(workdir)
        files = _parquet_files(splits, workdir, max_shard_bytes)
        readme = _card(card, splits, privacy, repo_id, workdir / "card")
        operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(path)) for name, path in files.items()]
        operations.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=str(readme).encode()))
        api = HfApi(token=token)
        repo_url = api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        if revision and revision != "main":
            api.create_branch(repo_id, repo_type="dataset", branch=revision, exist_ok=True)
        commit = api.create_commit(repo_id, repo_type="dataset", operations=operations, revision=revision,
                                   commit_message=commit_message or "Upload dataset with hf_distill")
    logger.info("Pushed dataset %s (%s) in commit %s.", repo_id, ", ".join(
        f"{split}: {report.summary()}" for split, report in privacy.items()), commit.oid)
    return DatasetPushResult(repo_id=repo_id, repo_url=str(repo_url), commit_url=commit.commit_url,
                             commit_oid=commit.oid, revision=revision or "main",
                             files=[op.path_in_repo for op in operations], privacy=privacy)

