"""`hf-distill`: one subcommand per step of a distillation, each mapped to the public function that does it.

```
hf-distill quickstart                      # the whole product on a CPU, offline, in minutes
hf-distill generate     --teacher ... --dataset_name ... --output_dir ...   # sequence-level data
hf-distill cache-logits --teacher ... --dataset_name ... --output_dir ...   # offline teacher logits
hf-distill train        --config recipe.yaml                                # DistillationTrainer
hf-distill benchmark    --student ... --teacher ... --dataset_name ...
hf-distill card         --folder student/
hf-distill push         --folder student/ --repo_id me/student
hf-distill space        --student me/student --teacher ... --output_dir space/
```

Every subcommand takes `--config recipe.yaml` (its keys are the options) and `--help`. Errors print one line with
the fix and exit with status 1 (2 for usage errors); `--debug` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .._version import __version__
from . import arguments as cli_args
from . import commands
from .parser import parse_recipe

__all__ = ["COMMANDS", "Command", "main"]


@dataclass(frozen=True)
class Command:
    """A subcommand: its one-line help, the dataclasses its options come from, and the function it calls."""

    help: str
    dataclass_types: Callable[[], tuple[type, ...]]
    run: Callable[..., int]


def _training_types() -> tuple[type, ...]:
    from trl import ModelConfig

    from ..training.config import DistillationConfig

    return (cli_args.TrainScriptArguments, DistillationConfig, ModelConfig)


COMMANDS: dict[str, Command] = {
    "quickstart": Command(
        "Train a teacher, distil a student and compare it with SFT, offline on a CPU; writes card, report and Space.",
        lambda: (cli_args.QuickstartArguments,),
        commands.run_quickstart,
    ),
    "generate": Command(
        "Sequence-level data: the teacher writes completions for a dataset's prompts.",
        lambda: (cli_args.GenerateArguments,),
        commands.run_generate,
    ),
    "cache-logits": Command(
        "Offline teacher: store the teacher's top-k log-probabilities so training needs no teacher.",
        lambda: (cli_args.CacheLogitsArguments,),
        commands.run_cache_logits,
    ),
    "train": Command(
        "Distil with DistillationTrainer (options: DistillationConfig and TRL's ModelConfig).",
        _training_types,
        commands.run_train,
    ),
    "benchmark": Command(
        "Student vs teacher (and a baseline): quality, fidelity, latency and size.",
        lambda: (cli_args.BenchmarkArguments,),
        commands.run_benchmark,
    ),
    "card": Command(
        "Write the model card of a saved student from its provenance and benchmark report.",
        lambda: (cli_args.CardArguments,),
        commands.run_card,
    ),
    "push": Command(
        "Publish a saved student with its card, licence files and provenance in one commit.",
        lambda: (cli_args.PushArguments,),
        commands.run_push,
    ),
    "space": Command(
        "Write (and push) a Gradio Space comparing the student with its teacher.",
        lambda: (cli_args.SpaceArguments,),
        commands.run_space,
    ),
}


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hf-distill",
        description="Distil LLMs into small students on the Hugging Face stack. "
        "`hf-distill <command> --help` lists a command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Start with `hf-distill quickstart`: it runs offline on a laptop CPU in minutes.",
    )
    parser.add_argument("--debug", action="store_true", help="Show full tracebacks instead of one-line errors.")
    parser.add_argument("--version", action="version", version=f"hf-distill {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="<command>")
    for name, command in COMMANDS.items():
        subparsers.add_parser(name, help=command.help, add_help=False)
    return parser


def _one_line(error: BaseException) -> str:
    """The error as `ErrorType: message`, without the traceback (our messages already carry the fix)."""
    message = str(error).strip() or repr(error)
    return message if isinstance(error, ValueError) else f"{type(error).__name__}: {message}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run `hf-distill`; returns the exit status (0 ok, 1 error, 2 usage error, 130 interrupted)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    parser = _top_parser()
    if not argv or argv[0] not in COMMANDS:
        parser.parse_args(argv)  # prints help / version / the usage error and exits
        parser.print_help()
        return 2
    name, rest = argv[0], argv[1:]
    command = COMMANDS[name]
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    if debug:
        logging.getLogger("hf_distill").setLevel(logging.INFO)
    try:
        parsed = parse_recipe(command.dataclass_types(), rest, prog=f"hf-distill {name}", description=command.help)
        return command.run(*parsed)
    except KeyboardInterrupt:
        print(f"hf-distill {name}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # one clear line, not a traceback; --debug shows it
        if debug:
            raise
        print(f"hf-distill {name}: error: {_one_line(error)}", file=sys.stderr)
        print("(run again with --debug for the full traceback)", file=sys.stderr)
        return 1
