"""`benchmark()`: check every input, load the models, then measure quality, fidelity and cost of each."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from ..heads import OutputHead, unwrap_model
from ..vocabulary import shares_vocabulary
from .cost import describe_hardware, measure_cost
from .errors import BenchmarkInputError
from .examples import EvalExample, check_chat_template, dataset_format, encode_examples, read_examples
from .fidelity import TokenScores, aligned_heads, teacher_forced_scores
from .generation import pad_token_id_of
from .lm_eval_adapter import LmEvalRun, add_lm_eval_results, check_lm_eval
from .models import (
    ModelUnderTest,
    check_model_source,
    eval_mode,
    load_model_under_test,
    resolve_tokenizer,
)
from .quality import check_task_metrics, generate_predictions, score_predictions
from .report import (
    BenchmarkReport,
    BenchmarkSettings,
    DatasetInfo,
    FidelityMetrics,
    ModelReport,
    QualityMetrics,
)
from .trust import TrustConfig, run_trust

logger = logging.getLogger(__name__)

__all__ = ["benchmark"]

ModelSource = str | os.PathLike | nn.Module


def _is_count(value: Any, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _check_arguments(models: Mapping[str, Any], settings: Mapping[str, Any], device: Any) -> list[str]:
    """Every problem with the arguments, as messages (all are reported at once)."""
    problems = [p for field, value in models.items() for p in check_model_source(value, field)]
    if models["student"] is None:
        problems.append("`student` is None: pass the student as a Hub id, a local path or a model.")
    batch_sizes = settings["batch_sizes"]
    if isinstance(batch_sizes, int) or not batch_sizes or not all(_is_count(b, 1) for b in batch_sizes):
        problems.append(
            f"`batch_sizes` must be a non-empty list of integers >= 1, got {batch_sizes!r}; e.g. batch_sizes=(1, 8)."
        )
    for field, minimum in (("max_new_tokens", 1), ("num_latency_runs", 1), ("num_warmup_runs", 0),
                           ("eval_batch_size", 1)):
        if not _is_count(settings[field], minimum):
            problems.append(f"`{field}` must be an integer >= {minimum}, got {settings[field]!r}.")
    problems += check_task_metrics(settings["task_metrics"])
    if device is not None:
        try:
            torch.device(device)
        except (RuntimeError, TypeError):
            problems.append(f"`device` {device!r} is not a torch device: use e.g. 'cpu', 'cuda' or 'cuda:1'.")
    return problems


def _dataset_info(dataset: Any, examples: Sequence[EvalExample], recorded: Mapping[str, str | None]) -> DatasetInfo:
    """Dataset name/config/split as given, else as the `datasets.Dataset` records them."""
    info = getattr(dataset, "info", None)
    config = recorded.get("config") or getattr(info, "config_name", None)
    split = recorded.get("split") or getattr(dataset, "split", None)
    return DatasetInfo(
        name=recorded.get("name") or getattr(info, "dataset_name", None),
        config=None if config == "default" else config,
        split=None if split is None else str(split),
        revision=recorded.get("revision"),
        format=dataset_format(dataset, examples),
        num_examples=len(examples),
    )


def _teacher_side_tokenizer(model: ModelUnderTest) -> PreTrainedTokenizerBase | None:
    """The model's own tokenizer, or None when it borrowed the student's (none was given or found for it)."""
    return model.tokenizer if model.tokenizer_is_own else None


def _token_scores(models: Sequence[ModelUnderTest], examples: Sequence[EvalExample], batch_size: int):
    """Teacher-forced scores of every model. Models sharing the student's vocabulary (the training rule,
    [`hf_distill.vocabulary.check_shared_vocabulary`]) are run on the student's tokens in one pass, against the
    teacher when it is among them; any other model is scored on its own tokens."""
    student, others = models[0], models[1:]
    texts = [example.reference for example in examples]
    student_rows = OutputHead.from_model(student.model).num_rows
    group = [student, *(
        m for m in others if shares_vocabulary(
            student.tokenizer, student_rows=student_rows, teacher_rows=OutputHead.from_model(m.model).num_rows,
            teacher_tokenizer=_teacher_side_tokenizer(m), teacher_config=unwrap_model(m.model).config,
            texts=texts,
        )
    )]
    teacher = next((m for m in group if m.role == "teacher"), None)
    if teacher is None and any(m.role == "teacher" for m in others):
        logger.warning("The teacher's vocabulary differs from the student's: no fidelity (agreement, KL) computed.")
    alone = [m for m in others if all(m is not g for g in group)]
    runs = [(group, student.tokenizer, teacher)] + [([m], m.tokenizer, None) for m in alone]
    scores: dict[str, TokenScores] = {}
    for members, tokenizer, reference in runs:
        named = {m.role: m.model for m in members}
        heads = aligned_heads(named, tokenizer, teacher=reference and reference.role, texts=texts,
                              teacher_tokenizer=reference and _teacher_side_tokenizer(reference))
        scores |= teacher_forced_scores(
            named, heads, encode_examples(examples, tokenizer), teacher=reference and reference.role,
            pad_token_id=pad_token_id_of(tokenizer), batch_size=batch_size,
        )
    return scores


def _model_report(
    model: ModelUnderTest, scores: TokenScores, examples: Sequence[EvalExample], settings: BenchmarkSettings
) -> ModelReport:
    prompts = [e.prompt_ids for e in encode_examples(examples, model.tokenizer)]
    logger.info("Generating %d completions with the %s.", len(prompts), model.role)
    predictions = generate_predictions(
        model.model, model.tokenizer, prompts, max_new_tokens=settings.max_new_tokens,
        batch_size=settings.eval_batch_size,
    )
    logger.info("Timing the %s at batch sizes %s.", model.role, settings.batch_sizes)
    cost = measure_cost(
        model.model, model.tokenizer, prompts, source=model.source, batch_sizes=settings.batch_sizes,
        max_new_tokens=settings.max_new_tokens, num_runs=settings.num_latency_runs,
        num_warmup_runs=settings.num_warmup_runs,
    )
    quality = QualityMetrics(
        cross_entropy=scores.cross_entropy, perplexity=scores.perplexity, token_accuracy=scores.token_accuracy,
        num_tokens=scores.num_positions, num_examples=len(examples),
        task_metrics=score_predictions(predictions, [e.reference for e in examples], settings.task_metrics),
    )
    fidelity = None
    if scores.kl_sum is not None:
        count = max(scores.num_positions, 1)
        fidelity = FidelityMetrics(
            top1_agreement=scores.num_teacher_agree / count, forward_kl=scores.kl_sum / count,
            num_tokens=scores.num_positions,
        )
    return ModelReport(role=model.role, name=model.name, quality=quality, cost=cost, fidelity=fidelity)


def benchmark(
    student: ModelSource,
    teacher: ModelSource | None = None,
    dataset: Any = None,
    *,
    tokenizer: PreTrainedTokenizerBase | None = None,
    baseline: ModelSource | None = None,
    max_new_tokens: int = 64,
    batch_sizes: Sequence[int] = (1, 8),
    num_latency_runs: int = 5,
    task_metrics: Sequence[str] = ("exact_match", "token_f1", "rouge_l"),
    device: str | torch.device | None = None,
    teacher_tokenizer: PreTrainedTokenizerBase | None = None,
    baseline_tokenizer: PreTrainedTokenizerBase | None = None,
    model_names: Mapping[str, str] | None = None,
    dataset_name: str | None = None,
    dataset_config: str | None = None,
    dataset_split: str | None = None,
    dataset_revision: str | None = None,
    max_samples: int | None = None,
    eval_batch_size: int = 8,
    num_warmup_runs: int = 1,
    lm_eval_tasks: Sequence[str] | None = None,
    lm_eval_kwargs: Mapping[str, Any] | None = None,
    trust: TrustConfig | None = None,
) -> BenchmarkReport:
    """Benchmark a student against its teacher (and optionally a baseline) on held-out data: quality, fidelity to
    the teacher, and cost, every number measured here.

    Per model: cross-entropy, perplexity and token accuracy of the reference completions (teacher-forced), task
    metrics of its greedy completions; for the student and the baseline, top-1 agreement with the teacher and mean
    forward KL(p_teacher || p_model) on the same tokens; parameters, weights on disk, and at each batch size the time
    to first token, tokens/s and peak memory. With a baseline (e.g. the same student trained without distillation),
    `report.gap_recovered` holds `(student - baseline) / (teacher - baseline)` per quality metric.

    Args:
        student, teacher, baseline (`str`, `os.PathLike` or `nn.Module`): Hub ids, local folders (adapter folders
            too) or loaded models (PEFT and quantized ones too). `teacher` and `baseline` are optional.
        dataset (`datasets.Dataset` or `list[dict]`): held-out rows in TRL prompt/completion format (strings or
            messages) or messages format (the last message, the assistant's, is the reference completion).
            Conversational prompts are rendered with the chat template and `add_generation_prompt=True`.
        tokenizer (`PreTrainedTokenizerBase`, *optional*): the student's tokenizer; found beside the model when
            None. `teacher_tokenizer` / `baseline_tokenizer` likewise (the student's when none is found).
        max_new_tokens (`int`, *optional*, defaults to `64`): generated tokens per example (the latency runs
            generate exactly this many).
        batch_sizes (`Sequence[int]`, *optional*, defaults to `(1, 8)`): batch sizes timed.
        num_latency_runs (`int`, *optional*, defaults to `5`): timed runs per batch size, after `num_warmup_runs`
            untimed ones (default `1`).
        task_metrics (`Sequence[str]`, *optional*): names in `hf_distill.benchmark.quality.TASK_METRICS`
            (`exact_match`, `token_f1`, `rouge_l`, `chrf`, `bleu`).
        device (`str` or `torch.device`, *optional*): where to run; None keeps loaded models where they are and
            puts models loaded here on the first GPU, else the CPU.
        model_names (`dict[str, str]`, *optional*): names for the report, by role (`{"student": "me/my-student"}`).
        dataset_name, dataset_config, dataset_split, dataset_revision (`str`, *optional*): what the data is (its Hub
            id, ...), recorded for the card's eval results; taken from the `Dataset` when None.
        max_samples (`int`, *optional*): use only the first rows.
        eval_batch_size (`int`, *optional*, defaults to `8`): batch size of scoring and of generating completions.
        lm_eval_tasks (`Sequence[str]`, *optional*): lm-evaluation-harness tasks to run on every model; settings in
            `lm_eval_kwargs` (see [`~hf_distill.benchmark.lm_eval_adapter.LmEvalRun`]).
        trust ([`~hf_distill.benchmark.trust.TrustConfig`], *optional*): leakage, robustness, safety agreement and
            serving cost (docs/trust.md), each part opt-in; None (the default) runs none of them.

    Raises:
        [`BenchmarkInputError`]: a bad argument or dataset, before any model is loaded or run.

    Example:

    ```python
    >>> from datasets import load_dataset
    >>> from hf_distill.benchmark import benchmark
    >>> held_out = load_dataset("trl-lib/tldr", split="test[:200]")
    >>> report = benchmark(
    ...     "me/qwen-0.5b-distilled", "Qwen/Qwen2.5-7B-Instruct", held_out,
    ...     baseline="Qwen/Qwen2.5-0.5B-Instruct", dataset_name="trl-lib/tldr", dataset_split="test",
    ... )
    >>> print(report.to_markdown())
    ```
    """
    sources = {"student": student, "teacher": teacher, "baseline": baseline}
    settings = dict(
        max_new_tokens=max_new_tokens, batch_sizes=batch_sizes, num_latency_runs=num_latency_runs,
        num_warmup_runs=num_warmup_runs, task_metrics=task_metrics, eval_batch_size=eval_batch_size,
    )
    problems = _check_arguments(sources, settings, device) + (trust.problems() if trust is not None else [])
    if problems:
        raise BenchmarkInputError("Cannot benchmark:\n- " + "\n- ".join(problems))
    settings = BenchmarkSettings(**{**settings, "batch_sizes": list(batch_sizes), "task_metrics": list(task_metrics)})
    examples = read_examples(dataset, max_samples=max_samples)
    recorded = dict(name=dataset_name, config=dataset_config, split=dataset_split, revision=dataset_revision)
    dataset_info = _dataset_info(dataset, examples, recorded)
    lm_eval_run = LmEvalRun.from_kwargs(lm_eval_tasks, lm_eval_kwargs) if lm_eval_tasks is not None else None
    if lm_eval_run is not None:
        check_lm_eval(lm_eval_run)

    given = {"student": tokenizer, "teacher": teacher_tokenizer, "baseline": baseline_tokenizer}
    tokenizers = {"student": resolve_tokenizer("student", student, tokenizer)}
    for role in ("teacher", "baseline"):
        if sources[role] is not None:
            tokenizers[role] = resolve_tokenizer(role, sources[role], given[role], fallback=tokenizers["student"])
    for role, role_tokenizer in tokenizers.items():
        check_chat_template(examples, role_tokenizer, role)

    run_device = torch.device(device) if device is not None else None
    models = [load_model_under_test(role, sources[role], tok, device=run_device) for role, tok in tokenizers.items()]
    for model in models:
        model.name = (model_names or {}).get(model.role, model.name)
        model.tokenizer_is_own = model.role == "student" or given[model.role] is not None or (
            model.tokenizer is not tokenizers["student"])
    with eval_mode([m.model for m in models]):
        scores = _token_scores(models, examples, settings.eval_batch_size)
        # Generation and timing dominate the run: one progress step per model benchmarked.
        reports = {
            m.role: _model_report(m, scores[m.role], examples, settings)
            for m in tqdm(models, desc="benchmark", unit="model")
        }
        report = BenchmarkReport(
            student=reports["student"], teacher=reports.get("teacher"), baseline=reports.get("baseline"),
            dataset=dataset_info, settings=settings,
            hardware=describe_hardware([r.cost.device for r in reports.values()]),
        )
        report.update_gap_recovered()
        if lm_eval_run is not None:
            add_lm_eval_results(report, {m.role: (m.model, m.tokenizer) for m in models}, lm_eval_run)
        if trust is not None and trust.enabled:
            report.trust = run_trust(models, examples, {r: m.cost for r, m in reports.items()}, trust)
    return report
