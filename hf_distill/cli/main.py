"""`hf-distill`: one subcommand per step of a distillation, each mapped to the public function that does it.

```
hf-distill quickstart                      # the whole product on a CPU, offline, in minutes
hf-distill generate     --teacher ... --dataset_name ... --output_dir ...   # sequence-level data
hf-distill cache-logits --teacher ... --dataset_name ... --output_dir ...   # offline teacher logits
hf-distill init-student --teacher ... --num_layers ... --output_dir ...     # a shallower copy of the teacher
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
from collections.abc import Sequence

from .._version import __version__
from .hub_access import HubUnreachableError, is_connection_failure, unreachable_message
from .messages import as_cli_message
from .parser import parse_recipe
from .registry import COMMANDS, Command

__all__ = ["COMMANDS", "Command", "main"]


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
    ours = isinstance(error, (ValueError, HubUnreachableError))
    return message if ours else f"{type(error).__name__}: {message}"


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
    if debug:  # our records, and the third-party lines demoted by `quiet` (first of each), become visible
        logging.getLogger("hf_distill").setLevel(logging.DEBUG)
    try:
        parsed = parse_recipe(command.dataclass_types(), rest, prog=f"hf-distill {name}", description=command.help)
        return command.run(*parsed)
    except KeyboardInterrupt:
        print(f"hf-distill {name}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # one clear line, not a traceback; --debug shows it
        if debug:
            raise
        print(f"hf-distill {name}: error: {_cli_message(error, command)}", file=sys.stderr)
        print("(run again with --debug for the full traceback)", file=sys.stderr)
        return 1


def _cli_message(error: BaseException, command: Command) -> str:
    """The error in one line and in the CLI's words; a lost connection gets the fix for it."""
    from dataclasses import fields

    from huggingface_hub import constants

    message = _one_line(error)
    if is_connection_failure(error) and not isinstance(error, HubUnreachableError):
        message = unreachable_message(constants.ENDPOINT, {}, message)
    try:
        options = {f.name for cls in command.dataclass_types() for f in fields(cls)}
    except Exception:  # the message matters more than its wording
        options = set()
    return as_cli_message(message, options)
