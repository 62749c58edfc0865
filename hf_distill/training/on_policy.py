"""On-policy and mixed distillation (GKD, Agarwal et al. 2024): a training micro-batch's completions are replaced by
completions sampled from the student (with probability `lmbda`) or, with `seq_kd`, from the teacher; the teacher
then scores the sampled sequences and the usual loss applies to them.

Each micro-batch is rebuilt before its tokens are counted: transformers counts the trained positions of the
accumulated batch from the dataloader's labels (`Trainer.get_batch_samples`), which on-policy sampling replaces, so
the count is taken again over the rebuilt batches and gradient accumulation stays exact. The prompt of a row is its
tokens before the first trained label; everything after it (the dataset's completion, and later turns of a
conversation) is replaced by the sample. The batch is rebuilt as prompt + completion, padded on the right like the
collator's, with labels masking the prompt and everything after the first end-of-sequence token.

Reproducible: the per-batch draw and the sampling's random numbers derive from (`seed`, optimizer step, micro-batch,
process), never from the global generators, so dropout and data order are untouched and a resumed run draws alike.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList
from trl.distributed import DistributedBackend
from trl.models.utils import unwrap_model_for_generation

from ..errors import HfDistillError
from ..teachers import TeacherSource

if TYPE_CHECKING:
    from .trainer import DistillationTrainer

__all__ = [
    "OnPolicyBatches", "OnPolicyError", "SamplingSettings", "draw_completion_source", "rebuild_batch",
    "split_prompts",
]

#: where a micro-batch's completions come from.
SOURCES = ("dataset", "student", "teacher")


class OnPolicyError(HfDistillError, ValueError):
    """On-policy or `seq_kd` distillation cannot run with this teacher, data or distributed set-up."""


@dataclass(frozen=True)
class SamplingSettings:
    """How completions are sampled (the `generation_*` fields and `max_new_tokens` of `DistillationConfig`)."""

    max_new_tokens: int
    temperature: float
    top_p: float
    top_k: int

    @classmethod
    def from_config(cls, args) -> SamplingSettings:
        return cls(args.max_new_tokens, args.generation_temperature, args.generation_top_p, args.generation_top_k)

    def generation_config(self, *, eos_token_ids: list[int], pad_token_id: int) -> GenerationConfig:
        sampling = {"do_sample": False}  # temperature 0: greedy
        if self.temperature > 0:
            sampling = {"do_sample": True, "temperature": self.temperature, "top_p": self.top_p, "top_k": self.top_k}
        return GenerationConfig(max_new_tokens=self.max_new_tokens, eos_token_id=eos_token_ids,
                                pad_token_id=pad_token_id, use_cache=True, **sampling)


def draw_completion_source(seed: int, step: int, index: int, *, lmbda: float, seq_kd: bool) -> str:
    """`"student"` with probability `lmbda`, else `"teacher"` when `seq_kd`, else `"dataset"`: a deterministic draw
    for micro-batch `index` of optimizer step `step` (the same on every process; `lmbda=0` draws nothing)."""
    if lmbda > 0 and random.Random(f"lmbda:{seed}:{step}:{index}").random() < lmbda:
        return "student"
    return "teacher" if seq_kd else "dataset"


def split_prompts(batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """Each row's prompt `(prompt_len,)`: its tokens before the first trained label (the whole row when none is)."""
    labels, input_ids = batch["labels"], batch["input_ids"]
    mask = batch.get("attention_mask")
    prompts = []
    for row in range(input_ids.shape[0]):
        trained = (labels[row] != -100).nonzero()
        length = int(trained[0]) if len(trained) else int(mask[row].sum() if mask is not None else labels.shape[1])
        if length == 0:
            raise OnPolicyError(
                f"Row {row} of a training batch has no prompt (its first token is trained on), so there is nothing "
                "to sample a completion from. `lmbda` > 0 and `seq_kd` need prompt/completion data (or messages with "
                "`assistant_only_loss=True`): plain text trains on every token."
            )
        prompts.append(input_ids[row, :length])
    return prompts


def _left_padded(prompts: list[torch.Tensor], pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts `(batch, max_prompt_len)` padded on the left for `generate`, and their attention mask."""
    width = max(len(prompt) for prompt in prompts)
    input_ids = prompts[0].new_full((len(prompts), width), pad_token_id)
    attention_mask = torch.zeros_like(input_ids)
    for row, prompt in enumerate(prompts):
        input_ids[row, width - len(prompt):] = prompt
        attention_mask[row, width - len(prompt):] = 1
    return input_ids, attention_mask


def _through_first_eos(completions: torch.Tensor, eos_token_ids: list[int]) -> list[torch.Tensor]:
    """Each row of `completions` `(batch, new_tokens)` up to and including its first end-of-sequence token."""
    is_eos = torch.isin(completions, torch.tensor(eos_token_ids, device=completions.device))
    rows = []
    for row, ends in zip(completions, is_eos, strict=True):
        stop = int(ends.nonzero()[0]) + 1 if ends.any() else row.shape[0]
        rows.append(row[:stop])
    return rows


def rebuild_batch(prompts, completions, *, pad_token_id: int, position_ids: bool = False) -> dict[str, torch.Tensor]:
    """The micro-batch `prompt + completion` per row, padded on the right: `input_ids`, `attention_mask` and `labels`
    `(batch, seq)` with -100 on the prompt and the padding (and `position_ids` when the collator gives them)."""
    rows = [torch.cat([prompt, completion]) for prompt, completion in zip(prompts, completions, strict=True)]
    width = max(len(row) for row in rows)
    input_ids = rows[0].new_full((len(rows), width), pad_token_id)
    labels = torch.full_like(input_ids, -100)
    attention_mask = torch.zeros_like(input_ids)
    for index, (row, prompt) in enumerate(zip(rows, prompts, strict=True)):
        input_ids[index, : len(row)] = row
        attention_mask[index, : len(row)] = 1
        labels[index, len(prompt): len(row)] = row[len(prompt):]
    batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
    if position_ids:
        batch["position_ids"] = torch.arange(width, device=input_ids.device).expand(len(rows), -1) * attention_mask
    return batch


class _OnlySharedRows(LogitsProcessor):
    """Never sample an embedding row beyond the vocabulary the teacher and student share (padded rows)."""

    def __init__(self, vocab_size: int):
        self.vocab_size = vocab_size

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        scores[:, self.vocab_size:] = float("-inf")
        return scores


def _unwrapped_for_generation(model, trainer: DistillationTrainer):
    """The bare model to call `generate` on: unwrapped from DDP (a PEFT model stays one: it generates), with its
    weights gathered under DeepSpeed ZeRO-3 (TRL's `unwrap_model_for_generation`). Elsewhere activation checkpointing
    is left as the trainer set it: sampling runs in eval mode, where it is inert, and TRL's helper would re-enable it
    with other settings (`every_n_layers` and `offload` lost)."""
    if DistributedBackend(trainer.accelerator).is_zero3:
        return unwrap_model_for_generation(model, trainer.accelerator,
                                           gradient_checkpointing_kwargs=trainer.args.gradient_checkpointing_kwargs)
    return nullcontext(trainer.accelerator.unwrap_model(model))


@contextmanager
def _eval_mode(model):
    """Sample from the policy itself (dropout off), then restore the mode the trainer set."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def _eos_token_ids(model, tokenizer) -> list[int]:
    """The model's own stop tokens (generation config, e.g. Llama 3's `<|eot_id|>` too), else the tokenizer's EOS."""
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if eos is None:
        eos = tokenizer.eos_token_id
    return [eos] if isinstance(eos, int) else list(eos or [])


class OnPolicyBatches:
    """Replaces the completions of training micro-batches by sampled ones: from the student with probability
    `args.lmbda`, otherwise from the teacher when `args.seq_kd`, otherwise kept (the dataset's).

    Args:
        args ([`DistillationConfig`]): `lmbda`, `seq_kd`, `max_new_tokens`, `generation_*` and `seed`.
        teacher ([`TeacherSource`]): must be able to score new sequences (not a cache); `seq_kd` needs a live model.

    Attributes:
        counts (`Counter`): micro-batches per completion source (`"dataset"`, `"student"`, `"teacher"`).
        generation_seconds, generation_cpu_seconds (`float`): wall and process CPU time spent in `generate`.
        rebuild_seconds, rebuild_cpu_seconds (`float`): the same for the whole of `rebuild` (draws, prompts, sampling
            and the rebuilt batches), so `rebuild - generation` is the cost of building the batches.
    """

    def __init__(self, args, teacher: TeacherSource):
        if not teacher.scores_new_sequences:
            raise OnPolicyError(
                f"`lmbda` (--lmbda) is {args.lmbda} and `seq_kd` (--seq_kd) is {args.seq_kd}, but the teacher is "
                f"{type(teacher).__name__}, which holds targets for the dataset's rows only and cannot score sampled "
                "completions. Use a live teacher (`teacher_model=`) or a served one (`teacher_model='http://...'`), "
                "or set lmbda=0 and seq_kd=False."
            )
        if args.seq_kd and teacher.model is None:
            raise OnPolicyError(
                f"`seq_kd` (--seq_kd) is True, but the teacher ({type(teacher).__name__}) is not a model in this "
                "process and cannot sample completions here. Use an in-process teacher (`teacher_model=`), or write "
                "teacher completions ahead of training (`hf-distill generate`) and set seq_kd=False."
            )
        self.lmbda, self.seq_kd, self.seed = args.lmbda, args.seq_kd, args.seed
        self.sampling = SamplingSettings.from_config(args)
        self.teacher = teacher
        self.counts: Counter[str] = Counter()
        self.generation_seconds = self.generation_cpu_seconds = 0.0
        self.rebuild_seconds = self.rebuild_cpu_seconds = 0.0

    @classmethod
    def from_config(cls, args, teacher: TeacherSource) -> OnPolicyBatches | None:
        """The sampler `args` asks for, or None when every batch trains on the dataset (`lmbda=0`, no `seq_kd`)."""
        if args.lmbda == 0 and not args.seq_kd:
            return None
        return cls(args, teacher)

    def setup(self, trainer: DistillationTrainer) -> None:
        """Checks that need the trainer: a set-up `generate` cannot run under, and data with prompts."""
        if trainer.is_fsdp_enabled:
            raise OnPolicyError(
                f"`lmbda` (--lmbda) is {self.lmbda} / `seq_kd` (--seq_kd) is {self.seq_kd} under FSDP: sampling "
                "needs each model's full weights on every process, which this trainer does not gather. Use DDP or "
                "DeepSpeed (ZeRO-3 weights are gathered for generation), or set lmbda=0 and seq_kd=False."
            )
        dataset = trainer.train_dataset
        if hasattr(dataset, "select") and hasattr(dataset, "__len__") and "labels" in (dataset.column_names or []):
            first_labels = dataset.select(range(min(len(dataset), 64)))["labels"]
            if any(labels and labels[0] != -100 for labels in first_labels):
                raise OnPolicyError(
                    f"`lmbda` (--lmbda) is {self.lmbda} / `seq_kd` (--seq_kd) is {self.seq_kd}, but the train "
                    "dataset's rows have no prompt (their first token is trained on), so there is nothing to sample "
                    "a completion from. Use prompt/completion data (or messages with `assistant_only_loss=True`), "
                    "or set lmbda=0 and seq_kd=False."
                )

    def rebuild(self, trainer: DistillationTrainer, batches: list[dict]) -> list[dict]:
        """`batches` (one optimizer step's micro-batches, on the device) with sampled completions where drawn."""
        step, rank = trainer.state.global_step, trainer.accelerator.process_index
        started, started_cpu = time.perf_counter(), time.process_time()
        rebuilt = []
        for index, batch in enumerate(batches):
            source = draw_completion_source(self.seed, step, index, lmbda=self.lmbda, seq_kd=self.seq_kd)
            self.counts[source] += 1
            if source == "dataset":
                rebuilt.append(batch)
                continue
            model = trainer.model_wrapped if source == "student" else self.teacher.model
            seed = random.Random(f"sample:{self.seed}:{step}:{index}:{rank}").getrandbits(63)
            rebuilt.append(self._sampled_batch(trainer, model, batch, seed))
        self.rebuild_seconds += time.perf_counter() - started
        self.rebuild_cpu_seconds += time.process_time() - started_cpu
        return rebuilt

    def _sampled_batch(self, trainer: DistillationTrainer, model, batch: dict, seed: int) -> dict:
        prompts = split_prompts(batch)
        started, started_cpu = time.perf_counter(), time.process_time()
        completions = self.sample(trainer, model, prompts, seed)
        self.generation_seconds += time.perf_counter() - started
        self.generation_cpu_seconds += time.process_time() - started_cpu
        return rebuild_batch(prompts, completions, pad_token_id=_pad_token_id(trainer.tokenizer),
                             position_ids="position_ids" in batch)

    def sample(self, trainer: DistillationTrainer, model, prompts: list[torch.Tensor], seed: int):
        """Completions `[(new_tokens,)]` of `model` for `prompts`, through the first end-of-sequence token."""
        pad_token_id = _pad_token_id(trainer.tokenizer)
        input_ids, attention_mask = _left_padded(prompts, pad_token_id)
        vocab_size = trainer.student_head.vocab_size
        devices = [input_ids.device] if input_ids.device.type == "cuda" else []
        with (
            _unwrapped_for_generation(model, trainer) as unwrapped,
            _eval_mode(unwrapped),
            torch.no_grad(),
            torch.random.fork_rng(devices=devices),
        ):
            torch.manual_seed(seed)
            eos_token_ids = _eos_token_ids(unwrapped, trainer.tokenizer)
            config = self.sampling.generation_config(eos_token_ids=eos_token_ids, pad_token_id=pad_token_id)
            sequences = unwrapped.generate(
                input_ids=input_ids, attention_mask=attention_mask, generation_config=config,
                logits_processor=LogitsProcessorList([_OnlySharedRows(vocab_size)]),
            )
        return _through_first_eos(sequences[:, input_ids.shape[1]:], eos_token_ids)


def _pad_token_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
