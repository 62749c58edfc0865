"""Where the card templates are: `hf_distill/model_cards/` inside an installed wheel (`pyproject.toml` maps the
repository's top-level `model_cards/` folder there), `model_cards/` at the top of a source checkout."""

from __future__ import annotations

from pathlib import Path

__all__ = ["MODEL_CARDS_DIR"]

_INSTALLED = Path(__file__).resolve().parent / "model_cards"
#: The folder holding the student card, dataset card and Space README templates.
MODEL_CARDS_DIR = _INSTALLED if _INSTALLED.is_dir() else Path(__file__).resolve().parents[1] / "model_cards"
