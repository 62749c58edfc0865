"""On-policy distillation on the quickstart task: the student trained with `lmbda` in {0, 0.5, 1} (the share of
batches whose completions it samples itself, scored by the teacher) against plain SFT, with the same preset, seed,
steps, data order and initial weights; then each one's held-out forward KL to the teacher and task accuracy
(`hf_distill.benchmark`), and the training step time split into sampling and the rest (forward, backward, teacher,
optimizer).

    python benchmarks/on_policy.py                 # writes benchmarks/results/on_policy_cpu.json

The teacher and the students are the quickstart's (`hf_distill.quickstart`: task data, cached teacher, student
shape, learning rate, 500 steps).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import torch
from bench_harness import machine_info
from transformers import AutoTokenizer

from hf_distill.benchmark import benchmark
from hf_distill.quickstart.presets import PRESETS
from hf_distill.quickstart.scoring import task_accuracy_metric
from hf_distill.quickstart.tasks import build_task_dataset
from hf_distill.quickstart.training import cached_teacher, train_distilled_student, train_sft_student

COLUMNS = ["prompt", "completion"]


def _train(name, preset, train, teacher, tokenizer, *, seed, out, lmbda, max_new_tokens):
    """Train one student; returns it with its step time and the time its sampling took."""
    started = time.perf_counter()
    if lmbda is None:
        trainer = train_sft_student(preset, train, tokenizer, seed=seed, output_dir=out / name)
        sampling_s, sources = 0.0, {}
    else:
        overrides = {"lmbda": lmbda, "max_new_tokens": max_new_tokens}
        trainer = train_distilled_student(preset, train, teacher, tokenizer, seed=seed, output_dir=out / name,
                                          config_overrides=overrides)
        sampler = trainer.on_policy  # None at lmbda=0: every batch is the dataset's
        sampling_s = sampler.generation_seconds if sampler is not None else 0.0
        sources = dict(sampler.counts) if sampler is not None else {"dataset": trainer.state.global_step}
    train_s = float(trainer.state.log_history[-1]["train_runtime"])
    steps = trainer.state.global_step
    return trainer.model, {
        "train_s": train_s, "wall_s": time.perf_counter() - started, "steps": steps,
        "step_s": train_s / steps, "sampling_step_s": sampling_s / steps,
        "rest_step_s": (train_s - sampling_s) / steps, "completion_sources": sources,
    }


def _evaluate(model, teacher, test, tokenizer, preset, accuracy) -> dict:
    report = benchmark(model.eval(), teacher, test, tokenizer=tokenizer, max_new_tokens=preset.max_new_tokens,
                       batch_sizes=(8,), num_latency_runs=1, task_metrics=(accuracy,))
    quality = report.student.quality
    return {"forward_kl_to_teacher": report.student.fidelity.forward_kl,
            "task_accuracy": quality.task_metrics[accuracy], "token_accuracy": quality.token_accuracy,
            "cross_entropy": quality.cross_entropy}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", default="on-policy-bench")
    parser.add_argument("--cache_dir", default=None, help="teacher cache (default: the quickstart's)")
    parser.add_argument("--preset", default="standard", choices=sorted(PRESETS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=500, help="optimizer steps of each student (the quickstart's)")
    parser.add_argument("--lmbdas", type=float, nargs="+", default=[0.0, 0.5, 1.0])
    parser.add_argument("--max_new_tokens", type=int, default=4, help="sampled tokens per completion (answers are "
                        "one or two tokens plus the end of sequence)")
    parser.add_argument("--result", default=str(Path(__file__).parent / "results" / "on_policy_cpu.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)  # as the quickstart runs: these models are too small to gain from threads
    out, preset = Path(args.output_dir), replace(PRESETS[args.preset], student_steps=args.steps)
    data = build_task_dataset(preset.num_train, preset.num_test, seed=args.seed)
    train, test = data["train"].select_columns(COLUMNS), data["test"]
    started = time.perf_counter()
    teacher = cached_teacher(PRESETS[args.preset], train, seed=args.seed, cache_dir=args.cache_dir)
    teacher_s = time.perf_counter() - started
    tokenizer = AutoTokenizer.from_pretrained(teacher.path)

    runs = {"sft": None, **{f"lmbda={lmbda:g}": lmbda for lmbda in args.lmbdas}}
    results = {}
    with task_accuracy_metric(test) as accuracy:
        teacher_scores = _evaluate_teacher(teacher.path, test, tokenizer, preset, accuracy)
        for name, lmbda in runs.items():
            model, timing = _train(name, preset, train, teacher.path, tokenizer, seed=args.seed, out=out,
                                   lmbda=lmbda, max_new_tokens=args.max_new_tokens)
            results[name] = {"lmbda": lmbda, **timing, **_evaluate(model, teacher.path, test.select_columns(
                COLUMNS), tokenizer, preset, accuracy)}
            print(name, {k: round(v, 4) if isinstance(v, float) else v for k, v in results[name].items()})
    record = {"preset": args.preset, "seed": args.seed, "steps": args.steps, "batch_size": preset.batch_size,
              "max_new_tokens": args.max_new_tokens, "teacher": teacher_scores,
              "teacher_s": teacher_s, "teacher_cache_hit": teacher.cache_hit, "runs": results,
              "machine": machine_info()}
    Path(args.result).write_text(json.dumps(record, indent=2) + "\n")


def _evaluate_teacher(teacher, test, tokenizer, preset, accuracy) -> dict:
    """The teacher's own task accuracy (the ceiling the students approach)."""
    report = benchmark(teacher, None, test.select_columns(COLUMNS), tokenizer=tokenizer,
                       max_new_tokens=preset.max_new_tokens, batch_sizes=(8,), num_latency_runs=1,
                       task_metrics=(accuracy,))
    return {"task_accuracy": report.student.quality.task_metrics[accuracy]}


if __name__ == "__main__":
    main()
