"""Run lm-evaluation-harness (`lm_eval`) tasks on already-loaded models and fold the scores into a report.

Each model is wrapped in lm_eval's `HFLM` (`HFLM(pretrained=model, tokenizer=tokenizer)`), so the exact weights that
were benchmarked (a trained student in memory, a PEFT model, an 8-bit teacher) are the ones evaluated; nothing is
reloaded. Install it with `pip install lm-eval` (or, from an hf_distill clone,
`pip install -e ".[eval]"`).

Real use: standard tasks download their data from the Hub the first time they run.

```python
>>> from hf_distill.benchmark import benchmark
>>> report = benchmark(
...     "me/qwen-0.5b-distilled", "Qwen/Qwen2.5-7B-Instruct", held_out,
...     lm_eval_tasks=["gsm8k", "arc_easy"], lm_eval_kwargs={"num_fewshot": 5, "limit": 200},
... )
>>> report.student.quality.lm_eval["gsm8k/exact_match,strict-match"]
```

Offline, point lm_eval at your own task YAML over local files (`dataset_path: json`, `dataset_kwargs.data_files`)
with `lm_eval_kwargs={"include_path": "my_tasks/", "include_defaults": False}`; `include_defaults=False` also skips
indexing lm_eval's ~15,000 built-in tasks (about 25 s).
"""

from __future__ import annotations

import importlib.util
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from torch import nn
from transformers import PreTrainedTokenizerBase

from .errors import BenchmarkInputError
from .report import LmEvalTask

if TYPE_CHECKING:
    from .report import BenchmarkReport

__all__ = ["LmEvalRun", "add_lm_eval_results", "check_lm_eval", "run_lm_eval"]

_INSTALL = ('lm-evaluation-harness is not installed. Install it with `pip install lm-eval` (or, from an hf_distill '
            'clone, `pip install -e ".[eval]"`).')


@dataclass
class LmEvalRun:
    """Settings of an lm_eval run, shared by every model so their scores compare.

    Args:
        tasks (`list[str]`): lm_eval task or group names (glob patterns allowed, as in `lm_eval --tasks`).
        include_path (`str`, *optional*): a folder of extra task YAMLs.
        include_defaults (`bool`, *optional*, defaults to `True`): index lm_eval's built-in tasks too.
        limit (`int` or `float`, *optional*): examples per task (a fraction when < 1); None runs them all.
        num_fewshot (`int`, *optional*): few-shot examples; None keeps each task's default.
        batch_size (`int`, *optional*, defaults to `8`): lm_eval's batch size.
        apply_chat_template (`bool`, *optional*, defaults to `False`): format prompts with the chat template.
        gen_kwargs (`dict`, *optional*): generation arguments for generative tasks.
    """

    tasks: list[str]
    include_path: str | None = None
    include_defaults: bool = True
    limit: int | float | None = None
    num_fewshot: int | None = None
    batch_size: int = 8
    apply_chat_template: bool = False
    gen_kwargs: dict[str, Any] | None = None
    _task_manager: Any = field(default=None, repr=False)

    @classmethod
    def from_kwargs(cls, tasks: Sequence[str], kwargs: Mapping[str, Any] | None) -> LmEvalRun:
        unknown = set(kwargs or {}) - {f for f in cls.__dataclass_fields__ if not f.startswith("_")} - {"tasks"}
        if unknown:
            raise BenchmarkInputError(
                f"Unknown `lm_eval_kwargs` {sorted(unknown)}: use include_path, include_defaults, limit, num_fewshot, "
                "batch_size, apply_chat_template or gen_kwargs."
            )
        return cls(tasks=list(tasks), **dict(kwargs or {}))

    @property
    def task_manager(self):
        if self._task_manager is None:
            from lm_eval.tasks import TaskManager

            self._task_manager = TaskManager(include_path=self.include_path, include_defaults=self.include_defaults)
        return self._task_manager

    def resolved_tasks(self) -> list[str]:
        """Task names with glob patterns expanded, as `lm_eval --tasks` does (`simple_evaluate` does not)."""
        from lm_eval.utils import pattern_match

        names = []
        for task in self.tasks:
            names += [n for n in pattern_match([task], self.task_manager.all_tasks) if n not in names]
        return names


def check_lm_eval(run: LmEvalRun) -> None:
    """Raise [`BenchmarkInputError`] when lm_eval is missing or a task is unknown: before any model is loaded."""
    if importlib.util.find_spec("lm_eval") is None:
        raise BenchmarkInputError(_INSTALL)
    if isinstance(run.tasks, str) or not run.tasks:
        raise BenchmarkInputError(f"`lm_eval_tasks` must be a non-empty list of task names, got {run.tasks!r}.")
    from lm_eval.utils import pattern_match

    unknown = [t for t in run.tasks if not pattern_match([t], run.task_manager.all_tasks)]
    if unknown:
        where = f" or in {run.include_path!r}" if run.include_path else ""
        raise BenchmarkInputError(
            f"Unknown lm_eval task(s) {unknown}: no such task in lm_eval's registry{where}. List them with "
            "`lm_eval ls tasks`, or pass a folder of task YAMLs with `lm_eval_kwargs={'include_path': ...}`."
        )


def _task_info(task: str, output: Mapping[str, Any]) -> LmEvalTask:
    config = output.get("configs", {}).get(task, {})
    samples = output.get("n-samples", {}).get(task, {})
    return LmEvalTask(
        task=task,
        dataset_path=config.get("dataset_path"),
        dataset_name=config.get("dataset_name"),
        split=config.get("test_split") or config.get("validation_split"),
        num_fewshot=output.get("n-shot", {}).get(task, config.get("num_fewshot")),
        num_samples=samples.get("effective"),
        higher_is_better={k: bool(v) for k, v in output.get("higher_is_better", {}).get(task, {}).items()},
    )


def _scores(output: Mapping[str, Any]) -> dict[str, float]:
    """`{"task/metric": value}` from lm_eval's results; a filter other than `none` stays in the name
    (`gsm8k/exact_match,strict-match`), standard errors are dropped."""
    scores = {}
    for task, metrics in output["results"].items():
        for key, value in metrics.items():
            if "," not in key or "_stderr" in key or not isinstance(value, numbers.Number):
                continue
            metric, _, filter_name = key.partition(",")
            scores[f"{task}/{metric if filter_name == 'none' else key}"] = float(value)
    return scores


def run_lm_eval(
    model: nn.Module, tokenizer: PreTrainedTokenizerBase, run: LmEvalRun
) -> tuple[dict[str, float], dict[str, LmEvalTask]]:
    """Evaluate one loaded model on `run.tasks`: `({"task/metric": score}, {task: LmEvalTask})`."""
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=run.batch_size)
    output = simple_evaluate(
        model=lm, tasks=run.resolved_tasks(), task_manager=run.task_manager, limit=run.limit,
        num_fewshot=run.num_fewshot,
        apply_chat_template=run.apply_chat_template, gen_kwargs=run.gen_kwargs, log_samples=False, bootstrap_iters=0,
    )
    tasks = {task: _task_info(task, output) for task in output["results"]}
    return _scores(output), tasks


def add_lm_eval_results(
    report: BenchmarkReport,
    models: Mapping[str, tuple[nn.Module, PreTrainedTokenizerBase]],
    run: LmEvalRun,
) -> BenchmarkReport:
    """Run `run` on each `{role: (model, tokenizer)}` and fold the scores into that model's `quality.lm_eval`, the
    task descriptions into `report.lm_eval_tasks`, and the gaps into `report.gap_recovered`."""
    check_lm_eval(run)
    by_role = {m.role: m for m in report.models}
    missing = set(models) - set(by_role)
    if missing:
        raise BenchmarkInputError(f"The report has no {sorted(missing)} model(s); it has {sorted(by_role)}.")
    for role, (model, tokenizer) in models.items():
        scores, tasks = run_lm_eval(model, tokenizer, run)
        by_role[role].quality.lm_eval.update(scores)
        report.lm_eval_tasks.update(tasks)
    report.update_gap_recovered()
    return report
