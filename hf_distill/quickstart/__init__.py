"""`hf-distill quickstart`: the whole product offline on a CPU in minutes.

A deterministic, licence-clean task dataset (`tasks`), a tokenizer trained on it (`models`), a cached teacher, a
distilled student and an SFT student trained alike (`training`), benchmarked together and written out with the
student's card, plots, provenance and a Space (`pipeline.run_quickstart`).
"""

from .errors import QuickstartError, QuickstartStageError
from .pipeline import QuickstartResult, run_quickstart
from .presets import PRESETS, QuickstartPreset
from .tasks import TASKS, answer_is_valid, build_task_dataset

__all__ = [
    "PRESETS",
    "TASKS",
    "QuickstartError",
    "QuickstartPreset",
    "QuickstartResult",
    "QuickstartStageError",
    "answer_is_valid",
    "build_task_dataset",
    "run_quickstart",
]
