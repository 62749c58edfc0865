"""Pictures of a benchmark and of a training run, drawn with matplotlib's Agg canvas (no display needed)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .errors import BenchmarkInputError
from .metrics import higher_is_better, metric_label

if TYPE_CHECKING:
    from .report import BenchmarkReport, ModelReport

__all__ = ["TRAINING_CURVES", "plot_report", "plot_training_curves"]

# Logged metric names drawn by `plot_training_curves`, per panel.
TRAINING_CURVES = {"Loss (nats/token)": ("kd_loss", "ce_loss"), "Teacher top-1 agreement": ("teacher_agreement",)}

_COLOURS = {"student": "tab:blue", "teacher": "tab:orange", "baseline": "tab:gray"}


def _figure(num_rows: int, num_cols: int, figsize: tuple[float, float]):
    """A figure drawn by the Agg canvas directly, never through pyplot: no display, no global backend switch, nothing
    left open in a notebook."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(num_rows, num_cols, squeeze=False)


def _ms_per_token(model: ModelReport, batch_size: int) -> float | None:
    result = next((r for r in model.cost.latency if r.batch_size == batch_size), None)
    if result is None or result.tokens_per_second.median <= 0:
        return None
    return 1000.0 * result.batch_size / result.tokens_per_second.median


def _scatter(ax, report: BenchmarkReport, key: str, x_of, xlabel: str) -> None:
    for model in report.models:
        x, y = x_of(model), model.quality.values().get(key)
        if x is None or y is None:
            continue
        ax.scatter([x], [y], s=60, color=_COLOURS.get(model.role, "tab:green"), zorder=3)
        ax.annotate(model.role, (x, y), textcoords="offset points", xytext=(6, 4), fontsize=8)
    better = higher_is_better(key, report)
    ax.set_ylabel(metric_label(key) + ("" if better is None else (" ↑" if better else " ↓")), fontsize=8)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.grid(alpha=0.3)
    ax.tick_params(labelsize=7)


def plot_report(report: BenchmarkReport, path: str | os.PathLike) -> str:
    """One row per quality metric: against latency (ms per generated token at the smallest batch size) and against
    size (parameters), one point per model. Returns `path` as a string."""
    keys = list(dict.fromkeys(k for m in report.models for k in m.quality.values()))
    batch_size = min(report.settings.batch_sizes)
    fig, axes = _figure(len(keys), 2, (9, 2.6 * len(keys)))
    for row, key in enumerate(keys):
        _scatter(axes[row][0], report, key, lambda m: _ms_per_token(m, batch_size),
                 f"Latency: ms per token per sequence, batch {batch_size} ↓")
        _scatter(axes[row][1], report, key, lambda m: m.cost.num_parameters, "Parameters")
    fig.suptitle(f"Quality vs latency and size ({report.dataset.name or 'held-out set'})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=110)
    return os.fspath(path)


def _series(log_history: Sequence[Mapping[str, Any]], name: str) -> list[tuple[float, float]]:
    return [(entry["step"], float(entry[name])) for entry in log_history if name in entry and "step" in entry]


def plot_training_curves(log_history: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> str:
    """Training (and evaluation, `eval_`-prefixed) curves of `kd_loss`, `ce_loss` and `teacher_agreement` against
    the step, from a `Trainer`'s `state.log_history`. Returns `path` as a string.

    Raises:
        `ValueError`: the history logs none of those metrics (e.g. before any logging step).
    """
    names = [n for panel in TRAINING_CURVES.values() for n in panel]
    if not any(_series(log_history, prefix + n) for n in names for prefix in ("", "eval_")):
        raise BenchmarkInputError(
            f"The log history has none of {names}: train for at least `logging_steps` steps (or evaluate) with a "
            "`DistillationTrainer` before plotting its curves."
        )
    fig, axes = _figure(1, len(TRAINING_CURVES), (5 * len(TRAINING_CURVES), 3.4))
    for ax, (title, panel) in zip(axes[0], TRAINING_CURVES.items(), strict=True):
        for name in panel:
            for prefix, style in (("", "-"), ("eval_", "o--")):
                points = _series(log_history, prefix + name)
                if points:
                    steps, values = zip(*points, strict=True)
                    ax.plot(steps, values, style, label=prefix + name, markersize=4)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=110)
    return os.fspath(path)
