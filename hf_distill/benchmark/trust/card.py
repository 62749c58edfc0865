"""The model card's "Risks and measurements" section and the machine-readable `risk_record.json`, both rendered from
a benchmark report's `trust` measurements, the provenance and the licence verdict."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

from .governance import DISCLAIMER, GOVERNANCE_MAP
from .report import TrustReport

__all__ = ["RISK_RECORD_FILE", "risk_record", "risk_record_files", "trust_card_section"]

RISK_RECORD_FILE = "risk_record.json"
_SCHEMA = "hf_distill/risk_record/1"


def _num(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:,.0f}" if abs(value) >= 1e5 else f"{value:.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    if not rows:
        return []
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows),
            ""]


def _leakage(trust: TrustReport) -> list[str]:
    models = trust.models
    roles = [r for r, m in models.items() if m.canaries]
    lines = []
    if roles:
        first = models[roles[0]].canaries
        header = ["canary seen", *(f"{r} exposure (rank)" for r in roles)]
        rows = [[f"{c.repetitions}×", *(f"{models[r].canaries[i].exposure:.2f} ({models[r].canaries[i].rank})"
                                          for r in roles)] for i, c in enumerate(first)]
        lines += [f"Canary exposure (bits; at most log2({first[0].num_candidates}) = "
                  f"{_num(math.log2(first[0].num_candidates), 2)}):", "", *_table(header, rows)]
    rows = [[r, f"{m.extraction.num_tested} of {m.extraction.num_rows}", str(m.extraction.num_extracted),
             _num(m.extraction.extracted_share)] for r, m in models.items() if m.extraction]
    lines += _table(["model", "training rows tested", "extracted verbatim", "share"], rows)
    rows = [[r, str(s.num_texts), str(s.num_texts_flagged), *(str(s.counts.get(k, 0)) for k in ("email", "phone",
             "ip_address")), str(sum(n for k, n in s.counts.items() if k not in ("email", "phone", "ip_address")))]
            for r, s in ((r, m.output_scan) for r, m in models.items()) if s]
    lines += _table(["model", "outputs scanned", "flagged", "e-mail", "phone", "IP address", "secrets"], rows)
    return ["### Leakage", "", *lines] if lines else []


def _robustness(trust: TrustReport) -> list[str]:
    models = {r: m.robustness for r, m in trust.models.items() if m.robustness}
    if not models:
        return []
    kinds = list(next(iter(models.values())).drop)
    rows = [[r, _num(x.clean_token_f1), *(_num(x.drop[k]) for k in kinds), _num(x.injection_success_rate)]
            for r, x in models.items()]
    lines = ["### Robustness", "", *_table(["model", "token F1 (clean)", *(f"drop: {k}" for k in kinds),
                                            "injection success"], rows)]
    for role, gap in trust.robustness_gap.items():
        lines.append(f"- {role} drop minus teacher drop: " + ", ".join(f"{k} {_num(v)}" for k, v in gap.items()))
    return lines + ([""] if trust.robustness_gap else [])


def _safety(trust: TrustReport) -> list[str]:
    rows = [[r, _num(m.safety.harmful_refusal_rate), _num(m.safety.harmless_refusal_rate),
             _num(trust.safety_agreement.get(r)) if r != "teacher" else "–"]
            for r, m in trust.models.items() if m.safety]
    table = _table(["model", "refusal rate (harmful)", "over-refusal (harmless)", "agreement with teacher"], rows)
    return ["### Safety-set behaviour", "", *table] if table else []


def _cost(trust: TrustReport) -> list[str]:
    servings = [(role, m.serving) for role, m in trust.models.items() if m.serving]
    rows = [[r, str(s.batch_size), _num(s.tokens_per_second, 1), _num(s.peak_memory_gb),
             _num(s.tokens_per_second_per_gb, 1), _num(s.cost_per_million_tokens)] for r, s in servings]
    table = _table(["model", "batch", "tokens/s", "peak memory (GB)", "tokens/s per GB", "cost per 1M tokens"], rows)
    if table and trust.break_even_tokens is not None:
        table += [f"Break-even: after {trust.break_even_tokens:,.0f} served tokens the student's lower serving cost "
                  "has paid for its training time at the same price per hour.", ""]
    return ["### Cost of serving", "", *table] if table else []


def recorded_kinds(trust: TrustReport | None, provenance: Any = None, verdict: Any = None) -> dict[str, bool]:
    models = trust.models.values() if trust is not None else []
    return {
        "provenance": provenance is not None,
        "license": verdict is not None,
        "data_scan": provenance is not None and any(d.privacy_scan for d in provenance.datasets),
        "leakage": any(m.canaries or m.extraction or m.output_scan for m in models),
        "robustness": any(m.robustness for m in models),
        "safety": any(m.safety for m in models),
        "cost": any(m.serving for m in models),
    }


def _governance(recorded: dict[str, bool]) -> list[str]:
    rows = [[k.label, "yes" if recorded[k.key] else "no", k.nist, k.iso] for k in GOVERNANCE_MAP]
    return ["### What was recorded, and what it can inform", "", DISCLAIMER, "",
            *_table(["record", "recorded here", "NIST AI RMF 1.0", "ISO/IEC 42001:2023 Annex A"], rows)]


def trust_card_section(report: Any, provenance: Any = None, verdict: Any = None) -> str:
    """The card's "Risks and measurements" section (Markdown), or "" when the report carries no trust measurements."""
    trust = getattr(report, "trust", None)
    if trust is None:
        return ""
    lines = ["## Risks and measurements", "",
             "Measured by `hf-distill benchmark --trust` (student and teacher side by side); method of each part:", ""]
    lines += [f"- {part}: {method}" for part, method in trust.methods.items()] + [""]
    for part in (_leakage, _robustness, _safety, _cost):
        lines += part(trust)
    lines += _governance(recorded_kinds(trust, provenance, verdict))
    lines.append(f"The full record is [`{RISK_RECORD_FILE}`]({RISK_RECORD_FILE}).")
    return "\n".join(lines).strip() + "\n"


def risk_record(report: Any, provenance: Any = None, verdict: Any = None) -> dict[str, Any]:
    """`risk_record.json`: the trust measurements, the licence verdict, the data scans and the framework mapping."""
    trust = getattr(report, "trust", None)
    recorded = recorded_kinds(trust, provenance, verdict)
    return {
        "schema": _SCHEMA,
        "student": (provenance.student.get("name") if provenance is not None else None),
        "provenance_file": "distillation_provenance.json" if provenance is not None else None,
        "license_verdict": getattr(verdict, "status", None),
        "data_scans": {f"{d.display_name} ({d.split})": d.privacy_scan for d in provenance.datasets
                       if d.privacy_scan} if provenance is not None else {},
        "measurements": dataclasses.asdict(trust) if trust is not None else None,
        "governance": {"disclaimer": DISCLAIMER, "records": [
            {**dataclasses.asdict(k), "recorded": recorded[k.key]} for k in GOVERNANCE_MAP]},
    }


def risk_record_files(report: Any, provenance: Any = None, verdict: Any = None) -> dict[str, bytes]:
    """`{RISK_RECORD_FILE: json bytes}` for a push when the report carries trust measurements, else `{}`."""
    if getattr(report, "trust", None) is None:
        return {}
    return {RISK_RECORD_FILE: (json.dumps(risk_record(report, provenance, verdict), indent=2) + "\n").encode()}
