"""What each `hf-distill` subcommand calls: the library's public functions, with the parsed dataclasses mapped onto
their arguments. No distillation logic lives here."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import HfDistillError
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
from .hub_access import check_hub_reachable

logger = logging.getLogger(__name__)

__all__ = [
    "CliUsageError",
    "load_dataset_argument",
    "run_benchmark",
    "run_cache_logits",
    "run_card",
    "run_generate",
    "run_push",
    "run_quickstart",
    "run_space",
    "run_train",
]

_DATA_FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}


class CliUsageError(HfDistillError, ValueError):
    """A required option is missing or two options contradict each other."""


def require(args: Any, *names: str, command: str) -> None:
    """Raise [`CliUsageError`] naming every missing option of `names` (all at once)."""
    missing = [f"--{name}" for name in names if getattr(args, name) in (None, "")]
    if missing:
        raise CliUsageError(
            f"`hf-distill {command}` needs {', '.join(missing)}: pass {'them' if len(missing) > 1 else 'it'} on the "
            "command line or in the --config recipe."
        )


def load_dataset_argument(args: DatasetArguments, split: str):
    """The `split` of `args.dataset_name`: a `save_to_disk` folder, a data file, or a Hub dataset."""
    import datasets

    name = args.dataset_name
    path = Path(name).expanduser()
    if path.is_dir() and any((path / marker).is_file() for marker in ("dataset_info.json", "dataset_dict.json")):
        loaded = datasets.load_from_disk(str(path))
        if isinstance(loaded, datasets.DatasetDict):
            if split not in loaded:
                raise CliUsageError(
                    f"Dataset {name!r} has splits {list(loaded)}, not {split!r}: choose one with the "
                    "--dataset_train_split / --dataset_test_split option."
                )
            loaded = loaded[split]
        # Maps (tokenization, generation) would write cache-*.arrow files beside the input's own files: with
        # caching off, datasets writes them to a temporary folder deleted at exit instead.
        datasets.disable_caching()
        return _remembered(loaded, path)
    if path.is_file() and path.suffix in _DATA_FILE_BUILDERS:
        builder = _DATA_FILE_BUILDERS[path.suffix]
        return _remembered(datasets.load_dataset(builder, data_files={split: str(path)}, split=split), path)
    return datasets.load_dataset(name, name=args.dataset_config, split=split)


def _remembered(dataset, path: Path):
    """`dataset`, its provenance pointing at the local file or folder it came from (by name and content hash)."""
    from ..publish.provenance import remember_local_source

    remember_local_source(dataset, path)
    return dataset


def _json_kwargs(value: str | dict | None, flag: str) -> dict | None:
    if value is None or isinstance(value, dict):
        return value
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as error:
        example = '{"dtype": "bfloat16"}'
        raise CliUsageError(f"{flag} is not a JSON object ({error.msg}): write e.g. '{example}'.") from None
    if not isinstance(parsed, dict):
        raise CliUsageError(f"{flag} must be a JSON object, got {type(parsed).__name__}.")
    return parsed


# -- subcommands --------------------------------------------------------------------------------------------------


def run_quickstart(args: QuickstartArguments) -> int:
    from ..quickstart import run_quickstart as quickstart

    result = quickstart(
        args.output_dir,
        push_to_hub=args.push_to_hub,
        private=args.private,
        preset=args.preset,
        seed=args.seed,
        cache_dir=args.cache_dir,
        num_threads=args.num_threads or None,
    )
    print(result.summary())
    return 0


def run_train(script_args: TrainScriptArguments, training_args, model_args) -> int:
    """`DistillationTrainer` on the train split, as `trl sft` runs `SFTTrainer`; saves, benchmarks, pushes."""
    from trl import get_peft_config, get_quantization_config

    from ..training.trainer import DistillationTrainer

    require(script_args, "dataset_name", command="train")
    require(model_args, "model_name_or_path", command="train")
    check_hub_reachable({
        "--model_name_or_path": model_args.model_name_or_path,
        "--teacher_model_name_or_path": training_args.teacher_model_name_or_path,
        "--dataset_name": None if script_args.logits_dir else script_args.dataset_name,
    })
    model_init_kwargs = {
        "revision": model_args.model_revision,
        "attn_implementation": model_args.attn_implementation,
        "dtype": model_args.dtype,
    }
    training_args.model_init_kwargs = {**model_init_kwargs, **(training_args.model_init_kwargs or {})}
    train_dataset = (
        load_dataset_argument(replace(script_args, dataset_name=script_args.logits_dir), "train")
        if script_args.logits_dir
        else load_dataset_argument(script_args, script_args.dataset_train_split)
    )
    needs_eval = training_args.eval_strategy != "no" or script_args.benchmark_after_training
    eval_dataset = load_dataset_argument(script_args, script_args.dataset_test_split) if needs_eval else None
    trainer = DistillationTrainer(
        model=model_args.model_name_or_path,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        peft_config=get_peft_config(model_args),
        quantization_config=get_quantization_config(model_args),
    )
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    # Saved without `Trainer.save_model`'s own push: the one checked push below carries the card and benchmark.
    trainer.save_model(training_args.output_dir, _internal_call=True)
    report = None
    if script_args.benchmark_after_training and trainer.is_world_process_zero():
        report = trainer.benchmark(
            eval_dataset,
            dataset_name=script_args.dataset_name,
            dataset_split=script_args.dataset_test_split,
            max_samples=script_args.benchmark_max_samples,
            max_new_tokens=script_args.benchmark_max_new_tokens,
        )
        _write_report(report, Path(training_args.output_dir) / "benchmark")
        trainer.plot_training_curves(Path(training_args.output_dir) / "benchmark" / "training_curves.png")
    if training_args.push_to_hub:  # the pushed card is the one kept: one save above, one card
        result = trainer.push_to_hub(report=report, save=False)
        if result is not None:
            result.card.save(Path(training_args.output_dir) / "README.md")
            print(f"Pushed: {result.commit_url}")
    elif trainer.is_world_process_zero():
        plot = _plot_path() if report is not None else None
        trainer.create_model_card(dataset_name=script_args.dataset_name, report=report, plot_path=plot)
    trainer.accelerator.print(f"Student saved to {training_args.output_dir}")
    return 0


def run_generate(args: GenerateArguments) -> int:
    from ..offline.generation import generate_completions

    args.output_dir = args.generations_dir or args.output_dir  # the recipe key wins: its output_dir is the student's
    require(args, "teacher", "dataset_name", "output_dir", command="generate")
    check_hub_reachable({"--teacher": args.teacher, "--dataset_name": args.dataset_name})
    _check_dataset_push(args)
    model_kwargs = _json_kwargs(args.teacher_model_init_kwargs, "--teacher_model_init_kwargs")
    generated = generate_completions(
        args.teacher,
        load_dataset_argument(args, args.dataset_train_split),
        output_dir=args.output_dir,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        num_samples=args.num_samples,
        batch_size=args.batch_size,
        backend=args.backend,
        seed=args.seed,
        shard_size=args.shard_size,
        model_kwargs=model_kwargs,
        max_rows=args.max_rows,
    )
    print(f"{len(generated)} completions written to {args.output_dir}")
    _push_dataset(args)
    return 0


def run_cache_logits(args: CacheLogitsArguments) -> int:
    from ..offline.logit_cache import cache_teacher_logits
    from ..vocabulary import find_tokenizer, hub_kwargs

    args.output_dir = args.logits_dir or args.output_dir  # the recipe key wins: its output_dir is the student's
    require(args, "teacher", "dataset_name", "output_dir", command="cache-logits")
    check_hub_reachable({"--teacher": args.teacher, "--tokenizer": args.tokenizer,
                         "--student_tokenizer": args.student_tokenizer, "--dataset_name": args.dataset_name})
    _check_dataset_push(args)
    model_kwargs = _json_kwargs(args.teacher_model_init_kwargs, "--teacher_model_init_kwargs")
    # The teacher's own tokenizer is fetched like the teacher; None (no tokenizer files) is refused by the cache.
    located = {} if args.tokenizer else hub_kwargs(model_kwargs)
    tokenizer = find_tokenizer(args.tokenizer or args.teacher, **located)
    student_tokenizer = find_tokenizer(args.student_tokenizer) if args.student_tokenizer else None
    if args.student_tokenizer and student_tokenizer is None:
        raise CliUsageError(f"--student_tokenizer {args.student_tokenizer!r} holds no tokenizer: give the Hub id or "
                            "folder of the student's tokenizer (or of the student, saved with it).")
    cached = cache_teacher_logits(
        args.teacher,
        load_dataset_argument(args, args.dataset_train_split),
        tokenizer=tokenizer,
        output_dir=args.output_dir,
        top_k=args.top_k,
        batch_size=args.batch_size,
        max_length=args.max_length,
        shard_size=args.shard_size,
        model_kwargs=model_kwargs,
        max_rows=args.max_rows,
        student_tokenizer=student_tokenizer,
    )
    print(f"{len(cached)} rows of top-{args.top_k} teacher log-probabilities written to {args.output_dir}")
    _push_dataset(args, tokenizer=student_tokenizer or tokenizer)  # the cache holds token ids: decoded for the scan
    return 0


def _check_dataset_push(args) -> None:
    """A bad --push_to_hub repo id or a missing token fails before the teacher runs, not after."""
    if args.push_to_hub:
        from ..publish.dataset import check_push_target

        check_push_target(args.push_to_hub, argument="--push_to_hub")


def _push_dataset(args, tokenizer=None) -> None:
    if not args.push_to_hub:
        return
    from ..publish.dataset import push_dataset

    result = push_dataset(args.output_dir, args.push_to_hub, tokenizer=tokenizer,
                          allow_private_data=args.allow_private_data)
    scans = "; ".join(f"{split}: {report.summary()}" for split, report in result.privacy.items())
    print(f"Pushed {len(result.files)} files to {result.repo_url} (privacy scan: {scans}): {result.commit_url}")


def _plot_path() -> str:
    """Where the card and the Space expect the benchmark plot, relative to the student folder."""
    from ..publish.card import PLOT_PATH

    return PLOT_PATH


def _write_report(report, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    report.to_json(folder / "report.json")
    (folder / "report.md").write_text(report.to_markdown())
    report.plot(folder / Path(_plot_path()).name)


def run_benchmark(args: BenchmarkArguments) -> int:
    from ..benchmark import benchmark
    from .trust import trust_config_from_arguments, write_risk_record

    require(args, "student", "dataset_name", command="benchmark")
    check_hub_reachable({"--student": args.student, "--teacher": args.teacher, "--baseline": args.baseline,
                         "--dataset_name": args.dataset_name})
    dataset = load_dataset_argument(args, args.dataset_test_split)
    report = benchmark(
        args.student,
        args.teacher,
        dataset,
        baseline=args.baseline,
        max_new_tokens=args.max_new_tokens,
        batch_sizes=tuple(args.batch_sizes),
        num_latency_runs=args.num_latency_runs,
        task_metrics=tuple(args.task_metrics),
        device=args.device,
        dataset_name=args.dataset_name,
        dataset_config=args.dataset_config,
        dataset_split=args.dataset_test_split,
        max_samples=args.max_samples,
        eval_batch_size=args.eval_batch_size,
        trust=trust_config_from_arguments(args, lambda split: load_dataset_argument(args, split)),
    )
    write_risk_record(report, args.student)
    output_dir = args.output_dir or (str(Path(args.student) / "benchmark") if Path(args.student).is_dir() else None)
    if output_dir is not None:
        _write_report(report, Path(output_dir))
    print(report.to_markdown())
    if output_dir is not None:
        print(f"\nReport, table and plot written to {output_dir}")
    return 0


def run_card(args: CardArguments) -> int:
    from ..benchmark import BenchmarkReport
    from ..publish.card import build_model_card
    from ..publish.provenance import Provenance

    require(args, "folder", command="card")
    folder = Path(args.folder)
    report_path = Path(args.report) if args.report else folder / "benchmark" / "report.json"
    report = BenchmarkReport.from_json(report_path) if report_path.is_file() else None
    if args.report and report is None:
        raise CliUsageError(
            f"--report {args.report!r} does not exist: pass a report written by `hf-distill benchmark`."
        )
    plot = _plot_path() if (folder / _plot_path()).is_file() else None
    card = build_model_card(
        Provenance.load(folder), report, repo_id=args.repo_id, student_license=args.student_license, plot_path=plot
    )
    output = Path(args.output) if args.output else folder / "README.md"
    replaced = _check_card_target(output, overwrite=args.overwrite)
    card.save(output)
    print(f"Model card written to {output}" + (f" (replaced the {replaced} there)" if replaced else "")
          + ("" if report else " (no benchmark report found: no results table)"))
    return 0


def _check_card_target(output: Path, *, overwrite: bool) -> str | None:
    """What `output` holds that the card replaces (None: nothing). A README that hf-distill did not write (its
    front matter lacks the `hf-distill` tag) is refused unless --overwrite: it may be the user's own text."""
    if not output.exists():
        return None
    from huggingface_hub import ModelCard

    try:
        tags = ModelCard.load(output).data.tags or []
    except Exception:  # unreadable front matter: not a card we wrote
        tags = []
    if "hf-distill" in tags:
        return "previous hf-distill card"
    if overwrite:
        return "existing file (--overwrite)"
    raise CliUsageError(
        f"{output} exists and was not written by hf-distill: pass --overwrite to replace it, or --output PATH to "
        "write the card elsewhere."
    )


def run_push(args: PushArguments) -> int:
    from ..publish.student import push_student

    require(args, "folder", "repo_id", command="push")  # an unreachable Hub fails fast there: main() adds the fix
    result = push_student(
        args.folder,
        args.repo_id,
        private=args.private,
        token=args.token,
        revision=args.revision,
        commit_message=args.commit_message,
        mode=args.mode,
        allow_license_conflict=args.allow_license_conflict,
        student_license=args.student_license,
        teacher_license=args.teacher_license,
    )
    print(
        f"Pushed {len(result.files)} files to {result.repo_url} ({result.mode}, licence "
        f"{result.verdict.student_license}: {result.verdict.status}): {result.commit_url}"
    )
    return 0


def run_space(args: SpaceArguments) -> int:
    from ..publish.space import create_space

    require(args, "student", "output_dir", command="space")
    check_hub_reachable({"--student": args.student, "--teacher": args.teacher})
    result = create_space(
        args.student, teacher=args.teacher, space_id=args.space_id, output_dir=args.output_dir,
        hardware=args.hardware, private=args.private, push=args.push, token=args.token, title=args.title,
        license=args.license, benchmark=args.benchmark, max_new_tokens=args.max_new_tokens,
    )
    print(f"Space folder: {result.folder} ({', '.join(result.files)})")
    for warning in result.warnings:
        print(f"warning: {warning}")
    if result.pushed:
        print(f"Space: {result.space_url} (commit {result.commit_oid})")
    else:
        print(f"Try it locally: cd {result.folder} && python app.py")
    return 0
