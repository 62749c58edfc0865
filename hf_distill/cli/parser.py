"""Argument parsing for `hf-distill`: TRL's `TrlParser` (an `HfArgumentParser` with `--config recipe.yaml`), so a
subcommand's options are its dataclasses' fields and their `help` metadata."""

from __future__ import annotations

import difflib
from argparse import ArgumentDefaultsHelpFormatter, Namespace, RawDescriptionHelpFormatter
from collections.abc import Sequence
from pathlib import Path

from ..errors import HfDistillError

__all__ = ["RecipeError", "make_parser", "parse_recipe"]


class _HelpFormatter(RawDescriptionHelpFormatter, ArgumentDefaultsHelpFormatter):
    """Keeps the description's line breaks and shows each option's default."""


class RecipeError(HfDistillError, ValueError):
    """A `--config` recipe cannot be read or holds keys no option of the command knows."""


def make_parser(dataclass_types: Sequence[type], *, prog: str, description: str | None = None):
    """A `trl.TrlParser` over `dataclass_types`: one `--field` per dataclass field (help from its metadata, default
    shown) plus `--config PATH` whose YAML mapping replaces the defaults (command-line flags still win)."""
    from trl import TrlParser

    parser = TrlParser(list(dataclass_types), prog=prog, description=description, formatter_class=_HelpFormatter)
    parser.add_argument(
        "--config",
        metavar="RECIPE.yaml",
        help="YAML recipe whose keys are any of the options below; flags given on the command line override it. "
        "An `env:` mapping in the recipe sets environment variables.",
    )
    return parser


def parse_recipe(
    dataclass_types: Sequence[type],
    argv: Sequence[str] | None = None,
    *,
    prog: str = "hf-distill",
    description: str | None = None,
):
    """Parse `argv` (with an optional `--config recipe.yaml`) into one instance of each of `dataclass_types`.

    Raises [`RecipeError`] when the recipe is missing, is not a YAML mapping, or holds keys that are no option (each
    named, with the closest option).

    Example:

    ```python
    >>> from trl import ModelConfig
    >>> from hf_distill import DistillationConfig
    >>> from hf_distill.cli import TrainScriptArguments, parse_recipe
    >>> script, config, model = parse_recipe(
    ...     (TrainScriptArguments, DistillationConfig, ModelConfig),
    ...     ["--config", "examples/configs/qwen2.5-0.5b_from_qwen2.5-1.5b.yaml", "--max_steps", "10"],
    ... )
    ```
    """
    argv = list(argv or [])
    parser = make_parser(dataclass_types, prog=prog, description=description)
    _check_recipe(argv, parser, prog)
    parsed = parser.parse_args_and_config(argv)
    # `--config` itself is consumed by TrlParser; HfArgumentParser returns the other non-field flags as a Namespace.
    return tuple(item for item in parsed if not isinstance(item, Namespace))


def _check_recipe(argv: list[str], parser, prog: str) -> None:
    """Fail with one clear line on a missing, malformed or misspelled recipe, before anything is parsed."""
    if "--config" not in argv:
        return
    index = argv.index("--config")
    if index + 1 >= len(argv):
        raise RecipeError(f"`--config` needs a path: `{prog} --config recipe.yaml`.")
    path = Path(argv[index + 1])
    if not path.is_file():
        raise RecipeError(
            f"Recipe {str(path)!r} does not exist. Pass the path of a YAML file (see examples/configs/)."
        )
    import yaml

    try:
        content = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise RecipeError(
            f"Recipe {str(path)!r} is not valid YAML ({type(error).__name__}); fix its syntax."
        ) from error
    if not isinstance(content, dict):
        raise RecipeError(
            f"Recipe {str(path)!r} must be a YAML mapping of option names to values, got {type(content).__name__}."
        )
    options = {action.dest for action in parser._actions} - {"help", "config"}
    unknown = sorted(set(content) - options - {"env"})
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, options, n=1)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise RecipeError(
            f"Recipe {str(path)!r} has keys that are no option of `{prog}`: {', '.join(hints)}. Fix or remove them; "
            f"`{prog} --help` lists every option."
        )
