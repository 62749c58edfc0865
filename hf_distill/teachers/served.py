"""A teacher served over HTTP by vLLM or SGLang: its top-k log-probabilities per position, for the sparse loss.

`teacher_model="http://host:port"` (vLLM) or `teacher_model=ServedTeacher(url, kind="sglang", top_k=...)` picks it.
The teacher never runs beside the student, so it can be any size the server holds.

Throughput: the trainer's dataloader (accelerate's) collates the next batch before it hands over the current one.
The collator is wrapped so that each collated batch is sent to the server at once, from a background thread; the
answer is looked up by the batch's content when the step asks for it. A step then costs about max(student step,
teacher latency) instead of their sum. A batch not prefetched (or dropped from the bounded queue) is fetched on the
spot: prefetching changes only when requests are sent, never what the loss sees.

Temperature: the server gives temperature-1 log-probs of the top k and, implicitly, the tail's mass (1 - their sum).
At temperature T the top-k tokens are exact up to the normaliser, which also needs the tail's mass at T; that is
unknown, so the tail is taken as spread evenly over the V - k tokens outside the top-k. The result is exact at T = 1
and when k = V (no tail), and an approximation otherwise: for T > 1 it gives the tail the most mass consistent with
its temperature-1 mass (for T < 1 the least).
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import torch

from ..fingerprints import TeacherProvenance
from ..losses.dense import log_softmax_fp32
from ..losses.sparse import sparse_kd_terms, tail_log_probs_from_topk
from ..losses.terms import KDTerms, LossSettings, cross_entropy_per_token
from .base import TeacherSource, TeacherTopK
from .served_client import (
    SERVER_KINDS,
    ServedTeacherError,
    ServedTeacherRequestError,
    ServedTeacherUnavailable,
    ServerClient,
    TopKRows,
    api_key_from_env,
)

if TYPE_CHECKING:
    from ..heads import OutputHead
    from ..training.trainer import DistillationTrainer

logger = logging.getLogger(__name__)

__all__ = ["ServedTeacher", "ServedTeacherError", "ServedTeacherUnavailable", "TemperedTopK", "tempered_buckets"]

PROBE_TEXT = "The served teacher must tokenize this probe exactly as the student does: 12 + 30 = 42."


def tempered_buckets(log_probs: torch.Tensor, tail_log_probs: torch.Tensor, vocab_size: int, temperature: float):
    """Top-k and tail-bucket log-probabilities at `temperature`, from temperature-1 ones `(tokens, k)`, `(tokens,)`.

    Each top-k token's weight is `p ** (1 / T)`; the tail's `n * (t / n) ** (1 / T)` with `n = vocab_size - k`
    tokens sharing the tail mass `t` evenly (exact when `n = 0`). Both are then normalised together."""
    log_probs, tail = log_probs.double(), tail_log_probs.double()
    outside = vocab_size - log_probs.shape[-1]
    top = log_probs / temperature
    if outside > 0:
        log_n = math.log(outside)
        tail = torch.where(torch.isneginf(tail), tail, log_n + (tail - log_n) / temperature)
    else:
        tail = torch.full_like(tail, float("-inf"))
    norm = torch.logsumexp(torch.cat([top, tail.unsqueeze(-1)], -1), -1)
    return (top - norm.unsqueeze(-1)).float(), (tail - norm).float()


@dataclass
class _FixedLogits:
    """Stands for an `OutputHead` whose logits were already computed (here: divided by the temperature)."""

    values: torch.Tensor
    vocab_size: int

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.values


@dataclass
class TemperedTopK(TeacherTopK):
    """Served top-k targets: at temperature 1 exactly the cached teacher's sparse loss; at another temperature the
    student's logits are divided by T and the teacher's buckets re-weighted by [`tempered_buckets`]. The
    cross-entropy term stays at temperature 1, as in the dense loss."""

    def kd_terms(self, student_hidden, student_head: OutputHead, labels, settings: LossSettings) -> KDTerms:
        tail = self._tail(student_head.vocab_size)
        if settings.temperature == 1.0:
            exact = TeacherTopK(self.token_ids, self.log_probs, tail)
            return exact.kd_terms(student_hidden, student_head, labels, settings)
        top, tail = tempered_buckets(self.log_probs, tail, student_head.vocab_size, settings.temperature)
        logits = student_head.logits(student_hidden)
        scaled = _FixedLogits(logits.float() / settings.temperature, student_head.vocab_size)
        kwargs = {**settings.divergence_kwargs(), "temperature": 1.0}
        terms = sparse_kd_terms(student_hidden, scaled, self.token_ids, top, labels, teacher_tail_log_probs=tail,
                                **kwargs, ce_type=settings.ce_type)
        ce = cross_entropy_per_token(log_softmax_fp32(logits), labels, ce_type=settings.ce_type).sum()
        return replace(terms, ce_sum=ce)

    def _tail(self, vocab_size: int) -> torch.Tensor:
        """The tail's log-mass, 1 - sum(top-k); none at all when the top-k is the whole vocabulary (rounding would
        leave ~1e-7 there, against a student tail of exactly 0: an infinite gradient)."""
        if self.log_probs.shape[-1] >= vocab_size:
            return torch.full(self.log_probs.shape[:-1], float("-inf"), device=self.log_probs.device)
        return tail_log_probs_from_topk(self.log_probs)


class _Prefetcher:
    """Requests for batches not yet trained on, in one background thread, keyed by batch content.

    At most `depth` requests wait; a new one beyond that cancels the oldest (a batch skipped on resume, say), which
    is then fetched on the spot if it is ever asked for."""

    def __init__(self, fetch, depth: int):
        self._fetch, self._depth = fetch, depth
        self._pending: OrderedDict[str, Future] = OrderedDict()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="served-teacher")
        self.hits = self.misses = 0

    def submit(self, key: str, rows: list[list[int]]) -> None:
        with self._lock:
            if key in self._pending:
                return
            while len(self._pending) >= self._depth:
                self._pending.popitem(last=False)[1].cancel()
            self._pending[key] = self._pool.submit(self._fetch, rows)

    def take(self, key: str, rows: list[list[int]]) -> list[TopKRows]:
        with self._lock:
            future = self._pending.pop(key, None)
        if future is None or future.cancelled():
            self.misses += 1
            return self._fetch(rows)
        self.hits += 1
        return future.result()


class _PrefetchingCollator:
    """The trainer's collator, plus: send each collated batch to the teacher server right away."""

    def __init__(self, collator, teacher: ServedTeacher):
        self.collator, self.teacher = collator, teacher

    def __getattr__(self, name):  # padding settings and the like stay readable on the wrapped collator
        if name == "collator":  # not set yet (unpickling in a dataloader worker)
            raise AttributeError(name)
        return getattr(self.collator, name)

    def __call__(self, examples):
        batch = self.collator(examples)
        self.teacher.prefetch(batch)
        return batch


class ServedTeacher(TeacherSource):
    """A teacher served by vLLM (`vllm serve MODEL --max-logprobs K`) or SGLang (`python -m sglang.launch_server`);
    gives [`TeacherTopK`] targets for the sparse loss (top-k plus a tail bucket).

    Args:
        url (`str`): the server's base URL, e.g. `"http://10.0.0.5:8000"`.
        kind (`str`, defaults to `"vllm"`): `"vllm"` (OpenAI-compatible `/v1/completions`) or `"sglang"`
            (`/generate`).
        top_k (`int`, defaults to `20`): log-probs per position; vLLM refuses more than its `--max-logprobs`.
        api_key_env (`str`, *optional*): environment variable holding the server's API key.
        model (`str`, *optional*): the served model name to use; the server's first model when `None`.
        revision (`str`, *optional*): the model's revision, for the provenance (servers do not report it).
        timeout (`float`, defaults to `60`): seconds per request.
        max_retries (`int`, defaults to `4`): retries with exponential backoff on 429, 5xx and connection errors.
        prefetch (`int`, defaults to `2`): batches requested ahead of the step.

    Example:

    ```python
    >>> trainer = DistillationTrainer(model=student, args=args, train_dataset=dataset,
    ...                               teacher_model=ServedTeacher("http://127.0.0.1:8000", top_k=20))
    ```
    """

    dataset_columns: tuple[str, ...] = ()

    def __init__(self, url: str, kind: str = "vllm", top_k: int = 20, *, api_key_env: str | None = None,
                 model: str | None = None, revision: str | None = None, timeout: float = 60.0, max_retries: int = 4,
                 prefetch: int = 2):
        _check_settings(url, kind, top_k, prefetch)
        self.url, self.kind, self.top_k, self.revision = url.rstrip("/"), kind, top_k, revision
        self.served_model = model  # the server's name for it (`model` of TeacherSource is a local module: None here)
        self.client = ServerClient(url, kind, api_key=api_key_from_env(api_key_env), timeout=timeout,
                                   max_retries=max_retries)
        self.teacher_provenance: TeacherProvenance | None = None
        self._prefetcher = _Prefetcher(self.score_rows, depth=prefetch)

    @classmethod
    def from_trainer_inputs(cls, teacher_model, args, dataset_columns, **kwargs) -> ServedTeacher | None:
        """`TEACHER_SOURCES` factory: a `ServedTeacher`, or an `http(s)://` URL as `teacher_model` or
        `teacher_model_name_or_path` (a vLLM server with the default settings)."""
        given = kwargs.get("teacher_server") or teacher_model
        if given is None:
            given = getattr(args, "teacher_model_name_or_path", None)
        if isinstance(given, cls):
            return given
        if isinstance(given, str) and given.startswith(("http://", "https://")):
            return cls(given)
        return None

    # -- set-up: the checks before training -------------------------------------------------------------------

    def setup(self, trainer: DistillationTrainer) -> None:
        if getattr(trainer.data_collator, "padding_free", False):
            raise ServedTeacherError(
                "`padding_free` (--padding_free) is True, but a served teacher scores each row as one sequence and a "
                "padding-free row packs several. Set padding_free=False (and packing=False) with a served teacher."
            )
        self.connect(trainer.tokenizer, trainer.student_head.vocab_size)
        trainer.data_collator = _PrefetchingCollator(trainer.data_collator, self)

    def connect(self, tokenizer, vocab_size: int) -> TeacherProvenance:
        """Ask the server what it serves, check its tokenizer and top-k against `tokenizer` and `vocab_size`, and
        record the served model in `teacher_provenance` (used by training and by `cache_teacher_logits`)."""
        info = self.client.model_info()
        if self.served_model is None:
            self.served_model = info.served_name
        self._check_tokenizer(tokenizer)
        self._check_top_k(tokenizer, vocab_size)
        self.teacher_provenance = TeacherProvenance(name=info.model,
                                                    revision=self.revision or info.revision or "unresolved")
        logger.info("Served teacher %s at %s (%s), top_k=%d.", info.model, self.url, self.kind, self.top_k)
        return self.teacher_provenance

    def _check_tokenizer(self, tokenizer) -> None:
        served = self.client.tokenize(PROBE_TEXT, self.served_model)
        local = tokenizer(PROBE_TEXT, add_special_tokens=False)["input_ids"]
        if served != local:
            raise ServedTeacherError(
                f"The served teacher ({self.served_model!r} at {self.url}) tokenizes the probe {PROBE_TEXT!r} as "
                f"{served[:12]}..., the student's tokenizer as {local[:12]}...: they are different tokenizers, and "
                "logit distillation needs a shared one. Serve a teacher of the student's family, or distil at "
                "sequence level (`hf-distill generate`, then train on the generated completions)."
            )

    def _check_top_k(self, tokenizer, vocab_size: int) -> None:
        probe = tokenizer(PROBE_TEXT, add_special_tokens=False)["input_ids"]
        if self.top_k > vocab_size:
            raise ServedTeacherError(
                f"`top_k` is {self.top_k}, above the student's vocabulary ({vocab_size} tokens). Use top_k <= "
                f"{vocab_size}."
            )
        try:
            answer = self.client.top_k([probe], self.top_k, self.served_model)[0]
        except ServedTeacherRequestError as error:
            if error.max_logprobs is None:
                raise
            raise ServedTeacherError(
                f"`top_k` is {self.top_k}, but the vLLM server at {self.url} returns at most {error.max_logprobs} "
                f"log-probs per position (its `--max-logprobs`). Restart it with `vllm serve ... --max-logprobs "
                f"{self.top_k}`, or set ServedTeacher(top_k={error.max_logprobs})."
            ) from None
        if answer.token_ids.numel() and int(answer.token_ids.max()) >= vocab_size:
            raise ServedTeacherError(
                f"The served teacher names token id {int(answer.token_ids.max())}, beyond the student's vocabulary "
                f"({vocab_size} tokens): its vocabulary is larger. Serve a teacher with the student's tokenizer."
            )

    # -- during training ----------------------------------------------------------------------------------------

    def prefetch(self, batch: dict) -> None:
        rows = _rows(batch)
        self._prefetcher.submit(_batch_key(rows), rows)

    def score_rows(self, rows: list[list[int]]) -> list[TopKRows]:
        """The server's top-k temperature-1 log-probs for each row of token ids (one batched request)."""
        return self.client.top_k(rows, self.top_k, self.served_model)

    def targets(self, inputs: dict[str, torch.Tensor], position_mask: torch.Tensor) -> TemperedTopK:
        rows = _rows(inputs)
        answers = self._prefetcher.take(_batch_key(rows), rows)
        batch, width = position_mask.shape
        ids = torch.zeros(batch, width, self.top_k, dtype=torch.long)
        log_probs = torch.full((batch, width, self.top_k), float("-inf"))
        mask = inputs.get("attention_mask")
        for index, answer in enumerate(answers):
            # The row's tokens sit where the attention mask is 1; target p predicts the token at p + 1.
            start = int(mask[index].nonzero()[0]) if mask is not None and mask[index].any() else 0
            span = slice(start, start + answer.token_ids.shape[0])
            ids[index, span], log_probs[index, span] = answer.token_ids, answer.log_probs
        device = position_mask.device
        log_probs = log_probs.to(device)[position_mask]
        if torch.isneginf(log_probs).all(-1).any():
            raise ServedTeacherUnavailable(
                f"The teacher server at {self.url} gave no log-probs for some trained positions: its answer is "
                "shorter than the rows sent. Check the server's `max_model_len` against the trainer's `max_length`."
            )
        return TemperedTopK(token_ids=ids.to(device)[position_mask], log_probs=log_probs)


def _check_settings(url, kind, top_k, prefetch) -> None:
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ServedTeacherError(f"`url` is {url!r}; a served teacher needs an http(s) URL, e.g. 'http://host:8000'.")
    if kind not in SERVER_KINDS:
        raise ServedTeacherError(f"`kind` is {kind!r}; choose one of {', '.join(SERVER_KINDS)}.")
    if not isinstance(top_k, int) or top_k < 1:
        raise ServedTeacherError(f"`top_k` is {top_k!r}; it must be a positive integer (20 is vLLM's default cap).")
    if not isinstance(prefetch, int) or prefetch < 1:
        raise ServedTeacherError(f"`prefetch` is {prefetch!r}; it must be a positive integer (batches ahead).")


def _rows(batch: dict) -> list[list[int]]:
    """The token ids of each row without padding (the attention mask's 1s)."""
    input_ids = batch["input_ids"].cpu()
    mask = batch.get("attention_mask")
    if mask is None:
        return input_ids.tolist()
    mask = mask.cpu().bool()
    return [row[keep].tolist() for row, keep in zip(input_ids, mask, strict=True)]


def _batch_key(rows: list[list[int]]) -> str:
    digest = hashlib.sha1()
    for row in rows:
        digest.update(torch.tensor(row, dtype=torch.int64).numpy().tobytes() + b"|")
    return digest.hexdigest()
