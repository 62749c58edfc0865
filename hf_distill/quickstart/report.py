"""The quickstart's comparison table (task accuracy, divergence to the teacher, agreement, latency, size) and the
sentences that say what it shows, both computed from the benchmark report: whatever it measured, it prints."""

from __future__ import annotations

from typing import Any

__all__ = ["comparison_rows", "format_table", "verdict_lines"]

_ROLES = (("teacher", "teacher"), ("student", "distilled student"), ("baseline", "SFT student"))
_COLUMNS = (
    ("model", "model", "{}"),
    ("task_accuracy", "task acc.", "{:.3f}"),
    ("forward_kl", "KL(teacher||model)", "{:.4f}"),
    ("top1_agreement", "top-1 agree", "{:.3f}"),
    ("cross_entropy", "held-out CE", "{:.3f}"),
    ("ms_per_token", "ms/token (bs 1)", "{:.2f}"),
    ("num_parameters", "params", "{:,}"),
    ("disk_mb", "disk MB", "{:.2f}"),
)


def comparison_rows(report, accuracy_key: str) -> list[dict[str, Any]]:
    """One dict per model present in `report` (teacher, distilled student, SFT student), with the table's columns."""
    rows = []
    for role, label in _ROLES:
        model = getattr(report, role)
        if model is None:
            continue
        latency = next((r for r in model.cost.latency if r.batch_size == 1), None)
        tokens_per_second = latency.tokens_per_second.median if latency is not None else None
        rows.append(
            {
                "role": role,
                "model": label,
                "task_accuracy": model.quality.task_metrics.get(accuracy_key),
                "forward_kl": model.fidelity.forward_kl if model.fidelity else (0.0 if role == "teacher" else None),
                "top1_agreement": model.fidelity.top1_agreement
                if model.fidelity
                else (1.0 if role == "teacher" else None),
                "cross_entropy": model.quality.cross_entropy,
                "ms_per_token": 1000.0 / tokens_per_second if tokens_per_second else None,
                "num_parameters": model.cost.num_parameters,
                "disk_mb": model.cost.disk_bytes / 1e6,
            }
        )
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """A fixed-width text table of `rows` (missing values shown as `-`)."""
    cells = [[title for _, title, _ in _COLUMNS]]
    for row in rows:
        cells.append([fmt.format(row[key]) if row.get(key) is not None else "-" for key, _, fmt in _COLUMNS])
    widths = [max(len(line[i]) for line in cells) for i in range(len(_COLUMNS))]

    def render(line: list[str]) -> str:
        padded = [line[0].ljust(widths[0])] + [cell.rjust(w) for cell, w in zip(line[1:], widths[1:], strict=True)]
        return "  ".join(padded)

    lines = [render(line) for line in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _compare(name: str, distilled: float | None, sft: float | None, *, lower_is_better: bool) -> str | None:
    if distilled is None or sft is None:
        return None
    if abs(distilled - sft) <= 1e-3 * max(abs(distilled), abs(sft), 1e-9):
        return f"- {name}: the distilled and SFT students tie ({distilled:.4g})."
    winner = "distilled" if (distilled < sft) == lower_is_better else "SFT"
    return f"- {name}: the {winner} student is better ({distilled:.4g} distilled vs {sft:.4g} SFT)."


def verdict_lines(rows: list[dict[str, Any]]) -> list[str]:
    """What the table shows, distilled vs SFT student, metric by metric, as measured (no claim is assumed)."""
    by_role = {row["role"]: row for row in rows}
    distilled, sft = by_role.get("student"), by_role.get("baseline")
    if distilled is None or sft is None:
        return []
    lines = ["Distilled vs SFT student (same architecture, data, initial weights and steps):"]
    for key, name, lower in (
        ("forward_kl", "divergence to the teacher (lower is closer)", True),
        ("top1_agreement", "top-1 agreement with the teacher", False),
        ("task_accuracy", "task accuracy (any valid answer)", False),
        ("cross_entropy", "held-out cross-entropy of the sampled answers", True),
    ):
        line = _compare(name, distilled.get(key), sft.get(key), lower_is_better=lower)
        if line:
            lines.append(line)
    return lines
