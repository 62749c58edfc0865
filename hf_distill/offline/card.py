"""`README.md` dataset cards for the datasets hf_distill writes: Hub metadata in the YAML header (with the run's
settings under one `hf_distill` key), and a body that says what the dataset is and how to use it."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from huggingface_hub import DatasetCard, DatasetCardData
from jinja2 import Template

from ..privacy import PrivacyReport
from ..templates import MODEL_CARDS_DIR

__all__ = ["privacy_section", "write_dataset_card"]

_TEMPLATE = Template((MODEL_CARDS_DIR / "dataset_card.md.jinja").read_text(encoding="utf-8"))


def write_dataset_card(
    output_dir: str | os.PathLike,
    *,
    title: str,
    summary: str,
    function: str,
    settings: dict,
    usage: str,
    tags: list[str],
    privacy: Mapping[str, PrivacyReport] | None = None,
) -> DatasetCard:
    """Write `output_dir/README.md` and return it (parsed back, so the YAML is known to be valid).

    Args:
        title (`str`): the card's heading.
        summary (`str`): one paragraph on what the dataset holds.
        function (`str`): the hf_distill call that made it.
        settings (`dict`): the run's settings and statistics; stored under the `hf_distill` metadata key and shown
            as the provenance table.
        usage (`str`): a Python snippet.
        tags (`list[str]`): Hub tags besides `hf-distill` and `distillation`.
        privacy (`dict[str, PrivacyReport]`, *optional*): privacy scans by what was scanned (e.g. `"generated
            completions"`): counts go under `hf_distill.privacy_scan` and in a "Privacy scan" section.
    """
    if privacy:
        settings = {**settings, "privacy_scan": {scope: report.to_dict() for scope, report in privacy.items()}}
    card_data = DatasetCardData(tags=["hf-distill", "distillation", *tags], hf_distill=settings)
    fields = [(key, value) for key, value in sorted(settings.items()) if not isinstance(value, dict)]
    text = _TEMPLATE.render(
        card_data=card_data.to_yaml(), title=title, summary=summary, function=function, fields=fields, usage=usage,
        privacy=privacy_section(privacy) if privacy else "",
    )
    path = Path(output_dir) / "README.md"
    path.write_text(text)
    return DatasetCard.load(path)


def privacy_section(privacy: Mapping[str, PrivacyReport], *, heading: str = "Privacy scan") -> str:
    """A Markdown section with one row of counts per scan: rows scanned and flagged, personal data, secrets."""
    lines = [
        f"## {heading}", "",
        "A regex tripwire for e-mail addresses, phone numbers, IP addresses and credential patterns (API keys,",
        "tokens, private-key blocks, `password = ...`), not a guarantee. Counts only; no text is copied here.", "",
        "| text scanned | rows | rows flagged | e-mail | phone | IP address | secrets |",
        "|---|---|---|---|---|---|---|",
    ]
    for scope, report in privacy.items():
        personal = [f"{report.counts[name]:,}" for name in ("email", "phone", "ip_address")]
        lines.append(f"| {scope} | {report.num_texts:,} | {report.num_texts_flagged:,} | {' | '.join(personal)} | "
                     f"{report.num_secrets:,} |")
    return "\n".join(lines) + "\n"
