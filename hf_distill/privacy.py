"""Scan training data and generated text for personal data and secrets before they are trained on or published.

The scan is a set of regular expressions: it finds well-formed e-mail addresses, phone numbers, IP addresses and
credentials with a recognisable shape (Hugging Face, OpenAI, AWS, GitHub, Slack, Google keys, private-key blocks,
`password = ...` assignments). It is a tripwire, not a guarantee: counts go into the provenance and the model card,
and publishing data with secrets in it is refused unless the caller overrides it explicitly.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field

__all__ = ["PATTERNS", "PrivacyReport", "PrivateDataError", "check_publishable", "scan_dataset", "scan_texts"]

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


class PrivateDataError(ValueError):
    """Data about to be published contains secrets."""


@dataclass
class PrivacyReport:
    """Counts of what the scan found.

    Args:
        num_texts (`int`): strings scanned.
        num_texts_flagged (`int`): strings with at least one finding.
        counts (`dict[str, int]`): findings per category (every category present, zeros included).
        flagged_rows (`list[int]`): indices of the first flagged rows (at most 20), to find them again.
    """

    num_texts: int = 0
    num_texts_flagged: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PATTERNS, 0))
    flagged_rows: list[int] = field(default_factory=list)

    @property
    def num_secrets(self) -> int:
        return sum(n for name, n in self.counts.items() if PATTERNS[name][0] == "secret")

    @property
    def num_personal(self) -> int:
        return sum(n for name, n in self.counts.items() if PATTERNS[name][0] == "personal")

    def to_dict(self) -> dict:
        return {**asdict(self), "num_secrets": self.num_secrets, "num_personal": self.num_personal}

    def summary(self) -> str:
        found = ", ".join(f"{n} {name.replace('_', ' ')}" for name, n in self.counts.items() if n) or "nothing"
        return f"{self.num_texts_flagged} of {self.num_texts} texts flagged: {found}"


def scan_texts(texts: Iterable[tuple[int, str]] | Iterable[str]) -> PrivacyReport:
    """Scan strings (or `(row index, string)` pairs) and count findings per category."""
    report = PrivacyReport()
    for position, item in enumerate(texts):
        row, text = item if isinstance(item, tuple) else (position, item)
        report.num_texts += 1
        hits = {name: len(pattern.findall(text)) for name, (_, pattern) in PATTERNS.items()}
        if any(hits.values()):
            report.num_texts_flagged += 1
            if len(report.flagged_rows) < 20 and row not in report.flagged_rows:
                report.flagged_rows.append(row)
            for name, n in hits.items():
                report.counts[name] += n
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


def scan_dataset(dataset, columns: Iterable[str] | None = None) -> PrivacyReport:
    """Scan the text columns of a `datasets.Dataset` (`text`, `prompt`, `completion`, `messages`, ... by default
    every string-bearing column)."""
    names = list(columns) if columns is not None else list(dataset.column_names)
    missing = [c for c in names if c not in dataset.column_names]
    if missing:
        raise ValueError(f"Columns {missing} are not in the dataset (it has {dataset.column_names}).")
    return scan_texts(
        (row, text) for row, example in enumerate(dataset.select_columns(names)) for text in _strings(example)
    )


def check_publishable(report: PrivacyReport, *, what: str, allow_private_data: bool = False) -> None:
    """Refuse to publish data with secrets in it unless `allow_private_data=True`."""
    if report.num_secrets and not allow_private_data:
        raise PrivateDataError(
            f"Refusing to publish {what}: the privacy scan found {report.num_secrets} secret(s) ({report.summary()}; "
            f"first rows {report.flagged_rows}). Remove them from the data, or pass `allow_private_data=True` "
            "(--allow-private-data) if they are not real credentials."
        )
