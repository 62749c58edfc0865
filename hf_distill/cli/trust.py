"""What `hf-distill benchmark --trust` runs, and the `risk_record.json` it writes beside the student's
`distillation_provenance.json`. Kept here so the CLI needs one line per hook."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from ..benchmark.trust.card import RISK_RECORD_FILE, risk_record_files
from ..benchmark.trust.config import TrustConfig
from ..publish.provenance import PROVENANCE_FILE, Provenance

__all__ = ["trust_config_from_arguments", "training_texts", "write_risk_record"]

logger = logging.getLogger(__name__)


def _provenance(student: str) -> Any:
    return Provenance.load(student) if (Path(student) / PROVENANCE_FILE).is_file() else None


def training_texts(rows: Iterable[Mapping[str, Any]], limit: int) -> list[str]:
    """The text of the first `limit` training rows (TRL formats): `text`, prompt + completion, or the messages'
    contents joined, as the model saw them in order."""
    texts = []
    for row in rows:
        if len(texts) >= limit:
            break
        if "text" in row:
            texts.append(str(row["text"]))
        elif "messages" in row:
            texts.append("\n".join(str(m.get("content") or "") for m in row["messages"]))
        elif isinstance(row.get("prompt"), str):
            texts.append(row["prompt"] + str(row.get("completion") or ""))
        else:
            texts.append("\n".join(str(m.get("content") or "") for m in [*row["prompt"], *row["completion"]]))
    return texts


def trust_config_from_arguments(args: Any, load_split: Callable[[str], Any]) -> TrustConfig | None:
    """`TrustConfig.everything()` for `--trust` (None without it), with the price given, the training time from
    the student's provenance, and `--trust_extraction_rows` rows of the train split for verbatim extraction."""
    if not getattr(args, "trust", False):
        return None
    provenance = _provenance(args.student)
    rows = args.trust_extraction_rows
    return TrustConfig.everything(
        price_per_hour=args.trust_price_per_hour,
        training_seconds=provenance.wall_clock_seconds if provenance is not None else None,
        extraction_texts=training_texts(load_split(args.dataset_train_split), rows) if rows else (),
    )


def write_risk_record(report: Any, student: str) -> Path | None:
    """Write `risk_record.json` into the student folder (beside `distillation_provenance.json`), so the next push
    and card carry it; None when the report has no trust measurements or the student is not a folder."""
    if report.trust is None or not Path(student).is_dir():
        return None
    provenance = _provenance(student)
    verdict = provenance.check_license() if provenance is not None else None
    path = Path(student) / RISK_RECORD_FILE
    path.write_bytes(risk_record_files(report, provenance, verdict)[RISK_RECORD_FILE])
    logger.info("Wrote %s", path)
    return path
