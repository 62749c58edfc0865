"""Benchmark a distilled student against its teacher: quality, fidelity, latency and size, as a
[`BenchmarkReport`] (JSON, Markdown table, model-index eval results, plots).

```python
>>> from hf_distill.benchmark import benchmark
>>> report = benchmark("me/qwen-0.5b-distilled", "Qwen/Qwen2.5-7B-Instruct", held_out_dataset)
>>> report.to_json("benchmark.json"); report.plot("benchmark.png")
```
"""

from .errors import BenchmarkInputError
from .lm_eval_adapter import LmEvalRun, add_lm_eval_results, run_lm_eval
from .plots import plot_training_curves
from .quality import TASK_METRICS
from .report import (
    BenchmarkReport,
    BenchmarkSettings,
    CostMetrics,
    DatasetInfo,
    FidelityMetrics,
    Hardware,
    LatencyResult,
    LmEvalTask,
    Measurement,
    ModelReport,
    QualityMetrics,
    teacher_gap_recovered,
)
from .run import benchmark

__all__ = [
    "TASK_METRICS",
    "BenchmarkInputError",
    "BenchmarkReport",
    "BenchmarkSettings",
    "CostMetrics",
    "DatasetInfo",
    "FidelityMetrics",
    "Hardware",
    "LatencyResult",
    "LmEvalRun",
    "LmEvalTask",
    "Measurement",
    "ModelReport",
    "QualityMetrics",
    "add_lm_eval_results",
    "benchmark",
    "plot_training_curves",
    "run_lm_eval",
    "teacher_gap_recovered",
]
