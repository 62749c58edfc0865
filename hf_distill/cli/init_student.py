"""`hf-distill init-student`: its options and the call to `init_student`."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..students.layers import LAYER_STRATEGIES
from .commands import _json_kwargs, require

__all__ = ["InitStudentArguments", "run_init_student"]


@dataclass
class InitStudentArguments:
    """`hf-distill init-student`: a shallower copy of the teacher (same architecture and tokenizer) to distil into."""

    teacher: str | None = field(default=None, metadata={"help": "Hub id or local folder of the teacher (required)."})
    output_dir: str | None = field(default=None, metadata={"help": "Folder for the student (required)."})
    num_layers: int | None = field(
        default=None, metadata={"help": "Decoder layers of the student; half the teacher's (rounded up) by default."}
    )
    strategy: str = field(
        default="every_other",
        metadata={"help": f"Which teacher layers to copy: {', '.join(LAYER_STRATEGIES)}."},
    )
    teacher_model_init_kwargs: str | None = field(
        default=None,
        metadata={"help": 'JSON object of `from_pretrained` arguments for the teacher, e.g. \'{"gguf_file": '
                          '"model.Q4_K_M.gguf"}\'.'},
    )


def run_init_student(args: InitStudentArguments) -> int:
    from ..students.init import init_student  # deferred: `hf-distill --help` loads no torch

    require(args, "teacher", "output_dir", command="init-student")
    student = init_student(
        args.teacher, num_layers=args.num_layers, strategy=args.strategy, output_dir=args.output_dir,
        teacher_model_init_kwargs=_json_kwargs(args.teacher_model_init_kwargs, "--teacher_model_init_kwargs"),
    )
    init = student.config.student_init
    print(f"{len(init['layer_map'])}-layer student (teacher layers {init['layer_map']}) written to {args.output_dir}")
    return 0
