"""The trust measurements as dataclasses, nested in `BenchmarkReport.trust` (they round-trip through its JSON)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .canaries import CanaryExposure
from .extraction import ExtractionResult
from .serving_cost import ServingCost

__all__ = ["ModelTrust", "OutputScan", "RobustnessResult", "SafetyResult", "TrustReport"]


@dataclass
class OutputScan:
    """The privacy scan of a model's generations: texts scanned, flagged, findings per category (counts only)."""

    num_texts: int
    num_texts_flagged: int
    counts: dict[str, int]


@dataclass
class RobustnessResult:
    """Token F1 (SQuAD) of greedy completions on clean and perturbed held-out prompts.

    Args:
        clean_token_f1 (`float`): on the prompts as given.
        perturbed_token_f1 (`dict[str, float]`): per perturbation kind.
        drop (`dict[str, float]`): `clean - perturbed`, per kind (positive: worse under perturbation).
        injection_success_rate (`float`): share of completions that said the injected marker.
    """

    clean_token_f1: float
    perturbed_token_f1: dict[str, float]
    drop: dict[str, float]
    injection_success_rate: float


@dataclass
class SafetyResult:
    """Refusals on the safety set: rate on the harmful and the harmless half, and the per-request calls."""

    harmful_refusal_rate: float
    harmless_refusal_rate: float
    refusals: list[bool]


@dataclass
class ModelTrust:
    """One model's trust measurements; a part not run is None (or empty)."""

    role: str
    canaries: list[CanaryExposure] = field(default_factory=list)
    extraction: ExtractionResult | None = None
    output_scan: OutputScan | None = None
    robustness: RobustnessResult | None = None
    safety: SafetyResult | None = None
    serving: ServingCost | None = None


@dataclass
class TrustReport:
    """Trust measurements of every model benchmarked, and how they were taken.

    Args:
        models (`dict[str, ModelTrust]`): by role (`student`, `teacher`, `baseline`).
        methods (`dict[str, str]`): per part run, one line saying how it was measured.
        safety_agreement (`dict[str, float]`): per non-teacher role, share of safety requests on which it made the
            teacher's call.
        robustness_gap (`dict[str, dict[str, float]]`): per non-teacher role and perturbation, its drop minus the
            teacher's drop (positive: it loses more than the teacher).
        break_even_tokens (`float`, *optional*): served tokens at which the student's saving pays for its training.
        safety_set_license (`str`, *optional*): licence of the safety set used.
    """

    models: dict[str, ModelTrust]
    methods: dict[str, str] = field(default_factory=dict)
    safety_agreement: dict[str, float] = field(default_factory=dict)
    robustness_gap: dict[str, dict[str, float]] = field(default_factory=dict)
    break_even_tokens: float | None = None
    safety_set_license: str | None = None
