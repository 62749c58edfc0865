"""What each quality metric key is called in tables and plots, its `model-index` type, and which way is better."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .quality import TASK_METRICS

if TYPE_CHECKING:
    from .report import BenchmarkReport

__all__ = ["FORCED_METRICS", "higher_is_better", "metric_hub_type", "metric_label"]

# Teacher-forced quality metrics: key -> (label, model-index metric type, higher is better).
FORCED_METRICS = {
    "cross_entropy": ("Cross-entropy (nats/token)", "cross_entropy", False),
    "perplexity": ("Perplexity", "perplexity", False),
    "token_accuracy": ("Token accuracy", "accuracy", True),
}


def metric_label(key: str) -> str:
    """How tables and plots name a quality metric key."""
    if key in FORCED_METRICS:
        return FORCED_METRICS[key][0]
    if key in TASK_METRICS:
        return TASK_METRICS[key].label
    return f"{key} (lm-eval)"


def metric_hub_type(key: str) -> str:
    if key in FORCED_METRICS:
        return FORCED_METRICS[key][1]
    if key in TASK_METRICS:
        return TASK_METRICS[key].hub_type
    return key.split("/", 1)[-1]


def higher_is_better(key: str, report: BenchmarkReport | None = None) -> bool | None:
    if key in FORCED_METRICS:
        return FORCED_METRICS[key][2]
    if key in TASK_METRICS:
        return True
    task, _, metric = key.partition("/")
    info = report.lm_eval_tasks.get(task) if report is not None else None
    return info.higher_is_better.get(metric) if info is not None else None
