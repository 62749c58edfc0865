"""Students built from their teacher: `init_student` keeps a subset of the teacher's layers (the DistilBERT and
Minitron starting point) and writes the layer map into the student's config and `student_init.json`."""

from .init import INIT_CONFIG_KEY, init_student, student_config
from .layers import LAYER_STRATEGIES, StudentInitError, select_layers
from .record import INIT_PROVENANCE_FILE

__all__ = [
    "INIT_CONFIG_KEY", "INIT_PROVENANCE_FILE", "LAYER_STRATEGIES", "StudentInitError", "init_student",
    "select_layers", "student_config",
]
