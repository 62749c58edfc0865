"""Checks of training data that run before any model is loaded: rows, TRL format, empty completions, and the
cached teacher's stored values.

`DistillationTrainer` calls [`check_training_data`] first thing in `__init__`, so a dataset that cannot train anything
fails in seconds rather than after the student and the teacher have been loaded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from .cache import TOPK_COLUMN, CachedDatasetError, is_cached_dataset
from .codec import TopKCodec
from .tokenization import DatasetFormatError

logger = logging.getLogger(__name__)

__all__ = [
    "EmptyCompletions",
    "TrainingDataError",
    "check_cached_targets",
    "check_training_data",
    "count_empty_completions",
]

#: the dataset formats `trl.SFTTrainer` tokenizes, as named in error messages.
TRL_FORMATS = (
    "`text` (language modelling; `dataset_text_field` names another column), `prompt` + `completion` (plain or "
    "conversational), `messages` (conversations), ShareGPT `conversations`, or already tokenized `input_ids`"
)
_SHOWN_ROWS = 5  # row indices quoted in a message


class TrainingDataError(DatasetFormatError):
    """Training data that cannot train the student as given: no rows, no TRL format, only empty completions, or
    nothing left to train on after truncation. The message names the dataset, the count and the fix."""


@dataclass
class EmptyCompletions:
    """Rows whose completion is empty (`""`, or an assistant turn with no content): SFT would teach the student to
    answer them with EOS alone.

    Args:
        dataset_name (`str`): `"train"`, `"eval"` or the eval dataset's key.
        num_rows (`int`): rows checked.
        rows (`list[int]`): indices of the empty rows.
    """

    dataset_name: str
    num_rows: int
    rows: list[int] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.rows)


def check_training_data(
    dataset, *, dataset_name: str, dataset_text_field: str = "text", formatting_func=None
) -> EmptyCompletions | None:
    """Raise [`TrainingDataError`] for a dataset with no rows, in none of TRL's formats, or whose every completion
    is empty; log a warning with the count when only some completions are empty.

    Streaming datasets (`IterableDataset`) are checked for their columns only, when these are known.

    Returns:
        [`EmptyCompletions`] for a `Dataset` in a prompt/completion, messages or text format, else `None`.
    """
    from datasets import Dataset

    columns = getattr(dataset, "column_names", None)
    if isinstance(dataset, Dataset) and len(dataset) == 0:
        raise TrainingDataError(
            f"The {dataset_name} dataset has no rows (columns: {columns}). Check the split and any `filter` applied "
            "to it, or pass a dataset with at least one row."
        )
    if columns is None or formatting_func is not None or is_cached_dataset(columns):
        return None  # unknown columns (streaming), or a formatting function / cache defines the rows
    _check_columns(list(columns), dataset_name, dataset_text_field)
    if not isinstance(dataset, Dataset) or "input_ids" in columns:
        return None
    empty = count_empty_completions(dataset, dataset_name=dataset_name, dataset_text_field=dataset_text_field)
    if empty.count == empty.num_rows:
        raise TrainingDataError(
            f"Every row of the {dataset_name} dataset ({empty.num_rows}) has an empty completion (or empty text): "
            "the student would learn to answer with EOS alone. Fill the completions (e.g. generate them with the "
            "teacher: `hf_distill.data.generate_completions`, `hf-distill generate`)."
        )
    if empty.count:
        logger.warning(
            "%d of %d rows of the %s dataset have an empty completion (rows %s%s): the student learns to answer "
            "them with EOS alone. Drop them with `dataset.filter(...)` unless that is intended.",
            empty.count, empty.num_rows, dataset_name, empty.rows[:_SHOWN_ROWS],
            ", ..." if empty.count > _SHOWN_ROWS else "",
        )
    return empty


def _check_columns(columns: list[str], dataset_name: str, dataset_text_field: str) -> None:
    names = set(columns)
    if {"prompt", "completion"} <= names or names & {"messages", "conversations", dataset_text_field, "input_ids"}:
        return
    if "prompt" in names:
        raise TrainingDataError(
            f"The {dataset_name} dataset has a `prompt` column but no `completion` (columns: {columns}). Have the "
            "teacher write the completions first (`hf_distill.data.generate_completions`, `hf-distill generate`), "
            "then train on its output."
        )
    raise TrainingDataError(
        f"The {dataset_name} dataset has columns {columns}, none of the formats TRL accepts: {TRL_FORMATS}. Rename "
        "its columns (`dataset.rename_column(old, new)`), set `dataset_text_field` (--dataset_text_field), or pass "
        "a `formatting_func`."
    )


def count_empty_completions(dataset, *, dataset_name: str = "train", dataset_text_field: str = "text"):
    """[`EmptyCompletions`] of a prompt/completion, messages (or ShareGPT) or text dataset, read column-wise."""
    columns = dataset.column_names
    if "completion" in columns:
        column, is_empty = "completion", _is_empty_completion
    elif "messages" in columns or "conversations" in columns:
        column = "messages" if "messages" in columns else "conversations"
        is_empty = _has_empty_assistant_turn
    else:
        column, is_empty = dataset_text_field, _is_blank
    rows, start = [], 0
    for batch in dataset.select_columns([column]).iter(batch_size=1000):
        values = batch[column]
        rows.extend(start + offset for offset, value in enumerate(values) if is_empty(value))
        start += len(values)
    return EmptyCompletions(dataset_name=dataset_name, num_rows=len(dataset), rows=rows)


def _is_blank(value) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _content(message: dict):
    return message.get("content", message.get("value"))


def _is_empty_completion(value) -> bool:
    if isinstance(value, list):  # conversational: the assistant's messages
        return all(_is_blank(_content(message)) for message in value)
    return _is_blank(value)


def _has_empty_assistant_turn(messages) -> bool:
    return any(
        message.get("role", message.get("from")) in ("assistant", "gpt") and _is_blank(_content(message))
        for message in messages or []
    )


def check_cached_targets(dataset, *, dataset_name: str = "train") -> None:
    """Raise [`CachedDatasetError`] when a cached teacher's stored values are not valid log-probabilities: a tail
    log-mass that is NaN or above 0 (a teacher whose logits were NaN/inf when the cache was written).

    Reads only the compressed planes of each `teacher_topk` blob (no dequantization): one cheap pass at set-up.
    """
    bad, start = [], 0
    for batch in dataset.select_columns([TOPK_COLUMN]).iter(batch_size=1000):
        for offset, blob in enumerate(batch[TOPK_COLUMN]):
            _, quantized = TopKCodec.unpack(blob)
            tail = quantized.tail_log_probs.astype(np.float32)
            if np.isnan(tail).any() or (tail > 0).any():
                bad.append(start + offset)
        start += len(batch[TOPK_COLUMN])
    if bad:
        raise CachedDatasetError(
            f"{len(bad)} of {start} rows of the {dataset_name} dataset hold NaN/inf cached teacher log-probabilities "
            f"(rows {bad[:_SHOWN_ROWS]}{', ...' if len(bad) > _SHOWN_ROWS else ''}): the teacher's logits overflowed "
            "when the cache was written. Re-create the cache with the teacher in bfloat16 or float32 "
            "(`cache_teacher_logits(..., model_kwargs={'dtype': 'bfloat16'})`, `hf-distill cache-logits "
            "--teacher_model_init_kwargs '{\"dtype\": \"bfloat16\"}'`)."
        )
