"""Students built from their teacher: `init_student` keeps a subset of the teacher's layers (the DistilBERT and
Minitron starting point) and writes the layer map into the student's config and `student_init.json`."""

from .._lazy import lazy_namespace

_EXPORTS = {
    "INIT_CONFIG_KEY": ".init",
    "INIT_PROVENANCE_FILE": ".record",
    "LAYER_STRATEGIES": ".layers",
    "StudentInitError": ".layers",
    "init_student": ".init",
    "select_layers": ".layers",
    "student_config": ".init",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_namespace(__name__, _EXPORTS)
