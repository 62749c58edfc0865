"""Where the Space's models come from (a local folder or a Hub id), and what their cards say: licence, benchmark."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import ModelCard

from ...benchmark import BenchmarkReport
from ..repo import PushError, validate_repo_id
from .app_template import extract_benchmark_markdown

logger = logging.getLogger(__name__)

# Rendered tables first; a JSON report is rendered with hf_distill.benchmark.BenchmarkReport.
BENCHMARK_FILES = (
    "benchmark_report.md",
    "benchmark.md",
    "benchmark/report.json",
    "benchmark_report.json",
    "benchmark.json",
)


@dataclass
class ModelSource:
    """A model the Space loads.

    Args:
        value (`str`): As given by the user.
        local_path (`Path`, *optional*): The folder, when `value` is a local folder.
        hub_id (`str`, *optional*): The Hub id, when `value` is not a local folder.
    """

    value: str
    local_path: Path | None = None
    hub_id: str | None = None

    @property
    def is_adapter(self) -> bool | None:
        """Whether it is a PEFT adapter; `None` when unknown (a Hub repo that cannot be reached)."""
        if self.local_path is not None:
            return (self.local_path / "adapter_config.json").is_file()
        try:
            from huggingface_hub import file_exists

            return file_exists(self.hub_id, "adapter_config.json")
        except Exception:  # offline or gated: unknown
            return None

    @property
    def app_value(self) -> str:
        """What the app loads: the Hub id, or the absolute folder (a local folder only runs on this machine)."""
        return self.hub_id or str(self.local_path.resolve())

    def card(self, token: str | bool | None = None) -> ModelCard | None:
        """The model's card: the folder's README.md, or the Hub card when reachable; `None` otherwise."""
        try:
            if self.local_path is not None:
                readme = self.local_path / "README.md"
                return ModelCard.load(readme) if readme.is_file() else None
            return ModelCard.load(self.hub_id, token=token)
        except Exception as error:  # offline, missing or unreadable card: the caller falls back
            logger.info("No model card for %s: %s", self.value, error)
            return None


def resolve_model_source(value, *, role: str) -> tuple[ModelSource | None, str | None]:
    """`(source, None)` for a usable local folder or Hub id, else `(None, problem)` naming the argument and the fix."""
    if not isinstance(value, (str, Path)) or not str(value).strip():
        return None, f"`{role}` must be a Hub id or a local model folder, got {value!r}."
    path = Path(value).expanduser()
    if path.exists():
        if not path.is_dir() or not any((path / name).is_file() for name in ("config.json", "adapter_config.json")):
            return None, (
                f"`{role}`={str(value)!r} is a local path but not a model folder (no config.json or "
                "adapter_config.json): pass the folder written by `save_pretrained`, or a Hub id."
            )
        return ModelSource(str(value), local_path=path), None
    try:
        hub_id = validate_repo_id(str(value), argument=role)
    except PushError as error:
        return None, f"`{role}`={str(value)!r} is neither a local folder nor a valid Hub id: {error}"
    return ModelSource(str(value), hub_id=hub_id), None


def card_license(card: ModelCard | None) -> dict:
    """`license` (and `license_name`/`license_link` for `other`) from a card's metadata; empty when absent."""
    if card is None:
        return {}
    data = card.data.to_dict()
    return {key: data[key] for key in ("license", "license_name", "license_link") if data.get(key)}


def benchmark_markdown(benchmark, student: ModelSource, card: ModelCard | None) -> str | None:
    """The benchmark table shown by the app, from (first match) the `benchmark` argument, a benchmark file in the
    student's folder, or a benchmark/evaluation section of the student's card.

    Args:
        benchmark (`BenchmarkReport`, `str`, `Path` or `None`): Anything with `to_markdown()`, or a `.md`/`.json` file.
        student (`ModelSource`): The student, whose folder may hold one of `BENCHMARK_FILES`.
        card (`ModelCard`, *optional*): The student's card.
    """
    if benchmark is not None:
        return _markdown_of(benchmark)
    if student.local_path is not None:
        for name in BENCHMARK_FILES:
            if (student.local_path / name).is_file():
                return _markdown_of(student.local_path / name)
    return extract_benchmark_markdown(card.content) if card is not None else None


def _markdown_of(benchmark) -> str:
    if hasattr(benchmark, "to_markdown"):  # a BenchmarkReport, or anything shaped like one
        return benchmark.to_markdown()
    path = Path(benchmark)
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        return BenchmarkReport.from_json(text).to_markdown()
    return extract_benchmark_markdown(text) or text.strip()
