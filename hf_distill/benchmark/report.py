"""`BenchmarkReport`: every number of a student-vs-teacher benchmark, as dataclasses that round-trip through JSON
and render as the model card's table, its `model-index` eval results, and a plot."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import statistics
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .metrics import FORCED_METRICS
from .plots import plot_report
from .render import eval_results, report_markdown
from .trust.report import TrustReport

__all__ = [
    "BenchmarkReport", "BenchmarkSettings", "CostMetrics", "DatasetInfo", "FidelityMetrics", "Hardware",
    "LatencyResult", "LmEvalTask", "Measurement", "ModelReport", "QualityMetrics", "teacher_gap_recovered",
]

def teacher_gap_recovered(student: float, teacher: float, baseline: float) -> float | None:
    """`(student - baseline) / (teacher - baseline)`: 1 when the student matches the teacher, 0 when it does no better
    than the baseline; the same formula holds for lower-is-better metrics. None when teacher and baseline score the
    same (no gap to recover) or a value is not finite."""
    if not all(math.isfinite(v) for v in (student, teacher, baseline)):
        return None
    gap = teacher - baseline
    if abs(gap) <= 1e-9 * max(1.0, abs(teacher), abs(baseline)):
        return None
    return (student - baseline) / gap


@dataclass
class Measurement:
    """A quantity timed over repeated runs: median and spread."""

    median: float
    minimum: float
    maximum: float
    stdev: float
    num_runs: int

    @classmethod
    def from_samples(cls, samples: Sequence[float]) -> Measurement:
        values = [float(v) for v in samples]
        return cls(
            median=statistics.median(values), minimum=min(values), maximum=max(values),
            stdev=statistics.stdev(values) if len(values) > 1 else 0.0, num_runs=len(values),
        )


@dataclass
class LatencyResult:
    """Greedy generation of `num_new_tokens` tokens per row at one batch size.

    Args:
        time_to_first_token_s ([`Measurement`]): seconds from the call to the first token (prefill included).
        tokens_per_second ([`Measurement`]): generated tokens of the whole batch per second of the call.
        peak_memory_bytes (`int`, *optional*): weights and buffers plus the highest memory increase while
            generating; None where nothing could measure it.
        peak_memory_source (`str`, *optional*): what measured the increase (`"cuda allocator"`, `"process peak RSS"`).
    """

    batch_size: int
    num_new_tokens: int
    time_to_first_token_s: Measurement
    tokens_per_second: Measurement
    peak_memory_bytes: int | None = None
    peak_memory_source: str | None = None


@dataclass
class QualityMetrics:
    """Quality on the held-out set.

    Args:
        cross_entropy (`float`): mean nats per reference completion token, teacher-forced.
        perplexity (`float`): `exp(cross_entropy)`.
        token_accuracy (`float`): share of completion tokens where the model's top-1 is the reference token.
        num_tokens (`int`): completion tokens scored (in this model's tokenization).
        num_examples (`int`): examples generated and scored.
        task_metrics (`dict[str, float]`): metrics of the greedy completions against the references.
        lm_eval (`dict[str, float]`): lm-evaluation-harness scores, `"task/metric"` -> value.
    """

    cross_entropy: float
    perplexity: float
    token_accuracy: float
    num_tokens: int
    num_examples: int
    task_metrics: dict[str, float] = field(default_factory=dict)
    lm_eval: dict[str, float] = field(default_factory=dict)

    def values(self) -> dict[str, float]:
        """Every quality metric by key, the teacher-forced ones first."""
        return {key: getattr(self, key) for key in FORCED_METRICS} | self.task_metrics | self.lm_eval


@dataclass
class FidelityMetrics:
    """How closely a model follows the teacher on the held-out completions (teacher-forced, same tokens).

    Args:
        top1_agreement (`float`): share of completion tokens where its top-1 token is the teacher's.
        forward_kl (`float`): mean KL(p_teacher || p_model) in nats per token.
        num_tokens (`int`): completion tokens compared.
    """

    top1_agreement: float
    forward_kl: float
    num_tokens: int


@dataclass
class CostMetrics:
    """What running the model costs.

    Args:
        num_parameters (`int`): all parameters (adapter ones included).
        disk_bytes (`int`): bytes of the weight files needed to run it (adapter plus base for PEFT models).
        disk_source (`str`): where they were measured (`"folder"`, `"hub cache"`, `"saved"`, ...).
        memory_footprint_bytes (`int`): parameters and buffers in memory.
        dtype (`str`), device (`str`): how it ran.
        latency (`list[LatencyResult]`): one entry per batch size.
    """

    num_parameters: int
    disk_bytes: int
    disk_source: str
    memory_footprint_bytes: int
    dtype: str
    device: str
    latency: list[LatencyResult] = field(default_factory=list)


@dataclass
class ModelReport:
    """Everything measured for one model; `fidelity` is None for the teacher and for models whose vocabulary
    differs from the teacher's."""

    role: str
    name: str
    quality: QualityMetrics
    cost: CostMetrics
    fidelity: FidelityMetrics | None = None


@dataclass
class DatasetInfo:
    """The held-out data: a Hub id (or None for local data), config, split, revision, TRL format, rows used."""

    name: str | None
    config: str | None
    split: str | None
    revision: str | None
    format: str
    num_examples: int


@dataclass
class BenchmarkSettings:
    """The arguments the numbers depend on."""

    max_new_tokens: int
    batch_sizes: list[int]
    num_latency_runs: int
    num_warmup_runs: int
    task_metrics: list[str]
    eval_batch_size: int
    decoding: str = "greedy"


@dataclass
class LmEvalTask:
    """An lm-evaluation-harness task that was run: its dataset and few-shot setting, for the eval results."""

    task: str
    dataset_path: str | None = None
    dataset_name: str | None = None
    split: str | None = None
    num_fewshot: int | None = None
    num_samples: int | None = None
    higher_is_better: dict[str, bool] = field(default_factory=dict)


@dataclass
class Hardware:
    """The machine the numbers were measured on."""

    cpu: str
    num_cpu_cores: int
    num_threads: int
    memory_bytes: int | None
    accelerators: list[str]
    platform: str
    versions: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        parts = [*self.accelerators, f"{self.cpu} ({self.num_cpu_cores} cores, {self.num_threads} torch threads)"]
        if self.memory_bytes:
            parts.append(f"{self.memory_bytes / 2**30:.0f} GiB RAM")
        return ", ".join(parts)


@dataclass
class BenchmarkReport:
    """A student benchmarked against its teacher (and optionally a baseline) on held-out data.

    Args:
        student, teacher, baseline ([`ModelReport`]): per-model numbers; `teacher` and `baseline` are optional.
        dataset ([`DatasetInfo`]), settings ([`BenchmarkSettings`]), hardware ([`Hardware`]): how they were measured.
        gap_recovered (`dict[str, float | None]`): per quality metric, `(student - baseline) / (teacher - baseline)`
            (1 = the student reaches the teacher); None where teacher and baseline tie. Empty without a baseline.
        lm_eval_tasks (`dict[str, LmEvalTask]`): lm-evaluation-harness tasks that were run.
        trust ([`TrustReport`], *optional*): leakage, robustness, safety agreement and serving cost, when asked for.

    Example:

    ```python
    >>> from hf_distill.benchmark import BenchmarkReport, benchmark
    >>> report = benchmark("my-student", "Qwen/Qwen2.5-1.5B-Instruct", held_out, dataset_name="me/held-out")
    >>> report.to_json("benchmark.json")
    >>> print(report.to_markdown())
    >>> report.plot("benchmark.png")
    >>> BenchmarkReport.from_json("benchmark.json").student.quality.perplexity
    ```
    """

    student: ModelReport
    dataset: DatasetInfo
    settings: BenchmarkSettings
    hardware: Hardware
    teacher: ModelReport | None = None
    baseline: ModelReport | None = None
    gap_recovered: dict[str, float | None] = field(default_factory=dict)
    lm_eval_tasks: dict[str, LmEvalTask] = field(default_factory=dict)
    trust: TrustReport | None = None

    @property
    def models(self) -> list[ModelReport]:
        """The models present, student first."""
        return [m for m in (self.student, self.teacher, self.baseline) if m is not None]

    def update_gap_recovered(self) -> None:
        """Recompute `gap_recovered` for every quality metric the three models share (no-op without a baseline)."""
        if self.teacher is None or self.baseline is None:
            self.gap_recovered = {}
            return
        student, teacher, baseline = (m.quality.values() for m in (self.student, self.teacher, self.baseline))
        self.gap_recovered = {
            key: teacher_gap_recovered(student[key], teacher[key], baseline[key])
            for key in student if key in teacher and key in baseline
        }

    # -- JSON ---------------------------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self, path: str | os.PathLike | None = None, *, indent: int = 2) -> str:
        """The report as JSON text; also written to `path` when given."""
        text = json.dumps(self.to_dict(), indent=indent)
        if path is not None:
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(text + "\n")
        return text

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchmarkReport:
        return _decode(cls, data)

    @classmethod
    def from_json(cls, source: str | os.PathLike) -> BenchmarkReport:
        """Read a report from JSON text or from a file written by [`~BenchmarkReport.to_json`]."""
        if isinstance(source, os.PathLike) or not str(source).lstrip().startswith("{"):
            with open(source, encoding="utf-8") as handle:
                source = handle.read()
        return cls.from_dict(json.loads(source))

    # -- card ---------------------------------------------------------------------------------------------------------

    def to_markdown(self) -> str:
        """The Markdown table the model card embeds, with a line saying how it was measured."""
        return report_markdown(self)

    def to_eval_results(self, role: str = "student") -> list:
        """The `role` model's numbers as `huggingface_hub.EvalResult`s for `ModelCardData(eval_results=...)`: task
        type `text-generation`, never `verified` (self-reported)."""
        return eval_results(self, role)

    def plot(self, path: str | os.PathLike) -> str:
        """Write a PNG of each quality metric against latency and size, one point per model; returns the path."""
        return plot_report(self, path)


def _decode(tp: Any, value: Any) -> Any:
    """Rebuild a value of type `tp` (dataclass, optional, list, dict or scalar) from its JSON form."""
    if value is None:
        return None
    if dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        return tp(**{f.name: _decode(hints[f.name], value[f.name]) for f in dataclasses.fields(tp) if f.name in value})
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return _decode(next(a for a in args if a is not type(None)), value)
    if origin is list:
        return [_decode(args[0], v) for v in value]
    if origin is dict:
        return {k: _decode(args[1], v) for k, v in value.items()}
    if tp is float:
        return float(value)  # JSON writes 2.0 as 2.0 but 0-valued sums may come back as ints
    return value
