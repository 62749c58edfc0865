"""Served teacher: the training step with requests prefetched against the same step fetching on the spot.

A local teacher server (`tests/served_teacher_server.py`, speaking vLLM's `/v1/completions`) backed by a tiny model
adds an artificial latency to every scoring request. For each latency:

- `teacher_latency`: median seconds of one batched top-k request from the client (the batch the trainer sends);
- `student_step`: median seconds per optimizer step with a zero-latency server (the student's own step, plus the
  tiny server's compute);
- `prefetched_step`: median seconds per step with the served teacher as shipped (requests for the next batch sent
  while the student trains on the current one);
- `sequential_step`: the same with prefetching turned off (every request made when the step asks for it);
- `ratio_to_max`: prefetched_step / max(student_step, teacher_latency); the goal is <= 1.1 when the teacher is
  slower than the student.

Steps are timed from `on_step_end` to `on_step_end` after `--warmup` steps. The machine may be shared: the numbers
are wall-clock and noisy; the JSON records the machine.

    python benchmarks/served_teacher.py                   # writes benchmarks/results/served_teacher_cpu.json
    python benchmarks/served_teacher.py --latencies 0.05 0.4 --steps 20 --output /tmp/served.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)
from bench_harness import machine_info  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")


class _StepClock:
    """A `TrainerCallback` keeping the wall-clock time of every step's end."""

    def __init__(self):
        from transformers import TrainerCallback

        clock = self
        self.ends: list[float] = []

        class Callback(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                clock.ends.append(time.perf_counter())

        self.callback = Callback()

    def median_step(self, warmup: int) -> float:
        gaps = [b - a for a, b in zip(self.ends[warmup:], self.ends[warmup + 1:], strict=False)]
        return statistics.median(gaps)


def _train(url, tokenizer, args, *, prefetch: bool, output_dir: str) -> float:
    from hf_distill import DistillationConfig, DistillationTrainer
    from hf_distill.teachers import ServedTeacher
    from tests import tiny

    config = DistillationConfig(output_dir=output_dir, report_to="none", save_strategy="no", max_steps=args.steps,
                                per_device_train_batch_size=args.batch_size, learning_rate=1e-4, logging_steps=1000,
                                seed=0, disable_tqdm=True)
    student = tiny.ModelFactory(tokenizer)("llama", hidden=args.student_hidden, layers=args.student_layers, seed=3)
    trainer = DistillationTrainer(model=student, teacher_model=ServedTeacher(url, top_k=args.top_k), args=config,
                                  train_dataset=tiny.prompt_completion_dataset(args.steps * args.batch_size),
                                  processing_class=tokenizer)
    if not prefetch:  # the collator without the prefetching wrapper: every request made when the step asks
        trainer.data_collator = trainer.data_collator.collator
    clock = _StepClock()
    trainer.add_callback(clock.callback)
    trainer.train()
    return clock.median_step(args.warmup)


def _teacher_latency(url, tokenizer, args) -> float:
    from hf_distill.teachers.served_client import ServerClient
    from tests import tiny

    rows = [tokenizer(p + c)["input_ids"] for p, c in zip(*tiny.prompt_completion_dataset(args.batch_size)[:].values(),
                                                            strict=True)]
    client = ServerClient(url, "vllm")
    timings = []
    for _ in range(5):
        start = time.perf_counter()
        client.top_k(rows, args.top_k, "tiny-teacher")
        timings.append(time.perf_counter() - start)
    return statistics.median(timings[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latencies", type=float, nargs="+", default=[0.1, 0.3])
    parser.add_argument("--steps", type=int, default=14)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--top-k", type=int, default=20)
    parser.add_argument("--student-hidden", type=int, default=256)
    parser.add_argument("--student-layers", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", default=os.path.join(HERE, "results", "served_teacher_cpu.json"))
    args = parser.parse_args()

    import torch

    from tests import tiny
    from tests.served_teacher_server import TeacherServer

    torch.set_num_threads(args.threads)
    tokenizer = tiny.build_tokenizer()
    work = tempfile.mkdtemp(prefix="served_bench_")
    teacher_dir = tiny.ModelFactory(tokenizer).save(os.path.join(work, "teacher"), "llama", hidden=32, layers=2)
    results = []
    server = TeacherServer(teacher_dir, latency=0.0)
    try:
        student_step = _train(server.url, tokenizer, args, prefetch=True, output_dir=os.path.join(work, "s"))
        for latency in args.latencies:
            server.set_faults(delay=latency)
            teacher = _teacher_latency(server.url, tokenizer, args)
            prefetched = _train(server.url, tokenizer, args, prefetch=True, output_dir=os.path.join(work, "p"))
            sequential = _train(server.url, tokenizer, args, prefetch=False, output_dir=os.path.join(work, "q"))
            row = {"added_latency": latency, "teacher_latency": teacher, "student_step": student_step,
                   "prefetched_step": prefetched, "sequential_step": sequential,
                   "sum_of_both": student_step + teacher, "ratio_to_max": prefetched / max(student_step, teacher)}
            results.append(row)
            print(json.dumps(row), flush=True)
    finally:
        server.stop()
    report = {"settings": vars(args) | {"output": None}, "machine": machine_info(), "results": results,
              "note": "wall-clock on a machine shared with other work; medians over steps after the warm-up"}
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
