"""A cached teacher with another tokenizer: `cross_tokenizer=` on a dataset written by
`cache_teacher_logits(teacher, rows, tokenizer=teacher_tokenizer, student_tokenizer=student_tokenizer)`.

The cache was written with the alignment already applied: each row holds the student's tokens (`input_ids`,
`completion_mask`, as [`CrossTokenizerTeacher`] tokenizes them) and, at every student position matched by text to a
teacher position, the teacher's top-k (teacher ids, log-probabilities over the teacher's vocabulary, tail) computed
at that teacher position. Unmatched positions hold no targets. The loss is
[`hf_distill.losses.cross_tokenizer_topk`]; the cache's info records both tokenizers' hashes, checked here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ..fingerprints import tokenizer_hash
from ..formats.cache import CacheInfo, is_cached_dataset
from ..losses.cross_tokenizer import VocabularyPairs
from ..losses.cross_tokenizer_topk import cross_tokenizer_topk_kd_terms
from ..losses.terms import KDTerms, LossSettings
from .cached_topk import IDS_COLUMN, LOG_PROBS_COLUMN, TAIL_COLUMN, CachedTopKTeacher, provenance_of
from .cross_tokenizer import CrossTokenizerError, vocabulary_pairs

if TYPE_CHECKING:
    from ..training.trainer import DistillationTrainer

__all__ = ["CachedCrossTokenizerTargets", "CachedCrossTokenizerTeacher"]


@dataclass
class CachedCrossTokenizerTargets:
    """The cached teacher's top-k at the matched positions (`(matched, k)` ids and log-probabilities, `(matched,)`
    tail), the row of the student's trained positions each belongs to, the method, the teacher's vocabulary size
    and the shared vocabulary (None for `"uld"` without the teacher's tokenizer)."""

    token_ids: torch.Tensor
    log_probs: torch.Tensor
    tail_log_probs: torch.Tensor
    student_index: torch.Tensor
    method: str
    teacher_vocab: int
    pairs: VocabularyPairs | None

    def kd_terms(
        self, student_hidden: torch.Tensor, student_head, labels: torch.Tensor, settings: LossSettings
    ) -> KDTerms:
        return cross_tokenizer_topk_kd_terms(
            student_hidden, student_head, labels, self.token_ids, self.log_probs, self.tail_log_probs,
            self.student_index, settings, method=self.method, teacher_vocab=self.teacher_vocab, pairs=self.pairs,
        )


class CachedCrossTokenizerTeacher(CachedTopKTeacher):
    """Cross-tokenizer targets read from a cache written with `student_tokenizer=`; holds no model.

    Example:

    ```python
    >>> cached = cache_teacher_logits(teacher, rows, tokenizer=teacher_tokenizer, student_tokenizer=tokenizer,
    ...                               output_dir="logits", top_k=64)
    >>> args = DistillationConfig(output_dir="out", cross_tokenizer="span")
    >>> trainer = DistillationTrainer(model=student, teacher_model=None, args=args, train_dataset=cached,
    ...                               processing_class=tokenizer, teacher_processing_class=teacher_tokenizer)
    ```
    """

    def __init__(self, cache: CacheInfo, method: str, teacher_tokenizer=None):
        super().__init__(provenance_of(cache))
        self.cache, self.method, self.teacher_tokenizer = cache, method, teacher_tokenizer
        self.pairs: VocabularyPairs | None = None

    @classmethod
    def from_trainer_inputs(cls, teacher_model, args, dataset_columns, **kwargs) -> CachedCrossTokenizerTeacher | None:
        """The registry entry: applies when `args.cross_tokenizer` is set, no live teacher is given and the data is a
        cache; refuses a cache not written across tokenizers, or written for another teacher tokenizer."""
        method = getattr(args, "cross_tokenizer", None)
        teacher = teacher_model if teacher_model is not None else args.teacher_model_name_or_path
        if method is None or teacher is not None or not is_cached_dataset(dataset_columns):
            return None
        info = getattr(kwargs.get("train_dataset"), "info", None)
        cache = CacheInfo.from_json(info.description or "") if info is not None else None
        if cache is None or not cache.cross_tokenizer:
            raise CrossTokenizerError(
                f"`cross_tokenizer={method!r}` (--cross_tokenizer) with a cached teacher needs a cache written across "
                "tokenizers, and this one was written with one tokenizer for both models (its teacher ids are the "
                "student's). Re-create it with `cache_teacher_logits(teacher, rows, tokenizer=teacher_tokenizer, "
                "student_tokenizer=student_tokenizer)`, or unset `cross_tokenizer`."
            )
        teacher_tokenizer = kwargs.get("teacher_processing_class")
        expected = cache.cross_tokenizer["teacher_tokenizer"]["sha256"]
        if teacher_tokenizer is not None and tokenizer_hash(teacher_tokenizer) != expected:
            raise CrossTokenizerError(
                f"`teacher_processing_class` has tokenizer hash {tokenizer_hash(teacher_tokenizer)[:16]}..., but the "
                f"cached teacher ({cache.teacher}) was written with a teacher tokenizer of hash {expected[:16]}...: "
                "its top-k ids would mean other tokens. Pass the tokenizer the cache was written with."
            )
        if method == "span" and teacher_tokenizer is None:
            raise CrossTokenizerError(
                "`cross_tokenizer='span'` (--cross_tokenizer) with a cached teacher needs the teacher's tokenizer to "
                "find the tokens both vocabularies share: pass `teacher_processing_class=` (the tokenizer the cache "
                "was written with), or use `cross_tokenizer='uld'`, which needs none."
            )
        return cls(cache, method, teacher_tokenizer)

    def setup(self, trainer: DistillationTrainer) -> None:
        super().setup(trainer)  # the student's vocabulary, temperature 1
        if self.teacher_tokenizer is not None:  # the cache's vocabulary is the teacher's, as it normalised over it
            self.pairs = vocabulary_pairs(trainer.tokenizer, self.teacher_tokenizer,
                                          student_vocab=trainer.student_head.vocab_size,
                                          teacher_vocab=self.cache.vocab_size).to(trainer.accelerator.device)

    def targets(self, inputs: dict[str, torch.Tensor], position_mask: torch.Tensor) -> CachedCrossTokenizerTargets:
        self.check_decoded(inputs)
        log_probs = inputs[LOG_PROBS_COLUMN][:, :-1][position_mask]
        matched = ~torch.isneginf(log_probs).all(-1)  # trained positions the text alignment paired with the teacher
        return CachedCrossTokenizerTargets(
            token_ids=inputs[IDS_COLUMN][:, :-1][position_mask][matched],
            log_probs=log_probs[matched],
            tail_log_probs=inputs[TAIL_COLUMN][:, :-1][position_mask][matched],
            student_index=matched.nonzero().squeeze(-1),
            method=self.method,
            teacher_vocab=self.cache.vocab_size,
            pairs=self.pairs,
        )
