"""Truncation to `max_length`, counted: `SFTTrainer` cuts long rows silently; this counts what is cut and reports it.

[`prepare_with_truncation_report`] runs TRL's own dataset preparation without a length limit, then truncates exactly
as TRL does (`input_ids` and `labels` to `max_length`, `keep_start` or `keep_end`, rows left with no trained token
dropped), counting on the way the rows cut, the rows whose completion is cut, and the rows that lose all of it.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import asdict, dataclass

from .checks import TrainingDataError
from .tokenization import DatasetFormatError

logger = logging.getLogger(__name__)

__all__ = ["TruncationReport", "prepare_with_truncation_report", "truncate_with_report"]

_COUNTS = ("_hfd_num_tokens", "_hfd_num_trained", "_hfd_num_trained_kept")


@dataclass
class TruncationReport:
    """What truncation to `max_length` did to one dataset.

    Args:
        dataset_name (`str`): `"train"`, `"eval"` or the eval dataset's key.
        max_length (`int`): the limit (`DistillationConfig.max_length`, --max_length).
        truncation_mode (`str`): `"keep_start"` or `"keep_end"`.
        num_rows (`int`): rows before truncation.
        num_truncated (`int`): rows longer than `max_length` (some tokens cut).
        num_completions_cut (`int`): rows that lose some, but not all, of their trained (completion) tokens.
        num_completions_lost (`int`): rows that lose every trained token; dropped, since they train on nothing.
        num_trained_tokens_cut (`int`): trained tokens cut away, over all rows.
        max_num_tokens (`int`): length of the longest row before truncation.
    """

    dataset_name: str
    max_length: int
    truncation_mode: str
    num_rows: int
    num_truncated: int
    num_completions_cut: int
    num_completions_lost: int
    num_trained_tokens_cut: int
    max_num_tokens: int

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        share = 100.0 * self.num_truncated / max(self.num_rows, 1)
        return (
            f"truncation at max_length={self.max_length} (--max_length, {self.truncation_mode}) cut "
            f"{self.num_truncated} of {self.num_rows} rows of the {self.dataset_name} dataset ({share:.1f}%): "
            f"{self.num_completions_cut} lose part of their completion, {self.num_completions_lost} lose all of it "
            f"and are dropped (nothing to train on); {self.num_trained_tokens_cut} trained tokens are cut. The "
            f"longest row has {self.max_num_tokens} tokens"
        )


def prepare_with_truncation_report(prepare, dataset, processing_class, args, packing, formatting_func, dataset_name):
    """`prepare(...)` (TRL's `SFTTrainer._prepare_dataset`) with truncation counted: returns `(dataset, report)`.

    Packed and streaming datasets, and runs without `max_length`, are left to TRL (`report` is `None`): packing
    chunks rows instead of cutting them, and a stream cannot be counted ahead of training.
    """
    from datasets import Dataset

    if packing or args.max_length is None or not isinstance(dataset, Dataset):
        return prepare(dataset, processing_class, args, packing, formatting_func, dataset_name), None
    unbounded = copy.copy(args)  # a shallow copy: TRL prepares the rows whole, we cut and count
    unbounded.max_length = None
    prepared = prepare(dataset, processing_class, unbounded, packing, formatting_func, dataset_name)
    return truncate_with_report(
        prepared, max_length=args.max_length, truncation_mode=args.truncation_mode, dataset_name=dataset_name,
        num_proc=args.dataset_num_proc,
    )


def truncate_with_report(dataset, *, max_length: int, truncation_mode: str, dataset_name: str, num_proc=None):
    """Truncate prepared rows (`input_ids`, `labels`) like TRL and count the cuts; returns `(dataset, report)`.

    Raises [`TrainingDataError`] when no row keeps a trained token (every completion is cut away), and logs a
    warning with the counts when some rows are cut.
    """
    if truncation_mode not in ("keep_start", "keep_end"):
        raise DatasetFormatError(
            f"`truncation_mode` (--truncation_mode) is {truncation_mode!r}; choose 'keep_start' or 'keep_end'."
        )
    window = slice(None, max_length) if truncation_mode == "keep_start" else slice(-max_length, None)
    counted = dataset.map(
        _truncate_and_count, batched=True, fn_kwargs={"window": window}, num_proc=num_proc,
        desc=f"Truncating {dataset_name} dataset (counting what is cut)",
    )
    tokens, trained, kept = (counted[column] for column in _COUNTS)
    report = TruncationReport(
        dataset_name=dataset_name, max_length=max_length, truncation_mode=truncation_mode, num_rows=len(tokens),
        num_truncated=sum(n > max_length for n in tokens),
        num_completions_cut=sum(0 < k < t for t, k in zip(trained, kept, strict=True)),
        num_completions_lost=sum(t > 0 and k == 0 for t, k in zip(trained, kept, strict=True)),
        num_trained_tokens_cut=sum(trained) - sum(kept), max_num_tokens=max(tokens, default=0),
    )
    if report.num_rows and not any(kept):
        raise TrainingDataError(
            f"Nothing to train on: every row of the {dataset_name} dataset loses its whole completion to truncation "
            f"at `max_length`={max_length} (--max_length, {truncation_mode}); the longest row has "
            f"{report.max_num_tokens} tokens. Raise `max_length` (`max_length={report.max_num_tokens}` keeps every "
            "row whole), shorten the prompts, or set `truncation_mode='keep_end'` (--truncation_mode)."
        )
    if report.num_truncated:
        logger.warning("%s. Raise `max_length` to keep them whole; the counts are in `trainer.truncation_report`.",
                       report.summary())
    # Like TRL: rows left with no trained token contribute no loss.
    kept_rows = counted.filter(lambda count: count > 0, input_columns=[_COUNTS[2]], num_proc=num_proc,
                               desc=f"Dropping fully masked examples from {dataset_name} dataset")
    return kept_rows.remove_columns(list(_COUNTS)), report


def _truncate_and_count(batch: dict, window: slice) -> dict:
    output = {"input_ids": [], "labels": [], **{column: [] for column in _COUNTS}}
    for input_ids, labels in zip(batch["input_ids"], batch["labels"], strict=True):
        output["input_ids"].append(input_ids[window])
        output["labels"].append(labels[window])
        output[_COUNTS[0]].append(len(input_ids))
        output[_COUNTS[1]].append(sum(label != -100 for label in labels))
        output[_COUNTS[2]].append(sum(label != -100 for label in labels[window]))
    return output
