"""What the model card shows of a [`BenchmarkReport`]: the Markdown table and the `model-index` eval results."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from huggingface_hub import EvalResult

from .errors import BenchmarkInputError
from .metrics import higher_is_better, metric_hub_type, metric_label

if TYPE_CHECKING:
    from .report import BenchmarkReport, LatencyResult, ModelReport

__all__ = ["eval_results", "report_markdown"]


def _number(value: float | int | None) -> str:
    if value is None:
        return "–"
    if isinstance(value, int):
        return f"{value:,}"
    if not math.isfinite(value):
        return str(value)
    return f"{value:.4g}"


def _bytes(value: int | None) -> str:
    if value is None:
        return "–"
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.3g} {unit}" if unit != "B" else f"{value} B"
        value /= 1000
    return "–"


def _spread(median: float, low: float, high: float, scale: float = 1.0) -> str:
    return f"{median * scale:.4g} ({low * scale:.3g}–{high * scale:.3g})"


def _latency(model: ModelReport, batch_size: int) -> LatencyResult | None:
    return next((r for r in model.cost.latency if r.batch_size == batch_size), None)


def _quality_rows(report: BenchmarkReport) -> list[tuple[str, list[str], str | None]]:
    rows = []
    keys = list(dict.fromkeys(k for m in report.models for k in m.quality.values()))
    for key in keys:
        better = higher_is_better(key, report)
        arrow = "" if better is None else (" ↑" if better else " ↓")
        cells = [_number(m.quality.values().get(key)) for m in report.models]
        gap = _number(report.gap_recovered.get(key)) if report.baseline is not None else None
        rows.append((metric_label(key) + arrow, cells, gap))
    return rows


def _fidelity_rows(report: BenchmarkReport) -> list[tuple[str, list[str], None]]:
    fidelity = [m.fidelity for m in report.models]
    if all(f is None for f in fidelity):
        return []
    return [
        ("Top-1 agreement with teacher ↑", [_number(f.top1_agreement) if f else "–" for f in fidelity], None),
        ("Forward KL to teacher (nats/token) ↓", [_number(f.forward_kl) if f else "–" for f in fidelity], None),
    ]


def _cost_rows(report: BenchmarkReport) -> list[tuple[str, list[str], None]]:
    models = report.models
    rows = [
        ("Parameters", [_number(m.cost.num_parameters) for m in models], None),
        ("Weights on disk", [_bytes(m.cost.disk_bytes) for m in models], None),
    ]
    for size in report.settings.batch_sizes:
        results = [_latency(m, size) for m in models]
        rows += [
            (f"Time to first token, batch {size} (ms) ↓",
             [_spread(r.time_to_first_token_s.median, r.time_to_first_token_s.minimum,
                      r.time_to_first_token_s.maximum, 1000.0) if r else "–" for r in results], None),
            (f"Tokens/s, batch {size} ↑",
             [_spread(r.tokens_per_second.median, r.tokens_per_second.minimum, r.tokens_per_second.maximum)
              if r else "–" for r in results], None),
            (f"Peak memory, batch {size}", [_bytes(r.peak_memory_bytes) if r else "–" for r in results], None),
        ]
    return rows


def _footer(report: BenchmarkReport) -> str:
    data, settings = report.dataset, report.settings
    where = f"`{data.name}`" if data.name else "a local held-out set"
    for part, value in (("config", data.config), ("split", data.split)):
        where += f", {part} `{value}`" if value else ""
    names = "; ".join(f"{m.role}: `{m.name}`" for m in report.models)
    lines = [
        f"Models: {names}.",
        f"Quality and fidelity on {data.num_examples} examples of {where}: teacher-forced on the reference "
        f"completions, and {settings.decoding} decoding of up to {settings.max_new_tokens} new tokens for the task "
        "metrics. Latency: median (min–max) of "
        f"{settings.num_latency_runs} timed runs after {settings.num_warmup_runs} warm-up, "
        f"{settings.max_new_tokens} new tokens per row, on {report.hardware.describe()}.",
    ]
    if report.baseline is not None:
        lines.append("Teacher gap recovered = (student − baseline) / (teacher − baseline): 1 matches the teacher.")
    return "\n".join(lines)


def report_markdown(report: BenchmarkReport) -> str:
    """A Markdown table, one column per model (and the teacher gap recovered with a baseline), and its footer."""
    with_gap = report.baseline is not None
    header = ["Metric", *(m.role for m in report.models)] + (["Teacher gap recovered"] if with_gap else [])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, cells, gap in _quality_rows(report) + _fidelity_rows(report) + _cost_rows(report):
        row = [label, *cells] + ([gap or ""] if with_gap else [])
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n\n" + _footer(report) + "\n"


def _dataset_fields(report: BenchmarkReport) -> dict:
    data = report.dataset
    return dict(
        dataset_type=data.name or "custom",
        dataset_name=data.name or "held-out set",
        dataset_config=data.config,
        dataset_split=data.split,
        dataset_revision=data.revision,
    )


def eval_results(report: BenchmarkReport, role: str = "student") -> list[EvalResult]:
    """`huggingface_hub.EvalResult`s of one model's quality (and fidelity) numbers, plus its lm-eval scores."""
    model = next((m for m in report.models if m.role == role), None)
    if model is None:
        raise BenchmarkInputError(f"The report has no {role!r} model; it has {[m.role for m in report.models]}.")
    results = []
    for key, value in model.quality.values().items():
        if not math.isfinite(value):
            continue  # the Hub's model-index takes numbers only
        if "/" in key:
            task, _, metric = key.partition("/")
            info = report.lm_eval_tasks.get(task)
            results.append(EvalResult(
                task_type="text-generation", dataset_type=(info and info.dataset_path) or task, dataset_name=task,
                dataset_config=info and info.dataset_name, dataset_split=info and info.split,
                dataset_args={"num_fewshot": info.num_fewshot} if info and info.num_fewshot is not None else None,
                metric_type=metric_hub_type(key), metric_value=float(value), metric_name=f"{metric} (lm-eval {task})",
            ))
            continue
        results.append(EvalResult(
            task_type="text-generation", **_dataset_fields(report), metric_type=metric_hub_type(key),
            metric_value=float(value), metric_name=metric_label(key),
        ))
    if model.fidelity is not None:
        for metric_type, name, value in (
            ("teacher_top1_agreement", "Top-1 agreement with teacher", model.fidelity.top1_agreement),
            ("kl_divergence", "Forward KL to teacher (nats/token)", model.fidelity.forward_kl),
        ):
            results.append(EvalResult(
                task_type="text-generation", **_dataset_fields(report), metric_type=metric_type,
                metric_value=float(value), metric_name=name,
            ))
    return results
