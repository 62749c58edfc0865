"""A teacher that ran ahead of training: its top-k log-probabilities come with each batch (`cache_teacher_logits`).

The dataset stores one compressed `teacher_topk` blob per row. The trainer decodes it on the fly with
[`CachedTopKTeacher.decode_batch`] (a `Dataset.with_transform`, so it runs in the dataloader workers), into three
per-token columns that `DistillationCollator` pads like any other: ids, log-probabilities and the tail's log-mass.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ..fingerprints import TeacherProvenance
from ..formats.cache import (
    TOKENIZER_HASH_COLUMN,
    TOPK_COLUMN,
    CachedDatasetError,
    CacheInfo,
    expand_blob,
    is_cached_dataset,
)
from ..losses.sparse import SparseTeacherError
from ..vocabulary import tokenizer_rows
from .base import TeacherSource, TeacherTopK

if TYPE_CHECKING:
    from ..training.trainer import DistillationTrainer

__all__ = ["CachedTopKTeacher"]

IDS_COLUMN = "teacher_topk_ids"
LOG_PROBS_COLUMN = "teacher_topk_log_probs"
TAIL_COLUMN = "teacher_topk_tail_log_probs"


def provenance_of(cache: CacheInfo) -> TeacherProvenance:
    """The model that wrote a cache, as its info records it (for the student's provenance and card)."""
    return TeacherProvenance(name=cache.teacher, revision=cache.teacher_revision or "unresolved",
                             gguf=cache.teacher_gguf)


class CachedTopKTeacher(TeacherSource):
    """Gives [`TeacherTopK`] targets read from the batch; holds no model.

    Example:

    ```python
    >>> from hf_distill.data import cache_teacher_logits
    >>> cached = cache_teacher_logits(teacher, dataset, tokenizer=tokenizer, output_dir="logits")
    >>> trainer = DistillationTrainer(model=student, teacher_model=None, args=args, train_dataset=cached)
    >>> type(trainer.teacher).__name__
    'CachedTopKTeacher'
    ```
    """

    #: the stored column the decoding transform reads; kept through the trainer's column pruning.
    dataset_columns: tuple[str, ...] = (TOPK_COLUMN,)
    #: decoded per-token columns and their padding values (a padded position reads as "no targets").
    collator_columns: dict[str, float | int] = {IDS_COLUMN: 0, LOG_PROBS_COLUMN: float("-inf"), TAIL_COLUMN: 0.0}
    #: the cache holds targets for the dataset's rows only: it cannot score sampled completions.
    scores_new_sequences: bool = False

    def __init__(self, teacher_provenance: TeacherProvenance | None = None):
        #: the model that wrote the cache (read from the dataset's info), for the student's provenance and card.
        self.teacher_provenance = teacher_provenance

    @classmethod
    def from_trainer_inputs(cls, teacher_model, args, dataset_columns, **kwargs) -> CachedTopKTeacher | None:
        """`TEACHER_SOURCES` factory: applies when the training data carries the cached columns (a teacher given
        explicitly comes first in the registry and wins)."""
        if not is_cached_dataset(dataset_columns):
            return None
        info = getattr(kwargs.get("train_dataset"), "info", None)
        cache = CacheInfo.from_json(info.description or "") if info is not None else None
        if cache is None:
            return cls()
        if cache.cross_tokenizer:  # its ids are the teacher's own: read as the student's they would be other tokens
            raise CachedDatasetError(
                "The training data is a cross-tokenizer cache (written with `student_tokenizer=`: its top-k ids are "
                "the teacher's own tokens), but `cross_tokenizer` (--cross_tokenizer) is unset. Set "
                "`cross_tokenizer='uld'` or `'span'`."
            )
        return cls(provenance_of(cache))

    def setup(self, trainer: DistillationTrainer) -> None:
        # The cache holds the teacher's distribution over the tokenizer's ids: normalise the student over the same.
        trainer.student_head.vocab_size = tokenizer_rows(trainer.tokenizer, trainer.student_head.num_rows)
        if trainer.args.temperature != 1.0:
            raise SparseTeacherError(
                f"`temperature` (--temperature) is {trainer.args.temperature}, but a cached teacher holds "
                "temperature-1 log-probabilities and the mass of its tail at another temperature cannot be recovered. "
                "Set temperature=1.0, or distil with a live teacher (`teacher_model=`)."
            )

    @staticmethod
    def decode_batch(batch: dict) -> dict:
        """`Dataset.with_transform` function: replace the `teacher_topk` blobs by per-token ids `(seq, k)`,
        log-probabilities `(seq, k)` and tail log-mass `(seq,)`; other columns pass through."""
        output = {key: value for key, value in batch.items() if key not in (TOPK_COLUMN, TOKENIZER_HASH_COLUMN)}
        expanded = [expand_blob(blob) for blob in batch[TOPK_COLUMN]]
        output[IDS_COLUMN] = [row[0] for row in expanded]
        output[LOG_PROBS_COLUMN] = [row[1] for row in expanded]
        output[TAIL_COLUMN] = [row[2] for row in expanded]
        return output

    def check_decoded(self, inputs: dict[str, torch.Tensor]) -> None:
        missing = [column for column in self.collator_columns if column not in inputs]
        if missing:
            raise SparseTeacherError(
                f"The batch lacks the decoded cached-teacher columns {missing}. They come from the trainer's "
                "preparation of a cached dataset: do not set `dataset_kwargs={'skip_prepare_dataset': True}` or a "
                "custom `data_collator` that drops them."
            )

    def targets(self, inputs: dict[str, torch.Tensor], position_mask: torch.Tensor) -> TeacherTopK:
        self.check_decoded(inputs)
        log_probs = inputs[LOG_PROBS_COLUMN][:, :-1][position_mask]
        if torch.isneginf(log_probs).all(-1).any():
            raise SparseTeacherError(
                "Some trained positions have no cached teacher targets: the cache covers only positions that predict "
                "a completion token (`completion_mask`), and the labels ask for more. Keep the labels the cache "
                "defines (leave `completion_only_loss` unset and `assistant_only_loss=False`)."
            )
        return TeacherTopK(
            token_ids=inputs[IDS_COLUMN][:, :-1][position_mask],
            log_probs=log_probs,
            tail_log_probs=inputs[TAIL_COLUMN][:, :-1][position_mask],
        )
