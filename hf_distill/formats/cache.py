"""The cached-teacher dataset format: its columns, the tokenizer fingerprints, and the checks a reader runs.

A cached dataset is a plain `datasets.Dataset`, one row per training sequence:

| column | type | content |
|---|---|---|
| `input_ids` | `list<int32>` | the tokens, exactly as `trl.SFTTrainer` tokenizes the source row |
| `completion_mask` | `list<int8>` | 1 on completion tokens (every token for text and messages data) |
| `teacher_topk` | `binary` | the teacher's top-k at the positions predicting a completion token ([`TopKCodec`]) |
| `tokenizer_hash` | `string` | [`tokenizer_hash`] of the tokenizer that made `input_ids` (checked at training) |

`docs/offline_teachers.md` is the full specification.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import datasets
import numpy as np

from ..errors import HfDistillError
from ..fingerprints import tokenizer_hash
from .codec import TopKCodec

__all__ = [
    "CACHED_COLUMNS",
    "CachedDatasetError",
    "CacheInfo",
    "TOKENIZER_HASH_COLUMN",
    "TOPK_COLUMN",
    "cache_features",
    "check_cached_rows",
    "check_tokenizer_hash",
    "expand_blob",
    "is_cached_dataset",
    "prepare_cached_rows",
    "truncate_blob",
]

TOPK_COLUMN = "teacher_topk"
TOKENIZER_HASH_COLUMN = "tokenizer_hash"
CACHED_COLUMNS = ("input_ids", "completion_mask", TOPK_COLUMN, TOKENIZER_HASH_COLUMN)


class CachedDatasetError(HfDistillError, ValueError):
    """A cached-teacher dataset that cannot be used as given; the message names the row or setting and the fix."""


def cache_features() -> datasets.Features:
    return datasets.Features(
        {
            "input_ids": datasets.Sequence(datasets.Value("int32")),
            "completion_mask": datasets.Sequence(datasets.Value("int8")),
            TOPK_COLUMN: datasets.Value("binary"),
            TOKENIZER_HASH_COLUMN: datasets.Value("string"),
        }
    )


def is_cached_dataset(column_names) -> bool:
    return TOPK_COLUMN in (column_names or ())


@dataclass
class CacheInfo:
    """What a cached dataset was made from and how it is encoded: written to the dataset card, `dataset_info.json`
    (as the description) and `hf_distill_cache.json`."""

    teacher: str
    teacher_revision: str | None
    top_k: int
    vocab_size: int
    encoding: dict
    tokenizer_hash: str
    chat_template_hash: str | None
    max_length: int | None
    batch_size: int
    shard_size: int
    num_rows: int = 0
    num_tokens: int = 0
    num_cached_positions: int = 0
    num_topk_bytes: int = 0
    hf_distill_version: str = ""
    #: the GGUF file the teacher was dequantised from (name, sha256, quantisation type), if it was
    teacher_gguf: dict | None = None
    #: set when the teacher read its own tokenization (`cache_teacher_logits(..., student_tokenizer=)`): the two
    #: tokenizers (`student_tokenizer`, `teacher_tokenizer`: class, vocab_size, sha256, chat_template_sha256); the
    #: blobs then hold teacher ids at the student positions matched by text, and `tokenizer_hash` is the student's.
    cross_tokenizer: dict | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> CacheInfo | None:
        try:
            return cls(**json.loads(text))
        except (TypeError, ValueError):
            return None

    def settings(self) -> dict:
        """The fields that decide the content: a resumed run must match them."""
        return {
            key: value
            for key, value in asdict(self).items()
            if key not in ("num_rows", "num_tokens", "num_cached_positions", "num_topk_bytes", "hf_distill_version")
        }


def check_tokenizer_hash(dataset, tokenizer, *, dataset_name: str = "train", cross_tokenizer: bool = False) -> None:
    """Raise [`CachedDatasetError`] unless every row was tokenized by a tokenizer with the student's vocabulary
    (`cross_tokenizer`: the cache pairs a teacher's tokenizer with a student's, and names the fix for that)."""
    hashes = dataset.unique(TOKENIZER_HASH_COLUMN) if TOKENIZER_HASH_COLUMN in dataset.column_names else []
    expected = tokenizer_hash(tokenizer)
    if not hashes:
        raise CachedDatasetError(
            f"The {dataset_name} dataset has a `{TOPK_COLUMN}` column but no `{TOKENIZER_HASH_COLUMN}` column, so "
            "its token ids cannot be checked against the student's tokenizer. Re-create it with "
            "`hf_distill.data.cache_teacher_logits`."
        )
    wrong = [value for value in hashes if value != expected]
    if wrong and cross_tokenizer:
        raise CachedDatasetError(
            f"The {dataset_name} dataset's cross-tokenizer cache was written for another student tokenizer (hash "
            f"{wrong[0][:16]}...) than this student's ({expected[:16]}...): its rows and matched positions are "
            "another tokenization's. Train the student the cache was written for (`processing_class=`), or re-create "
            "it with `cache_teacher_logits(teacher, rows, tokenizer=teacher_tokenizer, "
            "student_tokenizer=student_tokenizer)`."
        )
    if wrong:
        raise CachedDatasetError(
            f"The {dataset_name} dataset's teacher logits were cached with another tokenizer (tokenizer hash "
            f"{wrong[0][:16]}...) than the student's ({expected[:16]}...): its token ids would mean other tokens. "
            "Train with the tokenizer the cache was made with (`processing_class=`), or re-create the cache with the "
            "student's tokenizer (`cache_teacher_logits(..., tokenizer=student_tokenizer)`)."
        )


def check_cached_rows(examples: dict, indices: list[int], *, dataset_name: str = "train") -> list[int]:
    """Check a batch of cached rows: each `teacher_topk` blob covers exactly `len(input_ids)` positions. Returns the
    number of cached positions per row; raises [`CachedDatasetError`] naming the first bad row."""
    counts = []
    for index, input_ids, blob in zip(indices, examples["input_ids"], examples[TOPK_COLUMN], strict=True):
        _, quantized = TopKCodec.unpack(blob)
        if len(quantized.covered) != len(input_ids):
            raise CachedDatasetError(
                f"Row {index} of the {dataset_name} dataset: `{TOPK_COLUMN}` covers {len(quantized.covered)} "
                f"positions but `input_ids` has {len(input_ids)} tokens. Cached columns need one entry per token: "
                "do not edit `input_ids` after caching; re-create the cache from the source dataset instead."
            )
        counts.append(int(np.count_nonzero(quantized.covered)))
    return counts


def prepare_cached_rows(
    examples: dict, indices: list[int], *, max_length: int | None, truncation_mode: str, dataset_name: str = "train"
) -> dict:
    """Batched `Dataset.map` function: check each row, build SFT `labels` from `completion_mask` (-100 elsewhere),
    and truncate `input_ids`, `labels` and the cached blob together to `max_length` (`keep_start` or `keep_end`)."""
    check_cached_rows(examples, indices, dataset_name=dataset_name)
    output = {"input_ids": [], "labels": [], TOPK_COLUMN: []}
    rows = zip(examples["input_ids"], examples["completion_mask"], examples[TOPK_COLUMN], strict=True)
    for input_ids, mask, blob in rows:
        labels = [token if keep else -100 for token, keep in zip(input_ids, mask, strict=True)]
        if max_length is not None and len(input_ids) > max_length:
            window = slice(None, max_length) if truncation_mode == "keep_start" else slice(-max_length, None)
            input_ids, labels, blob = input_ids[window], labels[window], truncate_blob(blob, window)
        output["input_ids"].append(input_ids)
        output["labels"].append(labels)
        output[TOPK_COLUMN].append(blob)
    return output


def truncate_blob(blob: bytes, token_slice: slice) -> bytes:
    """The blob restricted to the token positions `token_slice`, re-packed without re-quantizing (lossless)."""
    codec, quantized = TopKCodec.unpack(blob)
    return codec.pack(quantized.slice_tokens(token_slice))


def expand_blob(blob: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-token arrays of one row: ids `(num_tokens, k)` int32, log-probabilities `(num_tokens, k)` float32 and
    tail log-mass `(num_tokens,)` float32. Positions without cached targets hold id 0 and log-probability `-inf`."""
    decoded = TopKCodec.decode(blob)
    num_tokens, k = len(decoded.covered), decoded.token_ids.shape[1]
    token_ids = np.zeros((num_tokens, k), np.int32)
    log_probs = np.full((num_tokens, k), -np.inf, np.float32)
    tail = np.zeros(num_tokens, np.float32)
    token_ids[decoded.covered] = decoded.token_ids
    log_probs[decoded.covered] = decoded.log_probs
    tail[decoded.covered] = decoded.tail_log_probs
    return token_ids, log_probs, tail
