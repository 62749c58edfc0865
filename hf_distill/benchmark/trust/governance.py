"""What each record supports in two governance frameworks: the NIST AI Risk Management Framework 1.0 (functions
Govern, Map, Measure, Manage and the subcategories named) and the Annex A controls of ISO/IEC 42001:2023. The
table says which activity a measurement is evidence for; it is not a claim of conformity or certification."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DISCLAIMER", "GOVERNANCE_MAP", "RecordKind"]

DISCLAIMER = (
    "This maps what was recorded to the framework activities it can inform. It is not a claim of compliance with "
    "the NIST AI RMF or of conformity with ISO/IEC 42001; those concern an organisation's processes, not a model."
)


@dataclass(frozen=True)
class RecordKind:
    key: str
    label: str
    nist: str
    iso: str


GOVERNANCE_MAP: tuple[RecordKind, ...] = (
    RecordKind("provenance", "Provenance (teacher, data, tokenizer, weight hashes)",
               "Govern 6.1 (third-party policies); Map 4.1 (third-party components and their risks)",
               "A.6.2.7 technical documentation; A.7.5 data provenance; A.10.3 suppliers"),
    RecordKind("license", "Licence verdict", "Govern 6.1; Map 4.1 (intellectual-property risks)",
               "A.10.3 suppliers; A.7.3 acquisition of data"),
    RecordKind("data_scan", "Privacy scan of the training data", "Measure 2.10 (privacy risk)",
               "A.7.4 quality of data; A.5.4 impact on individuals"),
    RecordKind("leakage", "Leakage: canary exposure, verbatim extraction, personal data in outputs",
               "Measure 2.10 (privacy risk)", "A.5.4 impact on individuals; A.6.2.4 verification and validation"),
    RecordKind("robustness", "Robustness to perturbed prompts and prompt injection",
               "Measure 2.5 (valid and reliable); Measure 2.7 (secure and resilient)",
               "A.6.2.4 verification and validation"),
    RecordKind("safety", "Refusal agreement with the teacher on a safety set", "Measure 2.6 (safety)",
               "A.6.2.4 verification and validation; A.5.5 societal impacts"),
    RecordKind("cost", "Serving cost and training break-even", "Manage 2.1 (resources taken into account)",
               "A.4.5 system and computing resources"),
)
