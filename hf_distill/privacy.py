"""Scan training data and generated text for personal data and secrets before they are trained on or published.

The scan is a set of regular expressions: it finds well-formed e-mail addresses, phone numbers, IP addresses and
credentials with a recognisable shape (Hugging Face, OpenAI, AWS, GitHub, Slack, Google keys, private-key blocks,
`password = ...` assignments). It is a tripwire, not a guarantee: counts go into the provenance and the model card,
and publishing data with secrets in it is refused unless the caller overrides it explicitly.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import HfDistillError

__all__ = [
    "PATTERNS",
    "PrivacyReport",
    "PrivacyScanError",
    "PrivateDataError",
    "check_publishable",
    "scan_dataset",
    "scan_generated",
    "scan_texts",
    "text_columns",
]

logger = logging.getLogger(__name__)

_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"

#: category -> (kind, pattern). Kind "secret" blocks publishing; "personal" is counted and reported.
PATTERNS: dict[str, tuple[str, re.Pattern]] = {
    "email": ("personal", re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")),
    "phone": (
        "personal",
        re.compile(r"(?<![\w.])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{2,4}\)|\d{2,4})[\s.-]\d{3,4}[\s.-]\d{3,4}(?![\w.])"),
    ),
    "ip_address": ("personal", re.compile(rf"(?<![\w.]){_OCTET}(?:\.{_OCTET}){{3}}(?![\w.])")),
    "huggingface_token": ("secret", re.compile(r"\bhf_[A-Za-z0-9]{30,}\b")),
    "openai_key": ("secret", re.compile(r"\bsk-(?:proj-)?[A-Za-z0-9_-]{20,}\b")),
    "aws_access_key": ("secret", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    "github_token": ("secret", re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b")),
    "slack_token": ("secret", re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}\b")),
    "google_api_key": ("secret", re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b")),
    "private_key": ("secret", re.compile(r"-----BEGIN (?:RSA |EC |DSA |OPENSSH |PGP )?PRIVATE KEY( BLOCK)?-----")),
    "assigned_secret": (
        "secret",
        re.compile(r"(?i)\b(?:api[_-]?key|secret|password|passwd|access[_-]?token)\b\s*[:=]\s*['\"]?[^\s'\"]{8,}"),
    ),
}


# Literal pieces one of which every match of a pattern contains: a text holding none of them skips that regex, which
# makes the scan of clean text several times faster. `None`: always run (digits-only shapes, case-insensitive words).
_ANCHORS: dict[str, tuple[str, ...] | None] = {
    "email": ("@",),
    "phone": None,
    "ip_address": (".",),
    "huggingface_token": ("hf_",),
    "openai_key": ("sk-",),
    "aws_access_key": ("AKIA", "ASIA"),
    "github_token": ("ghp_", "gho_", "ghu_", "ghs_", "ghr_"),
    "slack_token": ("xox",),
    "google_api_key": ("AIza",),
    "private_key": ("PRIVATE KEY",),
    "assigned_secret": (":", "="),
}
_SCANNERS = tuple((name, _ANCHORS[name], pattern) for name, (_, pattern) in PATTERNS.items())


class PrivateDataError(HfDistillError, ValueError):
    """Data about to be published contains secrets."""


class PrivacyScanError(HfDistillError, ValueError):
    """`scan_dataset` was asked to scan columns the dataset does not have."""


def _hits(text: str) -> dict[str, int]:
    """Findings per category in one string (only the categories found)."""
    found = {}
    for name, anchors, pattern in _SCANNERS:
        if anchors is not None and not any(anchor in text for anchor in anchors):
            continue
        count = len(pattern.findall(text))
        if count:
            found[name] = count
    return found


@dataclass
class PrivacyReport:
    """Counts of what the scan found: no text, only numbers (and, for the caller's eyes, the first flagged rows).

    Args:
        num_texts (`int`): texts scanned (rows, for a dataset: a row's strings count as one text).
        num_texts_flagged (`int`): texts (rows) with at least one finding.
        counts (`dict[str, int]`): findings per category (every category present, zeros included).
        flagged_rows (`list[int]`): indices of the first flagged rows (at most 20), to find them again. Local use
            only: [`to_dict`] leaves them out unless asked, so records that get published hold counts alone.
        columns (`list[str]`): the dataset columns scanned (empty for plain strings).

    Example:

    ```python
    >>> report = scan_texts(["mail jane@example.org", "nothing here"])
    >>> report.counts["email"], report.num_texts_flagged, report.num_secrets
    (1, 1, 0)
    ```
    """

    num_texts: int = 0
    num_texts_flagged: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PATTERNS, 0))
    flagged_rows: list[int] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)

    @property
    def num_secrets(self) -> int:
        return sum(n for name, n in self.counts.items() if PATTERNS[name][0] == "secret")

    @property
    def num_personal(self) -> int:
        return sum(n for name, n in self.counts.items() if PATTERNS[name][0] == "personal")

    @property
    def found_anything(self) -> bool:
        return self.num_texts_flagged > 0

    def add(self, row: int, texts: Iterable[str]) -> None:
        """Scan one row (one or more strings) and add its findings."""
        self.num_texts += 1
        row_hits: dict[str, int] = {}
        for text in texts:
            for name, count in _hits(text).items():
                row_hits[name] = row_hits.get(name, 0) + count
        if row_hits:
            self.num_texts_flagged += 1
            if len(self.flagged_rows) < 20:
                self.flagged_rows.append(row)
            for name, count in row_hits.items():
                self.counts[name] += count

    def to_dict(self, *, include_rows: bool = False) -> dict[str, Any]:
        data = {**asdict(self), "num_secrets": self.num_secrets, "num_personal": self.num_personal}
        if not include_rows:
            data.pop("flagged_rows")
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PrivacyReport:
        counts = {**dict.fromkeys(PATTERNS, 0), **{k: v for k, v in data.get("counts", {}).items() if k in PATTERNS}}
        return cls(num_texts=data.get("num_texts", 0), num_texts_flagged=data.get("num_texts_flagged", 0),
                   counts=counts, flagged_rows=list(data.get("flagged_rows", [])),
                   columns=list(data.get("columns", [])))

    def summary(self) -> str:
        found = ", ".join(f"{n} {name.replace('_', ' ')}" for name, n in self.counts.items() if n) or "nothing"
        return f"{self.num_texts_flagged} of {self.num_texts} texts flagged: {found}"

    def warn_if_found(self, what: str) -> None:
        """Log a warning naming the counts and the first flagged rows when the scan found anything in `what`."""
        if self.found_anything:
            logger.warning(
                "Privacy scan of %s: %s (first flagged rows: %s). This is a regex tripwire: review those rows before "
                "training on or publishing the data.", what, self.summary(), self.flagged_rows,
            )


def scan_texts(texts: Iterable[str]) -> PrivacyReport:
    """Scan strings, one text each, and count findings per category."""
    report = PrivacyReport()
    for row, text in enumerate(texts):
        report.add(row, (text,))
    return report


def _strings(value) -> Iterator[str]:
    """Every string inside a dataset cell: plain text, lists of messages (`content`), nested lists."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item)


def _has_string(feature) -> bool:
    from datasets import Value

    if isinstance(feature, Value):
        return feature.dtype in ("string", "large_string")
    if isinstance(feature, dict):
        return any(_has_string(f) for f in feature.values())
    if isinstance(feature, (list, tuple)):
        return any(_has_string(f) for f in feature)
    inner = getattr(feature, "feature", None)  # datasets.List / Sequence / LargeList
    return inner is not None and _has_string(inner)


# String columns that hold hf_distill's bookkeeping, not text (the hash of the tokenizer of cached logits).
_NOT_TEXT = frozenset({"tokenizer_hash"})


def text_columns(dataset) -> list[str]:
    """The columns of a `datasets.Dataset` that hold strings (plain, in lists, or in message dicts)."""
    features = getattr(dataset, "features", None)
    if features is None:
        return [name for name in getattr(dataset, "column_names", None) or [] if name not in _NOT_TEXT]
    return [name for name, feature in features.items() if name not in _NOT_TEXT and _has_string(feature)]


def scan_dataset(dataset, columns: Iterable[str] | None = None, *, batch_size: int = 1000) -> PrivacyReport:
    """Scan a `datasets.Dataset` in one pass, one row at a time (a row's strings count as one text).

    Args:
        dataset (`datasets.Dataset`): any TRL format: `text`, `prompt`/`completion`, `messages` (every message's
            `content`), or other string columns.
        columns (`list[str]`, *optional*): the columns to scan; every string-bearing column by default. A tokenized
            dataset with no text (cached teacher logits) has none: decode it first to scan it.
        batch_size (`int`, *optional*, defaults to `1000`): rows read from Arrow at once.
    """
    names = list(columns) if columns is not None else text_columns(dataset)
    missing = [c for c in names if c not in dataset.column_names]
    if missing:
        raise PrivacyScanError(f"Columns {missing} are not in the dataset (it has {dataset.column_names}).")
    report = PrivacyReport(columns=names)
    if not names:
        report.num_texts = len(dataset)
        return report
    row = 0
    for batch in dataset.select_columns(names).iter(batch_size=batch_size):
        for values in zip(*(batch[name] for name in names), strict=True):
            report.add(row, _strings(values))
            row += 1
    return report


def scan_generated(dataset) -> PrivacyReport:
    """Scan only the generated part of a prompt/completion dataset (`completion`) or of a conversational one (the
    final assistant turn of `messages`): what a teacher wrote, as opposed to the prompts it was given."""
    if "completion" in dataset.column_names:
        return scan_dataset(dataset, ["completion"])
    if "messages" not in dataset.column_names:
        return scan_dataset(dataset)
    report, row = PrivacyReport(columns=["messages"]), 0
    for batch in dataset.select_columns(["messages"]).iter(batch_size=1000):
        for messages in batch["messages"]:
            last = next((m for m in reversed(messages) if m.get("role") == "assistant"), None)
            report.add(row, () if last is None else _strings(last.get("content")))
            row += 1
    return report


def check_publishable(report: PrivacyReport, *, what: str, allow_private_data: bool = False) -> None:
    """Refuse to publish data with secrets in it unless `allow_private_data=True`."""
    if report.num_secrets and not allow_private_data:
        raise PrivateDataError(
            f"Refusing to publish {what}: the privacy scan found {report.num_secrets} secret(s) ({report.summary()}; "
            f"first rows {report.flagged_rows}). Remove them from the data, or pass `allow_private_data=True` "
            "(--allow_private_data) if they are not real credentials."
        )
