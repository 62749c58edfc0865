"""Argument parsing for `hf-distill`: TRL's `TrlParser` (an `HfArgumentParser` with `--config recipe.yaml`), so a
subcommand's options are its dataclasses' fields and their `help` metadata."""

from __future__ import annotations

import difflib
import logging
import os
import types
from argparse import ArgumentDefaultsHelpFormatter, Namespace, RawDescriptionHelpFormatter
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

from ..errors import HfDistillError
from .registry import COMMANDS

__all__ = ["RecipeError", "closest_options", "make_parser", "parse_recipe", "pipeline_options"]

logger = logging.getLogger(__name__)


class _HelpFormatter(RawDescriptionHelpFormatter, ArgumentDefaultsHelpFormatter):
    """Keeps the description's line breaks and shows each option's default."""


class RecipeError(HfDistillError, ValueError):
    """A `--config` recipe cannot be read or holds keys no option of the command knows."""


def make_parser(dataclass_types: Sequence[type], *, prog: str, description: str | None = None):
    """A `trl.TrlParser` over `dataclass_types`: one `--field` per dataclass field (help from its metadata, default
    shown) plus `--config PATH` whose YAML mapping replaces the defaults (command-line flags still win).

    Options are grouped (`help_groups`): the distillation options first, then the script's, then TRL's and
    transformers' training options, so `--help` opens on what is particular to distillation. A usage error (a bad
    choice, a missing value) prints one line and the way to the help, not the usage of hundreds of options."""
    from trl import TrlParser

    parser = TrlParser(
        list(dataclass_types), prog=prog, description=description, formatter_class=_HelpFormatter,
        usage=f"{prog} [--config RECIPE.yaml] [--option value ...]   (`{prog} --help` lists the options)",
    )
    parser.add_argument(
        "--config",
        metavar="RECIPE.yaml",
        help="YAML recipe whose keys are any of the options below; flags given on the command line override it. "
        "Keys that are options of another hf-distill command (one recipe can drive `cache-logits` or `generate` "
        "and `train`) are ignored by this one. An `env:` mapping in the recipe sets environment variables.",
    )
    parser.error = types.MethodType(_one_line_usage_error, parser)
    group_options(parser, dataclass_types)
    return parser


def _one_line_usage_error(parser, message: str):
    """argparse's `error` without the usage block: the error and where the options are listed; exit status 2."""
    parser.exit(2, f"{parser.prog}: error: {message}\n(`{parser.prog} --help` lists every option)\n")


def parse_recipe(
    dataclass_types: Sequence[type],
    argv: Sequence[str] | None = None,
    *,
    prog: str = "hf-distill",
    description: str | None = None,
):
    """Parse `argv` (with an optional `--config recipe.yaml`) into one instance of each of `dataclass_types`.

    Raises [`RecipeError`] when the recipe is missing, is not a YAML mapping, or holds keys that are no option of
    any `hf-distill` command (each named, with the closest options), and when a command-line flag is no option of
    this command. Recipe keys that belong to another command are ignored (logged at debug level).

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
    options = {action.dest for action in parser._actions} - {"help", "config"}
    if "--config" in argv:
        index = argv.index("--config")
        recipe = _read_recipe(argv[index + 1] if index + 1 < len(argv) else None, prog)
        del argv[index : index + 2]
        for key, value in (recipe.pop("env", None) or {}).items():
            os.environ[key] = str(value)
        _check_recipe_keys(recipe, options, argv_path=str(parser.prog), prog=prog)
        foreign = sorted(set(recipe) - options)
        if foreign:
            logger.info("%s ignores the recipe keys of other hf-distill commands: %s", prog, ", ".join(foreign))
        parser.set_defaults_with_config(**{key: value for key, value in recipe.items() if key in options})
    *parsed, remaining = parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=True)
    flags = [item for item in remaining if item.startswith("--")]
    if remaining:
        unknown = ", ".join(_with_hint(flag.split("=", 1)[0], options, prefix="--") for flag in flags or remaining)
        raise RecipeError(f"`{prog}` has no option {unknown}; `{prog} --help` lists every option.")
    # HfArgumentParser returns the non-field flags (`--config`) as a Namespace.
    return tuple(item for item in parsed if not isinstance(item, Namespace))


def _read_recipe(path_text: str | None, prog: str) -> dict:
    """The recipe's mapping; a missing path, file, YAML syntax or mapping fails with one clear line."""
    if path_text is None:
        raise RecipeError(f"`--config` needs a path: `{prog} --config recipe.yaml`.")
    path = Path(path_text)
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
    return content


def _check_recipe_keys(recipe: dict, options: set[str], *, argv_path: str, prog: str) -> None:
    """Keys that are no option of this command nor of any other `hf-distill` command are typos: refuse them."""
    unknown = sorted(set(recipe) - options - pipeline_options())
    if unknown:
        hints = ", ".join(_with_hint(key, options | pipeline_options()) for key in unknown)
        raise RecipeError(
            f"The recipe has keys that are no option of `{prog}` (nor of any hf-distill command): {hints}. Fix or "
            f"remove them; `{prog} --help` lists every option."
        )


def pipeline_options() -> set[str]:
    """Every option name of every `hf-distill` command: the vocabulary one recipe may use across the pipeline."""
    return {f.name for command in COMMANDS.values() for cls in command.dataclass_types() for f in fields(cls)}


def closest_options(name: str, options: set[str], n: int = 2) -> list[str]:
    """The options a user most likely meant by `name`: first those whose words start with `name`'s words
    (`teacher` -> `teacher_model_name_or_path`), then spelling neighbours (`learnig_rate` -> `learning_rate`)."""
    words = name.lower().strip("-").replace("-", "_").split("_")

    def starts_with_words(option: str) -> bool:
        parts = option.split("_")
        return any(
            all(parts[i + j].startswith(word) for j, word in enumerate(words))
            for i in range(len(parts) - len(words) + 1)
        )

    by_words = sorted((o for o in options if starts_with_words(o)), key=lambda o: (not o.startswith(words[0]), o))
    by_spelling = difflib.get_close_matches(name, options, n=n, cutoff=0.75)
    ranked = [o for o in by_spelling if o in by_words] + by_words + by_spelling
    return list(dict.fromkeys(ranked))[:n]


def _with_hint(name: str, options: set[str], prefix: str = "") -> str:
    close = closest_options(name.lstrip("-"), options)
    hint = " or ".join(f"{prefix}{option}" if prefix else repr(option) for option in close)
    return f"{name!r}" + (f" (did you mean {hint}?)" if close else "")


def group_options(parser, dataclass_types: Sequence[type]) -> None:
    """Move each option into a titled help group, in `help_groups` order (distillation first)."""
    groups = help_groups(dataclass_types)
    default_group = parser._optionals
    for title, names in groups:
        group = parser.add_argument_group(title)
        moved = [a for a in default_group._group_actions if a.dest in names]
        group._group_actions.extend(moved)
        default_group._group_actions[:] = [a for a in default_group._group_actions if a not in moved]
    # argparse prints groups in creation order: the titled ones first, the rest (help, --config) last.
    parser._action_groups.remove(default_group)
    parser._action_groups.append(default_group)


def help_groups(dataclass_types: Sequence[type]) -> list[tuple[str, set[str]]]:
    """(title, option names) of each group: a dataclass's own fields, its parents' (TRL, transformers) after them."""
    from dataclasses import fields

    own, inherited = [], []
    for cls in dataclass_types:
        parent = next((base for base in cls.__mro__[1:] if hasattr(base, "__dataclass_fields__")), None)
        names = {f.name for f in fields(cls)}
        if parent is None or parent.__module__.split(".")[0] == "hf_distill":
            own.append((cls.__name__, names))
            continue
        parent_names = {f.name for f in fields(parent)}
        # a subclass of a TRL config (DistillationConfig): its own fields lead the help
        own.insert(0, (f"{cls.__name__}: what this library adds", names - parent_names))
        inherited.append((f"{parent.__name__}: TRL and transformers training options", names & parent_names))
    return [group for group in own + inherited if group[1]]
