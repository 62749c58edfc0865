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
    """Train one student; returns it with its time per step: in total, sampling (`generate`), building the sampled
    batches, and the rest (student forward and backward, teacher forward, optimizer). Wall-clock and process CPU time
    (one torch thread: CPU time is the work done, steadier than wall-clock on a shared machine)."""
    started, started_cpu = time.perf_counter(), time.process_time()
    if lmbda is None:
        trainer = train_sft_student(preset, train, tokenizer, seed=seed, output_dir=out / name)
    else:
        trainer = train_distilled_student(preset, train, teacher, tokenizer, seed=seed, output_dir=out / name,
                                          config_overrides={"lmbda": lmbda, "max_new_tokens": max_new_tokens})
    total_cpu_s = time.process_time() - started_cpu  # training and saving: saving is a few ms at this size
    sampler = getattr(trainer, "on_policy", None)  # None for SFT and lmbda=0: every batch is the dataset's
    train_s, steps = float(trainer.state.log_history[-1]["train_runtime"]), trainer.state.global_step
    timing = {"wall_s": time.perf_counter() - started, "train_s": train_s, "steps": steps, "step_s": train_s / steps,
              "step_cpu_s": total_cpu_s / steps,
              "completion_sources": dict(sampler.counts) if sampler is not None else {}}
    for clock, suffix in (("seconds", "s"), ("cpu_seconds", "cpu_s")):
        generation = getattr(sampler, f"generation_{clock}", 0.0)
        rebuild = getattr(sampler, f"rebuild_{clock}", 0.0)
        total = train_s if suffix == "s" else total_cpu_s
        timing |= {f"sampling_step_{suffix}": generation / steps, f"batch_build_step_{suffix}": (
            rebuild - generation) / steps, f"rest_step_{suffix}": (total - rebuild) / steps}
    return trainer.model, timing


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
