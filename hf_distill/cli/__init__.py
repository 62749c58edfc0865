"""The `hf-distill` command line: `main()` is the console script (`hf-distill = "hf_distill.cli:main"`).

Public beside `main`: what a training script needs to read the same recipes and datasets as `hf-distill train`
(`TrainScriptArguments`, `DatasetArguments`, `parse_recipe`, `load_dataset_argument`; see `examples/`). The
subcommands' option classes, `COMMANDS` and `make_parser` stay importable here but are the command line's own.
"""

# Names marked F401 are the command line's own: importable here as before, not in `__all__`.
from .arguments import (
    BenchmarkArguments,  # noqa: F401
    CacheLogitsArguments,  # noqa: F401
    CardArguments,  # noqa: F401
    DatasetArguments,
    GenerateArguments,  # noqa: F401
    PushArguments,  # noqa: F401
    QuickstartArguments,  # noqa: F401
    SpaceArguments,  # noqa: F401
    TrainScriptArguments,
)
from .commands import CliUsageError, load_dataset_argument
from .main import COMMANDS, main  # noqa: F401 (COMMANDS)
from .parser import RecipeError, make_parser, parse_recipe  # noqa: F401 (make_parser)

__all__ = [
    "CliUsageError",
    "DatasetArguments",
    "RecipeError",
    "TrainScriptArguments",
    "load_dataset_argument",
    "main",
    "parse_recipe",
]
