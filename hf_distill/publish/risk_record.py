"""`risk_record.json` beside a saved student's `distillation_provenance.json`: the trust measurements of a benchmark
report with the provenance and licence verdict they belong to, so the next card and push carry them."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..benchmark.trust.card import RISK_RECORD_FILE, risk_record_files
from .provenance import PROVENANCE_FILE, Provenance

__all__ = ["write_risk_record"]

logger = logging.getLogger(__name__)


def write_risk_record(report: Any, student: str | Path) -> Path | None:
    """Write `risk_record.json` into the student folder; None when the report has no trust measurements or the
    student is not a folder."""
    if getattr(report, "trust", None) is None or not Path(student).is_dir():
        return None
    provenance = Provenance.load(student) if (Path(student) / PROVENANCE_FILE).is_file() else None
    verdict = provenance.check_license() if provenance is not None else None
    path = Path(student) / RISK_RECORD_FILE
    path.write_bytes(risk_record_files(report, provenance, verdict)[RISK_RECORD_FILE])
    logger.info("Wrote %s", path)
    return path
