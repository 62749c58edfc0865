"""The memory-per-device numbers of docs/scaling.md, computed: weights and training states of a student trained with
AdamW in mixed precision and of a frozen teacher in bf16, 8-bit or 4-bit, on 8 x 80 GB, under DDP, FSDP2 / ZeRO-3
(teacher sharded) and FSDP2 with a quantized teacher replicated; the multi-node and served-teacher figures too.

    python benchmarks/scaling_memory.py        # prints the Markdown that docs/scaling.md holds

tests/test_scaling_doc.py checks that docs/scaling.md holds exactly this output.
"""

from __future__ import annotations

from dataclasses import dataclass

GB = 1e9
DEVICES, DEVICE_GB = 8, 80
# fp32 parameters (4) + fp32 gradients (4) + two fp32 Adam moments (8), sharded or not.
STUDENT_BYTES = 16
TEACHER_BYTES = {"bf16": 2.0, "8-bit": 1.0, "4-bit": 0.5}
# An all-gathered root unit (embeddings and lm_head) is held in bf16, the mixed-precision compute dtype.
ROOT_BYTES = 2


@dataclass(frozen=True)
class Model:
    """Parameter count (billions, from the model card) and the embedding shape (from `config.json`)."""

    name: str
    billions: float
    vocab: int
    hidden: int
    tied: bool = False

    def root_gb(self) -> float:
        return self.vocab * self.hidden * (1 if self.tied else 2) * ROOT_BYTES / GB

    def root_formula(self) -> str:
        return f"{self.vocab:,} x {self.hidden:,} x {1 if self.tied else 2} x {ROOT_BYTES} B = {self.root_gb():.1f} GB"


QWEN_1_5B = Model("Qwen2.5-1.5B", 1.54, 151_936, 1_536, tied=True)
QWEN_7B = Model("Qwen2.5-7B", 7.62, 152_064, 3_584)
QWEN_32B = Model("Qwen2.5-32B", 32.8, 152_064, 5_120)
LLAMA_8B = Model("Llama-3.1-8B", 8.03, 128_256, 4_096)
LLAMA_70B = Model("Llama-3.1-70B", 70.6, 128_256, 8_192)
# (title, teacher, student)
PAIRS = [("7B -> 1.5B", QWEN_7B, QWEN_1_5B), ("32B -> 7B", QWEN_32B, QWEN_7B), ("70B -> 8B", LLAMA_70B, LLAMA_8B)]


def student_gb(model: Model) -> float:
    return STUDENT_BYTES * model.billions


def teacher_gb(model: Model, precision: str) -> float:
    return TEACHER_BYTES[precision] * model.billions


def _fits(total: float) -> str:
    return "" if total <= DEVICE_GB else ": does not fit"


def layout_rows(teacher: Model, student: Model, devices: int = DEVICES) -> list[tuple[str, str, float]]:
    """(layout, formula, GB per device) for each layout and teacher precision."""
    s, rows = student_gb(student), []
    for precision in TEACHER_BYTES:
        t = teacher_gb(teacher, precision)
        rows.append((f"DDP, teacher {precision}", f"{s:.1f} + {t:.1f} = {s + t:.1f} GB{_fits(s + t)}", s + t))
    t = teacher_gb(teacher, "bf16")
    sharded = s / devices + t / devices
    roots = sharded + teacher.root_gb() + student.root_gb()
    rows.append((
        "FSDP2 / ZeRO-3, teacher bf16 sharded",
        f"{s:.1f} / {devices} + {t:.1f} / {devices} = {s / devices:.1f} + {t / devices:.1f} = {sharded:.1f} GB "
        f"(+ roots: teacher {teacher.root_formula()}, student {student.root_formula()}: {roots:.1f} GB)",
        roots,
    ))
    for precision in ("8-bit", "4-bit"):
        t = teacher_gb(teacher, precision)
        total = s / devices + t
        rows.append((f"FSDP2, teacher {precision} replicated",
                     f"{s / devices:.1f} + {t:.1f} = {total:.1f} GB{_fits(total)}", total))
    return rows


def recommendation(teacher: Model, student: Model) -> str:
    rows = {layout: total for layout, _, total in layout_rows(teacher, student)}
    if rows["DDP, teacher bf16"] <= DEVICE_GB:
        return "Use **DDP**: everything fits one device, and DDP has no all-gathers."
    advice = "Use **FSDP2 (or ZeRO-3) with the teacher in bf16, sharded**"
    sharded = rows["FSDP2 / ZeRO-3, teacher bf16 sharded"]
    smaller = [layout for layout, total in rows.items() if total < sharded]
    if not smaller:
        return f"{advice}: the least memory and an unquantized teacher."
    return f"{advice}: an unquantized teacher ({', '.join(smaller)} takes less memory but changes the targets)."


def render_tables() -> str:
    parts = []
    for title, teacher, student in PAIRS:
        s = student_gb(student)
        teachers = ", ".join(f"{teacher_gb(teacher, p):.1f} GB in {p}" for p in TEACHER_BYTES)
        parts.append(f"**{title}** ({teacher.name} -> {student.name}): student {STUDENT_BYTES} x {student.billions} = "
                     f"{s:.1f} GB; teacher {teachers} ({', '.join(f'{b:g}' for b in TEACHER_BYTES.values())} bytes "
                     f"per parameter x {teacher.billions}).")
        parts.append("| layout | per device |\n|---|---|\n" + "\n".join(
            f"| {layout} | {formula} |" for layout, formula, _ in layout_rows(teacher, student)))
        parts.append(recommendation(teacher, student))
    return "\n\n".join(parts) + "\n"


def render_multinode(devices: int = 2 * DEVICES) -> str:
    teacher, student = LLAMA_70B, LLAMA_8B
    s, t = student_gb(student), teacher_gb(teacher, "bf16")
    return (f"With {devices} devices every sharded term above is divided by {devices} instead of {DEVICES} "
            f"(70B -> 8B: {s:.1f} / {devices} + {t:.1f} / {devices} = {s / devices:.1f} + {t / devices:.1f} = "
            f"{s / devices + t / devices:.1f} GB per device, roots on top).")


def render_served() -> str:
    shares = "; ".join(f"{title}: {student_gb(student) / DEVICES:.1f} GB"
                       for title, _, student in PAIRS[1:])
    return (f"the engine only has to fit the student ({shares} per device under FSDP2 on {DEVICES} devices), or "
            "DDP when the student fits one device.")


if __name__ == "__main__":
    print(render_tables())
    print(render_multinode())
    print()
    print(render_served())
