"""What `hf-distill benchmark --trust` runs (its `TrustConfig` from the flags); `write_risk_record` (from
`hf_distill.publish`) then writes `risk_record.json` beside the student's `distillation_provenance.json`."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from ..benchmark.trust.config import TrustConfig
from ..publish.provenance import PROVENANCE_FILE, Provenance
from ..publish.risk_record import write_risk_record

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
