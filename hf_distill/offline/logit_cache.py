"""Offline teacher: run the teacher once over a dataset and store its top-k next-token log-probabilities.

Training then needs no teacher at all: `DistillationTrainer(model=..., teacher_model=None, train_dataset=cached)`.
The output is a `datasets` dataset (format in [`hf_distill.data.format`], encoding in [`hf_distill.data.codec`]) saved
with `save_to_disk` plus a `README.md` dataset card; `Dataset.push_to_hub` publishes it as parquet.
"""

from __future__ import annotations

import os
from functools import partial

import numpy as np
import pyarrow.compute as pc
import torch
from datasets import Dataset
from torch import nn

from .._version import __version__
from ..errors import HfDistillError
from ..fingerprints import chat_template_hash, teacher_provenance, tokenizer_hash
from ..formats.cache import (
    TOKENIZER_HASH_COLUMN,
    TOPK_COLUMN,
    CacheInfo,
    cache_features,
)
from ..formats.codec import CODEC_NAME, TopKCodec
from ..formats.tokenization import tokenize_like_sft
from ..heads import OutputHead, backbone_hidden_states, unwrap_model
from ..nonfinite import check_teacher_finite
from ..privacy import scan_dataset
from ..teachers.cross_tokenizer import STUDENT_POSITIONS, TEACHER_IDS, TEACHER_POSITIONS, tokenize_pair
from ..vocabulary import check_shared_vocabulary, find_tokenizer, hub_kwargs
from .card import write_dataset_card
from .served_scorer import ServedScorer, as_served_teacher
from .shards import Shard, check_shard_size, first_rows, run_sharded
from .teacher import load_offline_teacher

__all__ = ["CacheSettingsError", "cache_teacher_logits", "topk_log_probs"]

# Positions projected to the vocabulary at once: bounds the (positions, vocab) float32 logits to ~1 GiB at 150k.
_MAX_LOGIT_ELEMENTS = 1 << 28


class CacheSettingsError(HfDistillError, ValueError):
    """An argument of `cache_teacher_logits` is invalid; the message names it, its value and the fix."""


def topk_log_probs(logits: torch.Tensor, top_k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The top-k of `log_softmax(logits)` (float32, temperature 1) and the exact log of the mass outside it.

    Args:
        logits (`torch.Tensor` of shape `(positions, vocab)`).
        top_k (`int`): entries kept per position.

    Returns:
        `(token_ids, log_probs, tail_log_probs)`: `(positions, k)` ids and log-probabilities, most likely first, and
        `(positions,)` log of the remaining mass, summed over the complement (so a confident teacher's tiny tail keeps
        its digits; `-inf` when the top-k is the whole vocabulary).
    """
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    values, token_ids = log_probs.topk(top_k, dim=-1)
    tail = torch.logsumexp(log_probs.scatter_(-1, token_ids, float("-inf")), dim=-1)
    return token_ids, values, tail


def cache_teacher_logits(
    teacher: str | os.PathLike | nn.Module,
    dataset: Dataset,
    *,
    tokenizer,
    output_dir: str | os.PathLike,
    top_k: int = 64,
    batch_size: int = 8,
    max_length: int | None = None,
    shard_size: int = 1000,
    model_kwargs: dict | None = None,
    max_rows: int | None = None,
    student_tokenizer=None,
) -> Dataset:
    """Score `dataset` with the teacher once and store its top-k log-probabilities per training position.

    Rows are tokenized exactly as `trl.SFTTrainer` tokenizes them (prompt/completion -> `completion_mask`; messages
    through the chat template), and the teacher's distribution is stored at every position that predicts a
    completion token (every token for text and messages data): the positions SFT and distillation train on.

    Run it under `torchrun` or `accelerate launch` to split the work: each process writes its own shards and the
    result equals a one-process run. Re-running with the same `output_dir` resumes, skipping finished shards.

    Args:
        teacher (`str`, `os.PathLike`, `nn.Module` or `ServedTeacher`): Hub id, local path or model (quantized models
            too); or a teacher served by vLLM or SGLang (`ServedTeacher(url, top_k=...)`, or its `http(s)://` URL
            for a vLLM server), whose top-k prompt log-probs are cached (`top_k` must be the ServedTeacher's).
        dataset (`Dataset`): in a TRL format: `text`, `prompt`/`completion` or `messages`.
        tokenizer: the tokenizer to tokenize with; the student must share its vocabulary (checked at training).
        output_dir (`str`): where the dataset, its card and (while running) the shards go.
        top_k (`int`, *optional*, defaults to `64`): entries kept per position.
        batch_size (`int`, *optional*, defaults to `8`): rows per teacher forward.
        max_length (`int`, *optional*): truncate rows to this many tokens (keep the start, as SFTTrainer does).
        shard_size (`int`, *optional*, defaults to `1000`): rows per shard (the unit of resuming and of work split).
        model_kwargs (`dict`, *optional*): `from_pretrained` keyword arguments when `teacher` is an id or path.
        max_rows (`int`, *optional*): score only the first `max_rows` rows of `dataset` (a quick look).
        student_tokenizer (*optional*): the student's tokenizer when it differs from the teacher's (`tokenizer` is
            then the teacher's own): each prompt/completion row is tokenized for both models and matched by text as
            `cross_tokenizer=` does in training, and the teacher's top-k at each matched teacher position is stored
            at the paired student position (`input_ids` are the student's). Train with `cross_tokenizer=`. A served
            teacher scores the teacher's ids built here (its `/tokenize` must match `tokenizer`).

    Returns:
        `Dataset` with columns `input_ids`, `completion_mask`, `teacher_topk`, `tokenizer_hash`; also saved in
        `output_dir` (`datasets.load_from_disk(output_dir)`) with a `README.md` card.

    Example:

    ```python
    >>> from hf_distill.data import cache_teacher_logits
    >>> cached = cache_teacher_logits(
    ...     "Qwen/Qwen2.5-7B-Instruct", dataset, tokenizer=tokenizer, output_dir="qwen7b-logits", top_k=64
    ... )
    ```
    """
    dataset = first_rows(dataset, max_rows)
    check_shard_size(shard_size)
    _check_settings(dataset, tokenizer, top_k=top_k, batch_size=batch_size, max_length=max_length)
    served = as_served_teacher(teacher, top_k)
    if student_tokenizer is not None:
        _check_cross_tokenizer(dataset, student_tokenizer)
    if served is not None:
        provenance, vocab_size, make_scorer = _served_teacher(served, tokenizer, top_k=top_k)
    else:
        provenance, vocab_size, make_scorer = _local_teacher(teacher, dataset, tokenizer, top_k=top_k,
                                                             model_kwargs=model_kwargs)
    codec = TopKCodec(vocab_size)
    info = CacheInfo(
        teacher=provenance.name, teacher_revision=provenance.revision, top_k=top_k, vocab_size=vocab_size,
        encoding={"name": CODEC_NAME, "sqrt_levels": codec.sqrt_levels, "log_levels": codec.log_levels,
                  "log_step": codec.log_step},
        tokenizer_hash=tokenizer_hash(student_tokenizer or tokenizer),
        chat_template_hash=chat_template_hash(student_tokenizer or tokenizer),
        max_length=max_length, batch_size=batch_size, shard_size=shard_size, hf_distill_version=__version__,
        teacher_gguf=provenance.gguf,
        cross_tokenizer=_cross_tokenizer_record(student_tokenizer, tokenizer),
    )
    scorer = make_scorer(codec)
    if student_tokenizer is not None:
        work = partial(_cache_cross_tokenizer_shard, tokenizer=student_tokenizer, teacher_tokenizer=tokenizer,
                       scorer=scorer, info=info, batch_size=batch_size)
    else:
        work = partial(_cache_shard, tokenizer=tokenizer, scorer=scorer, info=info, batch_size=batch_size)
    finalize = partial(_finalize, info=info, output_dir=output_dir, source=dataset)
    return run_sharded(
        dataset, output_dir, kind="teacher-logits", settings=info.settings(), shard_size=shard_size, work=work,
        finalize=finalize,
    )


def _local_teacher(teacher, dataset: Dataset, tokenizer, *, top_k: int, model_kwargs: dict | None):
    """A teacher run in this process: its provenance, the vocabulary it is cached over, and its scorer's factory."""
    model, _ = load_offline_teacher(teacher, tokenizer, model_kwargs=model_kwargs)
    head = OutputHead.from_model(model)
    # The teacher reads the ids of `tokenizer`, given as the teacher's: the training rule checks it against the one
    # saved with the teacher when there is one (rows beyond the tokenizer are padding no id reaches).
    config = unwrap_model(model).config
    saved = find_tokenizer(teacher, config=config, **hub_kwargs(model_kwargs))
    head.vocab_size = check_shared_vocabulary(
        tokenizer, student_rows=len(tokenizer), teacher_rows=head.num_rows, teacher_config=config,
        teacher_tokenizer=saved if saved is not None else tokenizer, argument="tokenizer",
        texts=_sample_texts(dataset, tokenizer) if saved is not None else (),
    )
    if top_k > head.vocab_size:
        raise CacheSettingsError(
            f"`top_k` is {top_k} but the teacher's vocabulary has {head.vocab_size} tokens: choose top_k <= "
            f"{head.vocab_size} (64 is usual)."
        )
    return teacher_provenance(model, teacher), head.vocab_size, partial(
        _Scorer, model, head, top_k=top_k, pad_token_id=_pad_id(tokenizer))


def _served_teacher(served, tokenizer, *, top_k: int):
    """A teacher behind a vLLM/SGLang server, checked like a training run checks it (model, tokenizer probe, top-k
    cap, ids within the vocabulary): its provenance, the tokenizer's vocabulary and its scorer's factory."""
    if served.top_k != top_k:
        raise CacheSettingsError(
            f"`top_k` is {top_k} but the ServedTeacher asks its server for top_k={served.top_k}: pass the same k "
            f"to both (ServedTeacher(url, top_k={top_k}), or top_k={served.top_k})."
        )
    vocab_size = len(tokenizer)
    return served.connect(tokenizer, vocab_size), vocab_size, partial(ServedScorer, served)


def _sample_texts(dataset: Dataset, tokenizer, num_rows: int = 16) -> list[str]:
    """The first rows as the teacher will read them (tokenized like SFT, decoded), to compare tokenizers on."""
    sample = tokenize_like_sft(dataset.select(range(min(num_rows, len(dataset)))), tokenizer)
    return [tokenizer.decode(list(ids), skip_special_tokens=True) for ids in sample["input_ids"]]


def _check_settings(dataset, tokenizer, *, top_k: int, batch_size: int, max_length: int | None) -> None:
    """Every argument problem at once, before the teacher is loaded."""
    problems = []
    if tokenizer is None:
        problems.append("`tokenizer` is required: pass the teacher's tokenizer (the student must share it).")
    elif top_k > len(tokenizer):
        problems.append(
            f"`top_k` is {top_k} but the vocabulary has {len(tokenizer)} tokens: choose top_k <= {len(tokenizer)} "
            "(64 is usual)."
        )
    if top_k < 1:
        problems.append(f"`top_k` is {top_k}; it must be >= 1 (64 is usual).")
    if batch_size < 1:
        problems.append(f"`batch_size` is {batch_size}; it must be >= 1.")
    if max_length is not None and max_length < 2:
        problems.append(f"`max_length` is {max_length}; it must be >= 2 tokens, or None for no truncation.")
    if not isinstance(dataset, Dataset):
        problems.append(f"`dataset` must be a `datasets.Dataset`, got {type(dataset).__name__}.")
    elif len(dataset) == 0:
        problems.append("`dataset` is empty.")
    if problems:
        raise CacheSettingsError("Invalid cache_teacher_logits arguments:\n" + "\n".join(f"- {p}" for p in problems))


def _check_cross_tokenizer(dataset, student_tokenizer) -> None:
    """What `student_tokenizer=` needs, before the teacher is loaded (or a served one is asked anything)."""
    problems = []
    columns = getattr(dataset, "column_names", None) or []
    if not {"prompt", "completion"} <= set(columns):
        problems.append(f"the dataset has columns {sorted(columns)}; matching positions by text needs `prompt` and "
                        "`completion` columns (plain text or conversational)")
    if getattr(student_tokenizer, "eos_token_id", None) is None:
        problems.append("the student's tokenizer has no EOS token (its rows end with it, as in training)")
    if problems:
        raise CacheSettingsError("`student_tokenizer=` (a cache across tokenizers) cannot be used here: "
                                 + "; ".join(problems) + ".")


def _cross_tokenizer_record(student_tokenizer, teacher_tokenizer) -> dict | None:
    if student_tokenizer is None:
        return None
    return {"student_tokenizer": _tokenizer_record(student_tokenizer),
            "teacher_tokenizer": _tokenizer_record(teacher_tokenizer)}


def _tokenizer_record(tokenizer) -> dict:
    """Class, size and hashes of a tokenizer, as the student's provenance records them."""
    return {"class": type(tokenizer).__name__, "vocab_size": len(tokenizer), "sha256": tokenizer_hash(tokenizer),
            "chat_template_sha256": chat_template_hash(tokenizer)}


def _pad_id(tokenizer) -> int:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return 0 if pad is None else pad


class _Scorer:
    """Teacher forward for a batch of tokenized rows -> one top-k blob per row."""

    def __init__(self, model: nn.Module, head: OutputHead, codec: TopKCodec, *, top_k: int, pad_token_id: int):
        self.model, self.head, self.codec = model, head, codec
        self.top_k, self.pad_token_id = top_k, pad_token_id
        self.device = next(model.parameters()).device

    def __call__(self, input_ids: list[list[int]], completion_masks: list[list[int]]) -> list[bytes]:
        # Position t predicts token t + 1: cache it when that token is trained on.
        covered = [np.asarray([*mask[1:], 0], dtype=bool) for mask in completion_masks]
        return [self.codec.encode(*scores, mask) for scores, mask in zip(self.score(input_ids, covered), covered,
                                                                          strict=True)]

    @torch.no_grad()
    def score(self, input_ids: list[list[int]], positions: list[np.ndarray]) -> list[tuple]:
        """Per row, the top-k `(ids, log_probs, tails)` arrays at the positions where `positions[row]` is True."""
        length = max(len(ids) for ids in input_ids)
        batch = torch.full((len(input_ids), length), self.pad_token_id, dtype=torch.long)
        attention = torch.zeros_like(batch)
        covered = torch.zeros_like(batch, dtype=torch.bool)
        for row, (ids, mask) in enumerate(zip(input_ids, positions, strict=True)):
            batch[row, : len(ids)] = torch.tensor(ids)
            attention[row, : len(ids)] = 1
            covered[row, : len(ids)] = torch.from_numpy(np.asarray(mask, dtype=bool))
        hidden = backbone_hidden_states(
            self.model, input_ids=batch.to(self.device), attention_mask=attention.to(self.device)
        )[covered.to(self.device)]
        check_teacher_finite(hidden, dtype=hidden.dtype, what="final hidden states (while caching its logits)",
                             fix_flag="`model_kwargs={'dtype': 'bfloat16'}`, --teacher_model_init_kwargs")
        token_ids, log_probs, tails = self._topk(hidden)
        scores, start = [], 0
        for row in range(len(input_ids)):
            stop = start + int(covered[row].sum())
            scores.append((token_ids[start:stop], log_probs[start:stop], tails[start:stop]))
            start = stop
        return scores

    def _topk(self, hidden: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        chunk = max(1, _MAX_LOGIT_ELEMENTS // self.head.vocab_size)
        parts = [
            topk_log_probs(self.head.logits(hidden[i : i + chunk]), self.top_k) for i in range(0, len(hidden), chunk)
        ]
        if not parts:
            return np.zeros((0, self.top_k), np.int64), np.zeros((0, self.top_k), np.float32), np.zeros(0, np.float32)
        return tuple(torch.cat([part[i] for part in parts]).cpu().numpy() for i in range(3))


def _cache_shard(rows: Dataset, shard: Shard, *, tokenizer, scorer: _Scorer, info: CacheInfo, batch_size: int):
    tokenized = tokenize_like_sft(rows, tokenizer, max_length=info.max_length)
    blobs = []
    for start in range(0, len(tokenized), batch_size):
        batch = tokenized[start : start + batch_size]
        blobs.extend(scorer(batch["input_ids"], batch["completion_mask"]))
    columns = {
        "input_ids": tokenized["input_ids"],
        "completion_mask": tokenized["completion_mask"],
        TOPK_COLUMN: blobs,
        TOKENIZER_HASH_COLUMN: [info.tokenizer_hash] * len(tokenized),
    }
    return Dataset.from_dict(columns, features=cache_features())


def _cache_cross_tokenizer_shard(rows: Dataset, shard: Shard, *, tokenizer, teacher_tokenizer, scorer: _Scorer,
                                  info: CacheInfo, batch_size: int):
    """Rows tokenized for both models and matched by text (as `cross_tokenizer=` does in training); the teacher
    scores its own ids, and its top-k at each matched teacher position is stored at the paired student position."""
    tokenized = rows.map(tokenize_pair, remove_columns=rows.column_names, fn_kwargs={
        "tokenizer": tokenizer, "teacher_tokenizer": teacher_tokenizer, "max_length": info.max_length})
    blobs = []
    for start in range(0, len(tokenized), batch_size):
        batch = tokenized[start : start + batch_size]
        teacher_at = [np.isin(np.arange(len(ids)), at) for ids, at in zip(batch[TEACHER_IDS], batch[TEACHER_POSITIONS],
                                                                          strict=True)]
        student_at = [np.isin(np.arange(len(ids)), at) for ids, at in zip(batch["input_ids"], batch[STUDENT_POSITIONS],
                                                                          strict=True)]
        # Both position lists increase together (spans are in text order): row i of the scores is pair i.
        scores = scorer.score(batch[TEACHER_IDS], teacher_at)
        blobs.extend(scorer.codec.encode(*row, mask) for row, mask in zip(scores, student_at, strict=True))
    columns = {
        "input_ids": tokenized["input_ids"],
        "completion_mask": tokenized["completion_mask"],
        TOPK_COLUMN: blobs,
        TOKENIZER_HASH_COLUMN: [info.tokenizer_hash] * len(tokenized),
    }
    return Dataset.from_dict(columns, features=cache_features())


def _finalize(dataset: Dataset, *, info: CacheInfo, output_dir, source: Dataset) -> Dataset:
    """Count what the dataset holds, record it in the dataset's info and card (with a privacy scan of the source
    text, which the cache holds as token ids)."""
    privacy = scan_dataset(source)
    privacy.warn_if_found("the text cached as token ids")
    table = dataset.data
    masks = table.column("completion_mask")
    info.num_rows = len(dataset)
    info.num_tokens = int(pc.sum(pc.list_value_length(table.column("input_ids"))).as_py() or 0)
    # Cached positions predict a completion token: the mask's ones after the first token.
    info.num_cached_positions = int(
        (pc.sum(pc.list_flatten(masks)).as_py() or 0) - (pc.sum(pc.list_element(masks, 0)).as_py() or 0)
    )
    if info.cross_tokenizer:  # only the positions matched by text hold targets
        info.num_cached_positions = sum(int(TopKCodec.unpack(blob)[1].covered.sum())
                                        for blob in table.column(TOPK_COLUMN).to_pylist())
    info.num_topk_bytes = int(pc.sum(pc.binary_length(table.column(TOPK_COLUMN))).as_py() or 0)
    dataset.info.description = info.to_json()
    per_position = info.num_topk_bytes / max(info.num_cached_positions, 1)
    write_dataset_card(
        output_dir,
        title=f"Top-{info.top_k} teacher log-probabilities of {info.teacher}",
        summary=(
            f"{info.num_rows} tokenized rows ({info.num_tokens} tokens) with the teacher's top-{info.top_k} "
            f"next-token log-probabilities and its tail mass at {info.num_cached_positions} positions, encoded with "
            f"`{CODEC_NAME}` ({per_position:.1f} bytes per position). Train a student without the teacher: "
            "`DistillationTrainer(model=student, teacher_model=None, train_dataset=dataset)`; the student must use "
            f"a tokenizer with hash `{info.tokenizer_hash[:16]}...`."
            + (" Written across tokenizers (the top-k ids are the teacher's own tokens, at the student positions "
               "matched by text): train with `DistillationConfig(cross_tokenizer='uld' or 'span')`."
               if info.cross_tokenizer else "")
        ),
        function="hf_distill.data.cache_teacher_logits",
        settings={**info.settings(), **{k: getattr(info, k) for k in (
            "num_rows", "num_tokens", "num_cached_positions", "num_topk_bytes", "hf_distill_version")}},
        usage=(
            "import datasets\nfrom hf_distill import DistillationConfig, DistillationTrainer\n\n"
            f"dataset = datasets.load_from_disk({str(output_dir)!r})\n"
            "trainer = DistillationTrainer(model=student, teacher_model=None, args=DistillationConfig(...), "
            "train_dataset=dataset)"
        ),
        tags=["teacher-logits", "offline-distillation"],
        privacy={"source text (cached as token ids)": privacy},
    )
    return dataset

