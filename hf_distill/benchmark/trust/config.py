"""`TrustConfig`: which trust measurements `benchmark(..., trust=TrustConfig(...))` runs. Every part is off by default
and costs nothing when off."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ..errors import BenchmarkInputError
from .canaries import Canary
from .robustness import PERTURBATIONS

__all__ = ["TrustConfig"]


@dataclass
class TrustConfig:
    """Args:
        canaries (`Sequence[Canary]`): canaries that were inserted into the training data (see `make_canaries`,
            `insert_canaries`); their exposure is measured. Empty: off.
        num_candidates (`int`, defaults to `1024`): secrets each canary is ranked among, itself included.
        extraction_texts (`Sequence[str]`): training rows for the verbatim-extraction test. Empty: off.
        extraction_prefix_tokens (`int`, defaults to `32`), extraction_num_tokens (`int`, defaults to `50`): the prompt
            given and the continuation that must be reproduced exactly, in tokens.
        scan_outputs (`bool`): run the privacy scan on every completion the trust parts generate (held-out prompts,
            extraction continuations).
        robustness (`bool`): token F1 on perturbed held-out prompts, and the injection success rate.
        perturbations (`Sequence[str]`): kinds in `PERTURBATIONS` (`typos`, `case`, `whitespace`).
        perturbation_rate (`float`, defaults to `0.1`): share of characters (or spaces) perturbed.
        injection_marker (`str`): the word the injected suffix asks the model to say.
        safety (`bool`): refusal behaviour on the shipped safety set.
        serving_cost (`bool`): tokens/s per GB and, with `price_per_hour`, cost per million tokens and break-even.
        price_per_hour (`float`, *optional*): price of the serving machine per hour, in any currency.
        training_seconds (`float`, *optional*): measured training time, for the break-even number of tokens.
        max_new_tokens (`int`, defaults to `32`): tokens generated per prompt by the robustness and safety parts.
        seed (`int`): seeds the candidates and perturbations.
    """

    canaries: Sequence[Canary] = ()
    num_candidates: int = 1024
    extraction_texts: Sequence[str] = ()
    extraction_prefix_tokens: int = 32
    extraction_num_tokens: int = 50
    scan_outputs: bool = False
    robustness: bool = False
    perturbations: Sequence[str] = field(default_factory=lambda: tuple(PERTURBATIONS))
    perturbation_rate: float = 0.1
    injection_marker: str = "PINEAPPLE"
    safety: bool = False
    serving_cost: bool = False
    price_per_hour: float | None = None
    training_seconds: float | None = None
    max_new_tokens: int = 32
    seed: int = 0

    @classmethod
    def everything(cls, **overrides) -> TrustConfig:
        """Every part that needs no extra input on (what `hf-distill benchmark --trust` runs)."""
        return cls(**{"scan_outputs": True, "robustness": True, "safety": True, "serving_cost": True, **overrides})

    @property
    def enabled(self) -> bool:
        return bool(self.canaries or self.extraction_texts or self.scan_outputs or self.robustness or self.safety
                    or self.serving_cost)

    def problems(self) -> list[str]:
        """Every problem with the settings, as messages (checked before any model is loaded)."""
        problems = []
        unknown = sorted(set(self.perturbations) - set(PERTURBATIONS))
        if unknown:
            problems.append(f"`trust.perturbations` has unknown kinds {unknown}: choose from {sorted(PERTURBATIONS)}.")
        if not 0 < self.perturbation_rate <= 1:
            problems.append(f"`trust.perturbation_rate` must be in (0, 1], got {self.perturbation_rate!r}.")
        if self.price_per_hour is not None and not self.price_per_hour > 0:
            problems.append(
                f"`trust.price_per_hour` (--trust_price_per_hour) must be > 0, got {self.price_per_hour!r}: "
                "give the hourly price of the serving machine."
            )
        if self.training_seconds is not None and not self.training_seconds >= 0:
            problems.append(f"`trust.training_seconds` must be >= 0, got {self.training_seconds!r}.")
        if self.num_candidates < 2 or self.max_new_tokens < 1:
            problems.append(
                f"`trust.num_candidates` must be >= 2 and `trust.max_new_tokens` >= 1, got {self.num_candidates} and "
                f"{self.max_new_tokens}."
            )
        if self.extraction_prefix_tokens < 1 or self.extraction_num_tokens < 1:
            problems.append(
                f"`trust.extraction_prefix_tokens` and `trust.extraction_num_tokens` must be >= 1, got "
                f"{self.extraction_prefix_tokens} and {self.extraction_num_tokens}; e.g. 32 and 50."
            )
        if self.canaries and not all(isinstance(c, Canary) for c in self.canaries):
            problems.append("`trust.canaries` must hold `Canary` objects: build them with `make_canaries(...)`.")
        return problems

    def check(self) -> None:
        problems = self.problems()
        if problems:
            raise BenchmarkInputError("Cannot run the trust measurements:\n- " + "\n- ".join(problems))
