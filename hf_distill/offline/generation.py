"""Sequence-level distillation data: the teacher writes completions for prompts, and any student (whatever its
tokenizer) is trained on them with SFT, or with a same-tokenizer teacher's logits on top.

Sampling is seeded per (row, sample): each sequence draws from its own `torch.Generator` seeded from
`(seed, row index, sample index)`, so a row's completion does not depend on which other rows share its batch, on
resuming, or on how many processes split the work.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from dataclasses import asdict, dataclass
from functools import partial

import torch
from datasets import Dataset
from torch import nn
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList
from trl.data_utils import _tokenize, is_conversational

from ..errors import HfDistillError
from ..fingerprints import TeacherProvenance, path_provenance, teacher_provenance
from ..privacy import scan_generated
from .card import write_dataset_card
from .shards import Shard, check_shard_size, first_rows, run_sharded
from .teacher import load_offline_teacher

__all__ = ["GenerationSettings", "GenerationSettingsError", "generate_completions"]

_BACKENDS = ("transformers", "vllm")


class GenerationSettingsError(HfDistillError, ValueError):
    """An argument of `generate_completions` is invalid; the message names it, its value and the fix."""


@dataclass(frozen=True)
class GenerationSettings:
    """How completions are sampled; stored in every row (`generation_settings`, JSON) and in the dataset card."""

    max_new_tokens: int = 256
    temperature: float = 0.7
    top_p: float = 1.0
    num_samples: int = 1
    seed: int = 0
    backend: str = "transformers"

    def problems(self) -> list[str]:
        problems = []
        if self.num_samples < 1:
            problems.append(f"`num_samples` is {self.num_samples}; it must be >= 1 (completions per prompt).")
        if self.max_new_tokens < 1:
            problems.append(f"`max_new_tokens` is {self.max_new_tokens}; it must be >= 1.")
        if self.temperature < 0:
            problems.append(f"`temperature` is {self.temperature}; it must be >= 0 (0 = greedy decoding).")
        if not 0 < self.top_p <= 1:
            problems.append(f"`top_p` is {self.top_p}; it must be in (0, 1] (1 = no nucleus filtering).")
        if self.backend not in _BACKENDS:
            problems.append(f"`backend` is {self.backend!r}; choose one of {', '.join(_BACKENDS)}.")
        return problems

    def sequence_seed(self, row: int, sample: int) -> int:
        """The seed of sample `sample` of input row `row`: independent of batching and of the process layout."""
        digest = hashlib.sha256(f"{self.seed}/{row}/{sample}".encode()).digest()
        return int.from_bytes(digest[:8], "little") >> 1


def generate_completions(
    teacher: str | os.PathLike | nn.Module,
    dataset: Dataset,
    *,
    tokenizer=None,
    output_dir: str | os.PathLike,
    max_new_tokens: int = 256,
    temperature: float = 0.7,
    top_p: float = 1.0,
    num_samples: int = 1,
    batch_size: int = 8,
    backend: str = "transformers",
    seed: int = 0,
    shard_size: int = 1000,
    model_kwargs: dict | None = None,
    max_rows: int | None = None,
) -> Dataset:
    """The teacher's completions for every prompt of `dataset`: one row per (prompt, sample).

    Args:
        teacher (`str`, `os.PathLike` or `nn.Module`): Hub id, local path or model (`backend="vllm"` needs an id or
            path).
        dataset (`Dataset`): prompts in TRL format: a `prompt` column (text or conversational), or `messages` (the
            conversation up to its last assistant turn is the prompt; that turn is regenerated).
        tokenizer (*optional*): the teacher's tokenizer; loaded from the teacher's folder or id when `None`.
        output_dir (`str`): where the dataset, its card and (while running) the shards go.
        max_new_tokens (`int`, *optional*, defaults to `256`): completion length limit.
        temperature (`float`, *optional*, defaults to `0.7`): sampling temperature; 0 decodes greedily.
        top_p (`float`, *optional*, defaults to `1.0`): nucleus sampling threshold.
        num_samples (`int`, *optional*, defaults to `1`): completions per prompt.
        batch_size (`int`, *optional*, defaults to `8`): sequences per `generate` call (left-padded).
        backend (`str`, *optional*, defaults to `"transformers"`): `"transformers"` or `"vllm"` (needs
            `pip install vllm`).
        seed (`int`, *optional*, defaults to `0`): the run's seed; each sequence's seed derives from it.
        shard_size (`int`, *optional*, defaults to `1000`): input rows per shard (the unit of resuming and of work
            split across processes).
        model_kwargs (`dict`, *optional*): `from_pretrained` keyword arguments when `teacher` is an id or path.
        max_rows (`int`, *optional*): use only the first `max_rows` rows of `dataset` (a quick look).

    Returns:
        `Dataset` in prompt/completion format (input with `prompt`) or messages format (input with `messages`), with
        the input's other columns and provenance columns `teacher`, `teacher_revision`, `generation_settings` (JSON),
        `source_row`, `sample_index`; also saved in `output_dir` with a `README.md` card.

    Example:

    ```python
    >>> from hf_distill.data import generate_completions
    >>> generated = generate_completions("Qwen/Qwen2.5-7B-Instruct", prompts, output_dir="qwen7b-completions",
    ...                                  num_samples=2, max_new_tokens=512)
    >>> trl.SFTTrainer(model="HuggingFaceTB/SmolLM2-360M", train_dataset=generated).train()
    ```
    """
    dataset = first_rows(dataset, max_rows)
    check_shard_size(shard_size)
    settings = GenerationSettings(max_new_tokens, temperature, top_p, num_samples, seed, backend)
    _check_arguments(teacher, dataset, settings, batch_size)
    if backend == "vllm":
        generator, provenance = _VllmGenerator.create(teacher, tokenizer, settings, model_kwargs), path_provenance(
            teacher
        )
    else:
        model, tokenizer = load_offline_teacher(teacher, tokenizer, model_kwargs=model_kwargs)
        generator, provenance = _TransformersGenerator(model, tokenizer, settings), teacher_provenance(model, teacher)
    run_settings = {"teacher": asdict(provenance), "generation": asdict(settings), "batch_size": batch_size}
    work = partial(_generate_shard, generator=generator, provenance=provenance, settings=settings,
                   batch_size=batch_size)
    finalize = partial(_write_card, output_dir=output_dir, run_settings=run_settings)
    return run_sharded(dataset, output_dir, kind="teacher-completions", settings=run_settings,
                       shard_size=shard_size, work=work, finalize=finalize)


def _check_arguments(teacher, dataset, settings: GenerationSettings, batch_size: int) -> None:
    """Every problem at once, before any model is loaded."""
    problems = settings.problems()
    if batch_size < 1:
        problems.append(f"`batch_size` is {batch_size}; it must be >= 1.")
    columns = getattr(dataset, "column_names", None) or []
    if "prompt" not in columns and "messages" not in columns:
        problems.append(
            f"the dataset has no prompts (columns: {columns}): it needs a `prompt` column (text or a list of "
            "messages) or a `messages` column. A `text` dataset has nothing to complete: split it into prompt and "
            "completion first."
        )
    if settings.backend == "vllm":
        if importlib.util.find_spec("vllm") is None:
            problems.append('`backend="vllm"` needs vLLM, which is not installed: `pip install vllm`, '
                            'or use backend="transformers".')
        if isinstance(teacher, nn.Module):
            problems.append('`backend="vllm"` loads the teacher itself: pass its Hub id or local path, not a model.')
    if problems:
        raise GenerationSettingsError(
            "Invalid generate_completions arguments:\n" + "\n".join(f"- {p}" for p in problems)
        )


def _prompt_of(row: dict) -> list | str:
    """The row's prompt: its `prompt`, or its conversation without the final assistant turn."""
    if "prompt" in row:
        return row["prompt"]
    messages = list(row["messages"])
    while messages and messages[-1]["role"] == "assistant":
        messages.pop()
    if not messages:
        raise GenerationSettingsError("A `messages` row has only assistant turns: there is no prompt to complete.")
    return messages


def _generate_shard(rows: Dataset, shard: Shard, *, generator, provenance: TeacherProvenance,
                    settings: GenerationSettings, batch_size: int) -> Dataset:
    requests = [
        (shard.start + offset, sample, _prompt_of(row))
        for offset, row in enumerate(rows)
        for sample in range(settings.num_samples)
    ]
    texts = []
    for start in range(0, len(requests), batch_size):
        batch = requests[start : start + batch_size]
        seeds = [settings.sequence_seed(row, sample) for row, sample, _ in batch]
        texts.extend(generator([prompt for _, _, prompt in batch], seeds))
    output = []
    for (row_index, sample, prompt), text in zip(requests, texts, strict=True):
        source = rows[row_index - shard.start]
        record = {k: v for k, v in source.items() if k not in ("prompt", "completion", "messages")}
        if "prompt" in source:
            record["prompt"] = prompt
            record["completion"] = [{"role": "assistant", "content": text}] if is_conversational(source) else text
        else:
            record["messages"] = prompt + [{"role": "assistant", "content": text}]
        record.update(teacher=provenance.name, teacher_revision=provenance.revision, source_row=row_index,
                      sample_index=sample, generation_settings=json.dumps(asdict(settings), sort_keys=True))
        output.append(record)
    return Dataset.from_list(output)


class _PerSequenceSampler(LogitsProcessor):
    """Samples each sequence's next token with its own generator and leaves only that token finite, so `generate`'s
    greedy step picks it: sampling independent of the batch a sequence is in."""

    def __init__(self, seeds: list[int], temperature: float, top_p: float):
        self.generators = [torch.Generator().manual_seed(seed) for seed in seeds]
        self.temperature, self.top_p = temperature, top_p

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        probs = torch.softmax(scores.float() / self.temperature, dim=-1)
        if self.top_p < 1.0:
            sorted_probs, order = probs.sort(dim=-1, descending=True)
            # Drop a token when the tokens more likely than it already hold top_p of the mass (keeps at least one).
            outside = (sorted_probs.cumsum(-1) - sorted_probs) >= self.top_p
            probs = probs.scatter(-1, order, sorted_probs.masked_fill(outside, 0.0))
        probs = probs.cpu()
        chosen = torch.stack([torch.multinomial(probs[i], 1, generator=g) for i, g in enumerate(self.generators)])
        result = torch.full_like(scores, float("-inf"))
        return result.scatter_(-1, chosen.to(scores.device), 0.0)


class _TransformersGenerator:
    """Left-padded batched `model.generate` with a fixed, explicit generation config."""

    def __init__(self, model: nn.Module, tokenizer, settings: GenerationSettings):
        self.model, self.tokenizer, self.settings = model, tokenizer, settings
        eos = model.generation_config.eos_token_id if model.generation_config.eos_token_id is not None else (
            tokenizer.eos_token_id)
        self.eos_ids = set(eos if isinstance(eos, list) else [eos]) - {None}
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else next(iter(self.eos_ids), 0)
        # Only what we ask for: the teacher's own sampling defaults would make runs depend on its config.
        self.config = GenerationConfig(max_new_tokens=settings.max_new_tokens, do_sample=False, num_beams=1,
                                       eos_token_id=sorted(self.eos_ids) or None, pad_token_id=pad)
        self.device = next(model.parameters()).device

    @torch.no_grad()
    def __call__(self, prompts: list, seeds: list[int]) -> list[str]:
        encoded = [_tokenize(self.tokenizer, p, **({"add_generation_prompt": True} if isinstance(p, list) else {}))[
            "input_ids"] for p in prompts]
        length = max(len(ids) for ids in encoded)
        input_ids = torch.full((len(encoded), length), self.config.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        for row, ids in enumerate(encoded):  # left padding: every prompt ends where generation starts
            input_ids[row, length - len(ids) :] = torch.tensor(ids)
            attention_mask[row, length - len(ids) :] = 1
        processors = LogitsProcessorList()
        if self.settings.temperature > 0:
            processors.append(_PerSequenceSampler(seeds, self.settings.temperature, self.settings.top_p))
        output = self.model.generate(input_ids=input_ids.to(self.device), attention_mask=attention_mask.to(
            self.device), generation_config=self.config, logits_processor=processors)
        return [self._decode(row[length:].tolist()) for row in output]

    def _decode(self, tokens: list[int]) -> str:
        end = next((i for i, token in enumerate(tokens) if token in self.eos_ids), len(tokens))
        return self.tokenizer.decode(tokens[:end], skip_special_tokens=True)


class _VllmGenerator:
    """vLLM offline inference with one seeded `SamplingParams` per sequence."""

    def __init__(self, llm, settings: GenerationSettings):
        self.llm, self.settings = llm, settings

    @classmethod
    def create(cls, teacher, tokenizer, settings: GenerationSettings, model_kwargs: dict | None):
        from vllm import LLM

        kwargs = dict(model_kwargs or {})
        if tokenizer is not None:
            kwargs.setdefault("tokenizer", getattr(tokenizer, "name_or_path", None) or None)
        return cls(LLM(model=str(teacher), seed=settings.seed, **kwargs), settings)

    def __call__(self, prompts: list, seeds: list[int]) -> list[str]:
        from vllm import SamplingParams

        params = [
            SamplingParams(temperature=self.settings.temperature, top_p=self.settings.top_p,
                           max_tokens=self.settings.max_new_tokens, seed=seed)
            for seed in seeds
        ]
        if all(isinstance(p, list) for p in prompts):
            outputs = self.llm.chat(prompts, sampling_params=params, use_tqdm=False)
        else:
            outputs = self.llm.generate(prompts, sampling_params=params, use_tqdm=False)
        return [output.outputs[0].text for output in outputs]


def _write_card(dataset: Dataset, *, output_dir, run_settings: dict) -> Dataset:
    generation, teacher = run_settings["generation"], run_settings["teacher"]
    fmt = "messages" if "messages" in dataset.column_names else "prompt/completion"
    privacy = scan_generated(dataset)  # a teacher can write e-mail addresses or keys it memorised
    privacy.warn_if_found("the generated completions")
    write_dataset_card(
        output_dir,
        title=f"Completions generated by {teacher['name']}",
        summary=(
            f"{len(dataset)} {fmt} rows: {generation['num_samples']} completion(s) per prompt sampled from the "
            f"teacher (temperature {generation['temperature']}, top-p {generation['top_p']}, at most "
            f"{generation['max_new_tokens']} new tokens, {generation['backend']} backend, seed {generation['seed']}). "
            "Train any student on it with SFT (sequence-level distillation), whatever its tokenizer."
        ),
        function="hf_distill.data.generate_completions",
        settings={"teacher": teacher["name"], "teacher_revision": teacher["revision"], **generation,
                  "num_rows": len(dataset), **({"teacher_gguf": teacher["gguf"]} if teacher.get("gguf") else {})},
        usage=(
            "import datasets\nfrom trl import SFTTrainer\n\n"
            f"dataset = datasets.load_from_disk({str(output_dir)!r})\n"
            "SFTTrainer(model=student, train_dataset=dataset).train()"
        ),
        tags=["synthetic", "sequence-level-distillation"],
        privacy={"generated completions": privacy},
    )
    return dataset
