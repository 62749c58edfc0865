"""Trust measurements for `benchmark(..., trust=TrustConfig(...))`: what the student leaks (canary exposure, verbatim
extraction, personal data in its outputs), where it breaks that the teacher does not (perturbed prompts, prompt
injection), whether it refuses what the teacher refuses (a shipped safety set), and what it costs to serve. Each
part is opt-in; the card section and `risk_record.json` are rendered from the result (docs/trust.md)."""

from .canaries import Canary, CanaryExposure, canary_exposure, insert_canaries, make_canaries
from .config import TrustConfig
from .report import ModelTrust, OutputScan, RobustnessResult, SafetyResult, TrustReport
from .runner import run_trust

__all__ = [
    "Canary", "CanaryExposure", "ModelTrust", "OutputScan", "RobustnessResult", "SafetyResult", "TrustConfig",
    "TrustReport", "canary_exposure", "insert_canaries", "make_canaries", "run_trust",
]
