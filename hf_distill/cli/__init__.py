"""The `hf-distill` command line: `main()` is the console script (`hf-distill = "hf_distill.cli:main"`)."""

from .arguments import (
    BenchmarkArguments,
    CacheLogitsArguments,
    CardArguments,
    DatasetArguments,
    GenerateArguments,
    PushArguments,
    QuickstartArguments,
    SpaceArguments,
    TrainScriptArguments,
)
from .commands import CliUsageError, load_dataset_argument
from .main import COMMANDS, main
from .parser import RecipeError, make_parser, parse_recipe

__all__ = [
    "COMMANDS",
    "BenchmarkArguments",
    "CacheLogitsArguments",
    "CardArguments",
    "CliUsageError",
    "DatasetArguments",
    "GenerateArguments",
    "PushArguments",
    "QuickstartArguments",
    "RecipeError",
    "SpaceArguments",
    "TrainScriptArguments",
    "load_dataset_argument",
    "main",
    "make_parser",
    "parse_recipe",
]
