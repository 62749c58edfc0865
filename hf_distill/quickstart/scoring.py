"""Task accuracy for the quickstart: a generated answer counts when it is ANY of the prompt's valid answers (the
dataset's single reference would count most right answers as wrong). Registered as a benchmark task metric so it is
measured, tabled, plotted and written into the card like every other metric."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from datasets import Dataset

from ..benchmark.quality import TASK_METRICS, TaskMetric
from .errors import QuickstartError
from .tasks import answer_is_valid

__all__ = ["TASK_ACCURACY", "task_accuracy_metric"]

TASK_ACCURACY = "task_accuracy"


@contextmanager
def task_accuracy_metric(held_out: Dataset) -> Iterator[str]:
    """Register `task_accuracy` for the rows of `held_out` (in order) while the block runs; yields its name.

    The benchmark scores predictions in dataset order; the metric checks that the references it receives are this
    dataset's, so it can never score one row's answer against another row's valid answers.
    """
    valid = [tuple(answers) for answers in held_out["valid_answers"]]
    expected = [completion.strip() for completion in held_out["completion"]]

    def accuracy(predictions: Sequence[str], references: Sequence[str]) -> float:
        if [r.strip() for r in references] != expected[: len(references)] or len(predictions) > len(valid):
            raise QuickstartError(
                "task_accuracy was asked to score rows of another dataset than the quickstart's held-out "
                "split; benchmark that split (in order) to use it."
            )
        rows = zip(predictions, valid[: len(predictions)], strict=True)
        return sum(answer_is_valid(p, v) for p, v in rows) / len(predictions)

    previous = TASK_METRICS.get(TASK_ACCURACY)
    TASK_METRICS[TASK_ACCURACY] = TaskMetric(accuracy, "Task accuracy", "accuracy")
    try:
        yield TASK_ACCURACY
    finally:
        if previous is None:
            TASK_METRICS.pop(TASK_ACCURACY, None)
        else:
            TASK_METRICS[TASK_ACCURACY] = previous
