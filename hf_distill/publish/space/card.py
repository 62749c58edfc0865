"""The Space's `README.md`: YAML metadata from `SpaceCardData`, text from `model_cards/space_readme.md`."""

from __future__ import annotations

from huggingface_hub import SpaceCard, SpaceCardData

from ..._version import __version__
from ...templates import MODEL_CARDS_DIR
from .requirements import GRADIO_SDK_VERSION, python_version
from .sources import ModelSource

TEMPLATE = MODEL_CARDS_DIR / "space_readme.md"
EMOJI = "⚗️"  # an alembic: distillation
COLOR_FROM, COLOR_TO = "indigo", "purple"
MAX_SHORT_DESCRIPTION = 60  # the Hub rejects longer `short_description`s
MAX_TITLE = 60
TAGS = ["hf-distill", "distillation", "knowledge-distillation", "text-generation"]


def _short_name(source: ModelSource) -> str:
    return source.hub_id.split("/")[-1] if source.hub_id else source.local_path.resolve().name


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def default_title(student: ModelSource, teacher: ModelSource | None) -> str:
    """`"<student> vs <teacher>"`, or `"<student> demo"` without a teacher, clipped to the Hub's length."""
    if teacher is None:
        return _clip(f"{_short_name(student)} demo", MAX_TITLE)
    return _clip(f"{_short_name(student)} vs {_short_name(teacher)}", MAX_TITLE)


def short_description(student: ModelSource, teacher: ModelSource | None) -> str:
    if teacher is None:
        return _clip(f"Try the distilled {_short_name(student)}", MAX_SHORT_DESCRIPTION)
    return _clip(f"Distilled {_short_name(student)} beside {_short_name(teacher)}", MAX_SHORT_DESCRIPTION)


def _link(source: ModelSource) -> str:
    if source.hub_id:
        return f"[`{source.hub_id}`](https://huggingface.co/{source.hub_id})"
    return f"`{source.local_path.resolve().name}` (a local folder)"


def build_space_card(
    *,
    student: ModelSource,
    teacher: ModelSource | None,
    title: str,
    hardware: str,
    license: dict,
    benchmark: str | None,
    max_new_tokens: int | None,
) -> SpaceCard:
    """The README of the Space.

    `models` lists Hub ids only (a local folder means nothing to the Hub) and `preload_from_hub` downloads them
    when the Space is built, so the first visitor does not wait for the download.
    """
    hub_ids = [source.hub_id for source in (student, teacher) if source is not None and source.hub_id]
    data = SpaceCardData(
        title=title,
        sdk="gradio",
        sdk_version=GRADIO_SDK_VERSION,
        python_version=python_version(),
        app_file="app.py",
        models=hub_ids or None,
        tags=list(TAGS),
        emoji=EMOJI,
        colorFrom=COLOR_FROM,
        colorTo=COLOR_TO,
        short_description=short_description(student, teacher),
        suggested_hardware=hardware,
        preload_from_hub=list(hub_ids) or None,  # a copy: a shared list would be written as a YAML anchor
        pinned=False,
        **license,
    )
    return SpaceCard.from_template(
        data,
        template_str=TEMPLATE.read_text(encoding="utf-8"),
        student=student.hub_id or student.value,
        teacher=(teacher.hub_id or teacher.value) if teacher is not None else None,
        student_link=_link(student),
        teacher_link=_link(teacher) if teacher is not None else None,
        benchmark=benchmark,
        max_new_tokens=max_new_tokens,
        hf_distill_version=__version__,
    )
