"""`run_quickstart`: the whole product on a CPU, offline. Builds the task dataset, trains (or reuses) a teacher,
distils a student, trains the same student with plain SFT, benchmarks all three, and writes the student with its card,
report, plots, provenance and a Space folder."""

from __future__ import annotations

import importlib.util
import json
import os
import time
from collections.abc import Callable
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .._version import __version__
from ..publish.provenance import environment_info
from ..publish.repo import validate_repo_id
from ..publish.space.requirements import GRADIO_SDK_VERSION
from .errors import QuickstartError, QuickstartStageError
from .presets import PRESETS, QuickstartPreset
from .report import comparison_rows, format_table, verdict_lines

__all__ = ["QuickstartError", "QuickstartResult", "QuickstartStageError", "library_versions", "run_quickstart"]

STUDENT_NAME = "hf-distill-quickstart-student"


# Import name -> pip name of what the stages import lazily (plots, tokenizer training, model cards, data).
REQUIRED_MODULES = {
    "matplotlib": "matplotlib",
    "tokenizers": "tokenizers",
    "trl": "trl",
    "datasets": "datasets",
    "safetensors": "safetensors",
    "jinja2": "jinja2",
    "yaml": "pyyaml",
}
_VERSIONED = ("torch", "transformers", "trl", "datasets", "tokenizers")


def library_versions() -> dict[str, str | None]:
    """Python, hf_distill and the libraries the quickstart's numbers depend on."""
    libraries = environment_info()["libraries"]
    return {"python": libraries["python"], "hf_distill": __version__} | {name: libraries[name] for name in _VERSIONED}


@dataclass
class QuickstartResult:
    """What `hf-distill quickstart` produced.

    Args:
        output_dir (`Path`): the run's folder; `student_dir`, `sft_student_dir`, `space_dir` and `data_dir` are in it.
        teacher_dir (`Path`): the cached teacher.
        space_dir (`Path`, *optional*): the Space folder; `None` when writing it failed.
        teacher_cache_hit (`bool`): whether the teacher came from the cache.
        report (`BenchmarkReport`): teacher, distilled student and SFT student (the baseline), as measured.
        rows (`list[dict]`): the comparison table, one row per model.
        timings (`dict[str, float]`): seconds per stage, and `total`.
        pushed (`dict[str, str]`): URLs of what was pushed (empty without `push_to_hub`).
        notes (`list[str]`): what was skipped or failed, and why.
        versions (`dict[str, str]`): Python and library versions of the run (the numbers depend on them).
        trainer (`DistillationTrainer`): the distilled student's trainer.
    """

    output_dir: Path
    student_dir: Path
    sft_student_dir: Path
    teacher_dir: Path
    space_dir: Path | None
    data_dir: Path
    teacher_cache_hit: bool
    preset: str
    report: Any
    rows: list[dict[str, Any]]
    timings: dict[str, float]
    pushed: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    versions: dict[str, str | None] = field(default_factory=library_versions)
    trainer: Any = field(default=None, repr=False)

    def summary(self) -> str:
        """The comparison table, what it shows, and where everything was written."""
        lines = [format_table(self.rows), "", *verdict_lines(self.rows), ""]
        teacher = "from the cache" if self.teacher_cache_hit else "trained"
        lines.append(f"Finished in {self.timings['total']:.0f} s (teacher {teacher}).")
        lines.append("Versions: " + ", ".join(f"{name} {version}" for name, version in self.versions.items()))
        lines += [
            f"  student:     {self.student_dir} (model card README.md, benchmark/, distillation_provenance.json)",
            f"  SFT student: {self.sft_student_dir}",
            f"  teacher:     {self.teacher_dir}",
            f"  Space:       {self.space_dir} (run: cd {self.space_dir} && python app.py)"
            if self.space_dir
            else "  Space:       not written",
            f"  report:      {self.output_dir / 'quickstart_report.json'}",
        ]
        lines += [f"  pushed {name}: {url}" for name, url in self.pushed.items()]
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "preset": self.preset,
            "teacher_cache_hit": self.teacher_cache_hit,
            "rows": self.rows,
            "timings_seconds": self.timings,
            "pushed": self.pushed,
            "notes": self.notes,
            "versions": self.versions,
            "paths": {
                name: str(getattr(self, name))
                for name in ("output_dir", "student_dir", "sft_student_dir", "teacher_dir", "space_dir", "data_dir")
            },
            "benchmark": self.report.to_dict(),
        }


class _Stages:
    """Prints `[i/n] what ... done (seconds)` around each stage and records its time."""

    def __init__(self, total: int, echo: Callable[[str], None]):
        self.total, self.index, self.echo, self.timings, self.current = total, 0, echo, {}, ""

    @contextmanager
    def stage(self, key: str, title: str):
        self.index, self.current = self.index + 1, title
        self.echo(f"[{self.index}/{self.total}] {title} ...")
        start = time.perf_counter()
        yield
        self.timings[key] = round(time.perf_counter() - start, 2)
        self.echo(f"[{self.index}/{self.total}] {title}: done in {self.timings[key]:.1f} s")


def _check(output_dir: Path, preset: str, push_to_hub: str | None, num_threads: int | None) -> QuickstartPreset:
    problems = []
    if num_threads is not None and (not isinstance(num_threads, int) or num_threads < 1):
        problems.append(f"`num_threads` (--num_threads) is {num_threads!r}; it must be an integer >= 1, or unset.")
    if preset not in PRESETS:
        problems.append(f"`preset` (--preset) is {preset!r}; choose one of: {', '.join(PRESETS)}.")
    if output_dir.exists() and not output_dir.is_dir():
        problems.append(f"`output_dir` (--output_dir) {str(output_dir)!r} is a file; choose a folder.")
    if push_to_hub is not None:
        try:
            validate_repo_id(push_to_hub, argument="push_to_hub")
        except ValueError as error:
            problems.append(str(error))
    problems += _missing_packages()
    if problems:
        raise QuickstartError("Invalid quickstart arguments:\n" + "\n".join(f"- {p}" for p in problems))
    return PRESETS[preset]


def _missing_packages() -> list[str]:
    """Every module the stages import, checked before stage 1: a missing one would otherwise fail a late stage after
    minutes of training. The quickstart needs none of hf_distill's extras (the Space folder is files, no Gradio)."""
    missing = [module for module in REQUIRED_MODULES if importlib.util.find_spec(module) is None]
    return [
        f"the quickstart needs the package `{module}`, which is not installed: run `python -m pip install "
        f"{REQUIRED_MODULES[module]}` (or reinstall hf-distill without `--no-deps`)."
        for module in missing
    ]


@contextmanager
def _quiet_datasets():
    """Hide `datasets`' per-map progress bars (the stages print their own progress), then restore them."""
    from datasets.utils import logging as datasets_logging

    was_enabled = datasets_logging.is_progress_bar_enabled()
    datasets_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            datasets_logging.enable_progress_bar()


@contextmanager
def _torch_threads(num_threads: int | None):
    import torch

    previous = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def run_quickstart(
    output_dir: str | os.PathLike = "hf-distill-quickstart",
    *,
    push_to_hub: str | None = None,
    private: bool | None = None,
    preset: str = "standard",
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    num_threads: int | None = 1,
    echo: Callable[[str], None] = print,
) -> QuickstartResult:
    """Run the quickstart end to end, offline; see the module docstring and `docs/quickstart.md`.

    Args:
        output_dir (`str`, defaults to `"hf-distill-quickstart"`): where everything is written.
        push_to_hub (`str`, *optional*): repo id to push the student to (and `<repo>-demo` Space) when a token is set.
        private (`bool`, *optional*): visibility of the pushed repos.
        preset (`str`, defaults to `"standard"`): `"standard"` or `"smoke"` (tiny, for tests).
        seed (`int`, defaults to `0`): the dataset, initial weights and data order.
        cache_dir (`str`, *optional*): teacher cache (default `$HF_DISTILL_CACHE`, else `hf_distill/` in the Hugging
            Face cache folder `$HF_HOME`, which defaults to `~/.cache/huggingface`).
        num_threads (`int`, *optional*, defaults to `1`): torch CPU threads while it runs (restored afterwards).
            These models are too small to gain much from threads, and threads that share busy cores slow them down
            more than ten-fold; `None` keeps torch's setting.
        echo (`Callable[[str], None]`, defaults to `print`): where progress lines go.

    Raises:
        `QuickstartError`: a bad argument or a missing package, before any work.
        `QuickstartStageError`: writing the card and Space, or pushing, failed; what the earlier stages measured
            was printed through `echo` and saved in `quickstart_report.json` first.

    Example:

    ```python
    >>> from hf_distill.quickstart import run_quickstart
    >>> result = run_quickstart("hf-distill-quickstart")
    >>> print(result.summary())
    ```
    """
    output_dir = Path(output_dir)
    settings = _check(output_dir, preset, push_to_hub, num_threads)
    start = time.perf_counter()
    progress = _Stages(total=7 if push_to_hub else 6, echo=echo)
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    with _quiet_datasets(), _torch_threads(num_threads), ExitStack() as scope:
        result = _train_and_benchmark(
            progress, settings, output_dir, scope=scope, preset=preset, seed=seed, cache_dir=cache_dir
        )
        try:
            _publish(progress, result, push_to_hub=push_to_hub, private=private)
        except Exception as error:
            stage = f"[{progress.index}/{progress.total}] {progress.current}"
            result.notes.append(f"{stage} failed: {error}")
            _finish(result, progress, start, load_before, settings, seed=seed, num_threads=num_threads)
            echo(result.summary())
            raise QuickstartStageError(
                f"{stage} failed: {error}\nWhat the earlier stages measured is printed above and saved in "
                f"{output_dir / 'quickstart_report.json'}."
            ) from error
    _finish(result, progress, start, load_before, settings, seed=seed, num_threads=num_threads)
    return result


def _train_and_benchmark(progress, settings, output_dir: Path, *, scope: ExitStack, preset: str, seed: int, cache_dir):
    """Stages 1-5: dataset, teacher, distilled student, SFT student, benchmark; the result has no Space yet. The task
    accuracy metric stays registered in `scope` until the model card, which names it, is written."""
    from . import stages

    with progress.stage("dataset", "Building the task dataset"):
        data = stages.build_data(settings, seed=seed, output_dir=output_dir / "data")
    with progress.stage("teacher", "Training the teacher (cached after the first run)"):
        teacher = stages.teacher(settings, data["train"], seed=seed, cache_dir=cache_dir)
    with progress.stage("distilled_student", "Distilling the student from the teacher"):
        trainer = stages.distil(settings, data["train"], teacher.path, seed=seed, output_dir=output_dir / "student")
    with progress.stage("sft_student", "Training the same student with plain SFT (the baseline)"):
        stages.sft(settings, data["train"], teacher.path, seed=seed, output_dir=output_dir / "sft-student")
    accuracy = scope.enter_context(stages.metric(data["test"]))
    with progress.stage("benchmark", "Benchmarking teacher, distilled student and SFT student"):
        report = stages.benchmark(trainer, settings, data["test"], accuracy, output_dir=output_dir)
    return QuickstartResult(
        output_dir=output_dir,
        student_dir=output_dir / "student",
        sft_student_dir=output_dir / "sft-student",
        teacher_dir=teacher.path,
        space_dir=None,
        data_dir=output_dir / "data",
        teacher_cache_hit=teacher.cache_hit,
        preset=preset,
        report=report,
        rows=comparison_rows(report, accuracy),
        timings={},
        trainer=trainer,
    )


def _publish(progress, result: QuickstartResult, *, push_to_hub: str | None, private: bool | None) -> None:
    """Stage 6 (card, plots, Space folder) and, with `push_to_hub`, stage 7 (push)."""
    from . import stages

    with progress.stage("card", "Writing the model card, plots and the Space"):
        result.space_dir = stages.card_and_space(
            result.trainer,
            result.report,
            result.teacher_dir,
            output_dir=result.output_dir,
            model_name=push_to_hub or STUDENT_NAME,
        )
    if not importlib.util.find_spec("gradio"):
        result.notes.append(
            f"the Space app needs Gradio to run here: pip install gradio=={GRADIO_SDK_VERSION} (or "
            'pip install -e ".[demo]" from the clone); writing it did not.'
        )
    if push_to_hub:
        with progress.stage("push", f"Pushing to the Hub as {push_to_hub}"):
            pushed, notes = stages.push(
                result.trainer, result.report, push_to_hub, private=private, output_dir=result.output_dir
            )
        result.pushed.update(pushed)
        result.notes.extend(notes)


def _finish(result, progress, start, load_before, settings, *, seed: int, num_threads) -> None:
    """Record the timings and write `quickstart_report.json` (also when a last stage failed)."""
    result.timings = {**progress.timings, "total": round(time.perf_counter() - start, 2)}
    record = result.to_dict() | {
        "settings": asdict(settings),
        "seed": seed,
        "num_threads": num_threads,
        "load_average": {"start": load_before, "end": os.getloadavg()} if load_before else None,
    }
    (result.output_dir / "quickstart_report.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
