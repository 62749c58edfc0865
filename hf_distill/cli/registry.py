"""The `hf-distill` subcommands: each one's help line, the dataclasses its options come from, and the function it
calls. Read by `main` (dispatch) and by `parser` (the option names one recipe may use across the pipeline)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from . import arguments as cli_args
from . import commands
from .init_student import InitStudentArguments, run_init_student

__all__ = ["COMMANDS", "Command"]


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
    "init-student": Command(
        "A shallower copy of the teacher (its architecture, tokenizer and chosen layers) to distil into.",
        lambda: (InitStudentArguments,),
        run_init_student,
    ),
    "space": Command(
        "Write (and push) a Gradio Space comparing the student with its teacher.",
        lambda: (cli_args.SpaceArguments,),
        commands.run_space,
    ),
}
