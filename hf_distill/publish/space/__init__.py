"""Gradio Space demos of a distilled student beside its teacher: `create_space` writes (and pushes) the Space.

`app_template.py` is the app itself, copied verbatim into the Space as `app.py`; it imports nothing from hf_distill.
"""

from .create import HARDWARE, SpaceResult, create_space
from .errors import SpaceConfigError, SpaceCreationError

__all__ = ["HARDWARE", "SpaceConfigError", "SpaceCreationError", "SpaceResult", "create_space"]
