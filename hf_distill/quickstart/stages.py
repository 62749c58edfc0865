"""The quickstart's stages, each a few calls on the public API; `pipeline.run_quickstart` runs them in order."""

from __future__ import annotations

from pathlib import Path

from datasets import Dataset, DatasetDict
from huggingface_hub import DatasetCard, DatasetCardData
from transformers import AutoTokenizer

from ..benchmark.trust import TrustConfig
from ..publish.repo import resolve_token
from ..publish.risk_record import write_risk_record
from ..publish.space import create_space
from .presets import QuickstartPreset
from .scoring import task_accuracy_metric
from .tasks import DATASET_LICENSE, build_task_dataset
from .training import TeacherInfo, cached_teacher, train_distilled_student, train_sft_student

__all__ = ["benchmark", "build_data", "card_and_space", "distil", "metric", "push", "sft", "teacher"]

_TRAIN_COLUMNS = ["prompt", "completion"]
_PLOT = "benchmark/student_vs_teacher.png"
_TITLE = "hf-distill quickstart: distilled student vs teacher"


def _dataset_card(data: DatasetDict) -> DatasetCard:
    card_data = DatasetCardData(
        license=DATASET_LICENSE,
        language=["en"],
        task_categories=["text-generation"],
        tags=["hf-distill-quickstart", "synthetic"],
    )
    sizes = ", ".join(f"{split}: {len(rows)} rows" for split, rows in data.items())
    return DatasetCard.from_template(
        card_data,
        template_str="---\n{{ card_data }}\n---\n\n# hf-distill quickstart tasks\n\nShort instructions "
        "with checkable answers, generated deterministically by `hf_distill.quickstart.tasks` (" + sizes + "). "
        "Many prompts accept several answers; each row holds one sampled answer and `valid_answers` lists them all. "
        "Written for this project; dedicated to the public domain (CC0-1.0).\n",
    )


def build_data(settings: QuickstartPreset, *, seed: int, output_dir: Path) -> DatasetDict:
    data = build_task_dataset(settings.num_train, settings.num_test, seed=seed)
    data.save_to_disk(str(output_dir))
    _dataset_card(data).save(str(output_dir / "README.md"))
    return data


def teacher(settings: QuickstartPreset, train: Dataset, *, seed: int, cache_dir) -> TeacherInfo:
    return cached_teacher(settings, train.select_columns(_TRAIN_COLUMNS), seed=seed, cache_dir=cache_dir)


def distil(settings: QuickstartPreset, train: Dataset, teacher_dir: Path, *, seed: int, output_dir: Path):
    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    return train_distilled_student(
        settings, train.select_columns(_TRAIN_COLUMNS), teacher_dir, tokenizer, seed=seed, output_dir=output_dir
    )


def sft(settings: QuickstartPreset, train: Dataset, teacher_dir: Path, *, seed: int, output_dir: Path):
    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)  # the students share the teacher's tokenizer
    return train_sft_student(
        settings, train.select_columns(_TRAIN_COLUMNS), tokenizer, seed=seed, output_dir=output_dir
    )


def metric(test: Dataset):
    return task_accuracy_metric(test)


def benchmark(trainer, settings: QuickstartPreset, test: Dataset, accuracy: str, *, output_dir: Path):
    """Teacher, distilled student and SFT student on the held-out split; report, table and plots written into the
    student's `benchmark/` folder (where `push_student` and the Space look for them)."""
    report = trainer.benchmark(
        test.select_columns(_TRAIN_COLUMNS),
        baseline=str(output_dir / "sft-student"),
        max_new_tokens=settings.max_new_tokens,
        batch_sizes=settings.latency_batch_sizes,
        num_latency_runs=settings.num_latency_runs,
        task_metrics=(accuracy, "exact_match"),
        model_names={"student": "distilled student", "teacher": "teacher", "baseline": "SFT student"},
        dataset_split="test",
        # Leakage in outputs, robustness gap, safety-set agreement and serving cost, for the card's "Risks and
        # measurements" section and `risk_record.json` (about 15 s on the quickstart's models).
        trust=TrustConfig.everything(),
    )
    folder = output_dir / "student" / "benchmark"
    folder.mkdir(parents=True, exist_ok=True)
    report.to_json(folder / "report.json")
    (folder / "report.md").write_text(report.to_markdown())
    report.plot(folder / "student_vs_teacher.png")
    trainer.plot_training_curves(folder / "training_curves.png")
    return report


def card_and_space(trainer, report, teacher_dir: Path, *, output_dir: Path, model_name: str) -> Path:
    trainer.create_model_card(model_name=model_name, report=report, dataset_licenses=DATASET_LICENSE, plot_path=_PLOT)
    write_risk_record(report, output_dir / "student")
    space = create_space(
        output_dir / "student", teacher=teacher_dir, output_dir=output_dir / "space", benchmark=report, title=_TITLE
    )
    return Path(space.folder)


def push(trainer, report, repo_id: str, *, private: bool | None, output_dir: Path) -> tuple[dict, list[str]]:
    """Push the student (one commit) and a student-only Space `<repo_id>-demo` when a token is set; the local teacher
    is not on the Hub, so the pushed Space shows the student alone."""
    if not resolve_token(None):
        return {}, ["not pushed: no Hugging Face token. Set HF_TOKEN or run `hf auth login`, then run again."]
    result = trainer.push_to_hub(repo_id, report=report, private=private, dataset_licenses=DATASET_LICENSE)
    space = create_space(
        repo_id,
        space_id=f"{repo_id}-demo",
        output_dir=output_dir / "space-hub",
        title="hf-distill quickstart: distilled student",
        push=True,
        private=private,
        benchmark=report,
    )
    return {"student": result.commit_url, "space": space.space_url}, list(space.warnings)
