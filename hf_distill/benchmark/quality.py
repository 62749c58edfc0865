"""Quality: how well each model's own greedy completions match the references (task metrics), and the held-out
cross-entropy of the reference completions (teacher-forced, computed in `fidelity.py` in the same pass as the
agreement with the teacher).

Task metrics are computed locally, never downloaded: `exact_match` and `token_f1` follow the SQuAD v1.1 evaluation
script (lower-case, strip punctuation and articles); `rouge_l` is the ROUGE-L F-measure of `rouge-score` (used when
installed; the same LCS definition otherwise); `chrf` and `bleu` are `sacrebleu`'s corpus scores, on its 0-100 scale.
A new metric is a function `(predictions, references) -> float` plus one line in `TASK_METRICS`.
"""

from __future__ import annotations

import importlib.util
import re
import string
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from torch import nn
from transformers import PreTrainedTokenizerBase

from .generation import generate_batch

__all__ = ["TASK_METRICS", "TaskMetric", "check_task_metrics", "generate_predictions", "score_predictions"]

_PUNCTUATION = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def _normalize_answer(text: str) -> str:
    """SQuAD's answer normalisation: lower-case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Share of predictions equal to their reference after SQuAD normalisation, in [0, 1]."""
    hits = [_normalize_answer(p) == _normalize_answer(r) for p, r in zip(predictions, references, strict=True)]
    return sum(hits) / len(hits)


def _f1(prediction_tokens: list[str], reference_tokens: list[str]) -> float:
    if not prediction_tokens or not reference_tokens:  # SQuAD: both empty is a match, one empty is not
        return float(prediction_tokens == reference_tokens)
    overlap = sum((Counter(prediction_tokens) & Counter(reference_tokens)).values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(prediction_tokens), overlap / len(reference_tokens)
    return 2 * precision * recall / (precision + recall)


def token_f1(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Mean bag-of-words F1 between normalised prediction and reference tokens (SQuAD), in [0, 1]."""
    pairs = zip(predictions, references, strict=True)
    scores = [_f1(_normalize_answer(p).split(), _normalize_answer(r).split()) for p, r in pairs]
    return sum(scores) / len(scores)


_NON_ALPHANUMERIC = re.compile(r"[^a-z0-9]+")


def _rouge_tokens(text: str) -> list[str]:
    """`rouge-score`'s default tokenizer without stemming: lower-case ASCII alphanumeric runs."""
    return _NON_ALPHANUMERIC.sub(" ", text.lower()).split()


def _lcs_length(a: list[str], b: list[str]) -> int:
    previous = [0] * (len(b) + 1)
    for token in a:
        current = [0]
        for j, other in enumerate(b):
            current.append(previous[j] + 1 if token == other else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def _rouge_l_local(prediction: str, reference: str) -> float:
    pred, ref = _rouge_tokens(prediction), _rouge_tokens(reference)
    lcs = _lcs_length(pred, ref) if pred and ref else 0
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(pred), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


def rouge_l(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Mean ROUGE-L F-measure (longest common subsequence of words), in [0, 1]."""
    if importlib.util.find_spec("rouge_score") is not None:
        from rouge_score import rouge_scorer

        scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
        scores = [scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(predictions, references, strict=True)]
    else:
        scores = [_rouge_l_local(p, r) for p, r in zip(predictions, references, strict=True)]
    return sum(scores) / len(scores)


def chrf(predictions: Sequence[str], references: Sequence[str]) -> float:
    """sacrebleu's corpus chrF, 0-100."""
    import sacrebleu

    return float(sacrebleu.corpus_chrf(list(predictions), [list(references)]).score)


def bleu(predictions: Sequence[str], references: Sequence[str]) -> float:
    """sacrebleu's corpus BLEU (13a tokenisation), 0-100."""
    import sacrebleu

    return float(sacrebleu.corpus_bleu(list(predictions), [list(references)]).score)


@dataclass(frozen=True)
class TaskMetric:
    """A metric of generated text against references.

    Args:
        fn (`Callable[[Sequence[str], Sequence[str]], float]`): `(predictions, references) -> score`.
        label (`str`): how tables and plots name it.
        hub_type (`str`): `metric_type` in the model card's `model-index`.
        requires (`str`, *optional*): the Python module it needs; checked before any model runs.
    """

    fn: Callable[[Sequence[str], Sequence[str]], float]
    label: str
    hub_type: str
    requires: str | None = None


TASK_METRICS: dict[str, TaskMetric] = {
    "exact_match": TaskMetric(exact_match, "Exact match", "exact_match"),
    "token_f1": TaskMetric(token_f1, "Token F1", "f1"),
    "rouge_l": TaskMetric(rouge_l, "ROUGE-L", "rouge"),
    "chrf": TaskMetric(chrf, "chrF", "chrf", requires="sacrebleu"),
    "bleu": TaskMetric(bleu, "BLEU", "bleu", requires="sacrebleu"),
}


def check_task_metrics(names: Sequence[str]) -> list[str]:
    """Problems with the requested `task_metrics` (unknown names, missing packages), as messages; empty when fine."""
    if isinstance(names, str):
        return [f"`task_metrics` must be a list of metric names, got the string {names!r}: write ({names!r},)."]
    problems = []
    for name in names:
        metric = TASK_METRICS.get(name)
        if metric is None:
            problems.append(f"Unknown task metric {name!r} in `task_metrics`: choose from {', '.join(TASK_METRICS)}.")
        elif metric.requires and importlib.util.find_spec(metric.requires) is None:
            problems.append(
                f"Task metric {name!r} needs `{metric.requires}`, which is not installed. Install it with "
                f'`pip install {metric.requires}` (or, from an hf_distill clone, `pip install -e ".[eval]"`), or '
                "leave it out of `task_metrics`."
            )
    return problems


def score_predictions(predictions: Sequence[str], references: Sequence[str], names: Sequence[str]) -> dict[str, float]:
    """`{metric name: score}` of `predictions` against `references` for each of `names`."""
    return {name: float(TASK_METRICS[name].fn(predictions, references)) for name in names}


def generate_predictions(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    batch_size: int,
) -> list[str]:
    """Each prompt's greedy completion (at most `max_new_tokens` tokens), decoded without special tokens and
    stripped; prompts are batched by length so little padding is computed."""
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    predictions: list[str] = [""] * len(prompts)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        completions = generate_batch(model, tokenizer, [prompts[i] for i in rows], max_new_tokens=max_new_tokens)
        for i, ids in zip(rows, completions, strict=True):
            predictions[i] = tokenizer.decode(ids, skip_special_tokens=True).strip()
    return predictions
