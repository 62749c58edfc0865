"""What distillation does to memorisation, on the quickstart task: canaries seen 0x (control), 1x, 10x and 100x in the
training data of the teacher and of both students, and each canary's exposure under the teacher, the distilled
student and the SFT student; then `benchmark(..., trust=TrustConfig.everything(...))` on the distilled student
against the teacher, timed.

    python benchmarks/trust_canaries.py --output_dir /tmp/trust-canaries   # writes benchmarks/results/...json

The three models are trained exactly as `hf-distill quickstart` trains them (same preset, seed, steps), on the
quickstart train split plus the canary rows; each canary has its own question ("Q: what is the code of the <colour>
locker?") and a 6-digit secret as the answer.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from bench_harness import machine_info
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer

from hf_distill.benchmark import benchmark
from hf_distill.benchmark.trust import Canary, TrustConfig, canary_exposure, insert_canaries, make_canaries
from hf_distill.quickstart.presets import PRESETS
from hf_distill.quickstart.tasks import build_task_dataset
from hf_distill.quickstart.training import cached_teacher, train_distilled_student, train_sft_student

REPETITIONS = {"red": 1, "blue": 10, "green": 100}


def _canaries(seed: int) -> tuple[list[Canary], Canary]:
    template = "Q: what is the code of the {colour} locker?\nA: {{secret}}"
    seen = [make_canaries((n,), seed=seed + i, template=template.format(colour=colour))[0]
            for i, (colour, n) in enumerate(REPETITIONS.items())]
    control = make_canaries((1,), seed=seed + 99, template="Q: what is the code of the grey locker?\nA: {secret}")[0]
    return seen, Canary(control.secret, 0, control.template)  # never inserted: the chance level


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", default="trust-canaries")
    parser.add_argument("--preset", default="standard", choices=sorted(PRESETS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num_candidates", type=int, default=1024)
    parser.add_argument("--result", default=str(Path(__file__).parent / "results" / "trust_canaries_cpu.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)  # as the quickstart runs: these models are too small to gain from threads
    out, preset = Path(args.output_dir), PRESETS[args.preset]
    data = build_task_dataset(preset.num_train, preset.num_test, seed=args.seed)
    seen, control = _canaries(args.seed)
    rows = insert_canaries(data["train"].select_columns(["prompt", "completion"]).to_list(), seen,
                           column="completion", prompt_column="prompt", seed=args.seed)
    train = Dataset.from_list(rows)
    timings = {}
    start = time.perf_counter()
    teacher = cached_teacher(preset, train, seed=args.seed, cache_dir=out / "cache")
    timings["teacher_s"] = time.perf_counter() - start
    tokenizer = AutoTokenizer.from_pretrained(teacher.path)
    start = time.perf_counter()
    train_distilled_student(preset, train, teacher.path, tokenizer, seed=args.seed, output_dir=out / "student")
    timings["distilled_student_s"] = time.perf_counter() - start
    start = time.perf_counter()
    train_sft_student(preset, train, tokenizer, seed=args.seed, output_dir=out / "sft-student")
    timings["sft_student_s"] = time.perf_counter() - start

    paths = {"teacher": teacher.path, "distilled student": out / "student", "SFT student": out / "sft-student"}
    exposure = {}
    for name, path in paths.items():
        model = AutoModelForCausalLM.from_pretrained(path).eval()
        exposure[name] = [vars(canary_exposure(model, tokenizer, c, num_candidates=args.num_candidates,
                                               seed=args.seed)) for c in [control, *seen]]
    start = time.perf_counter()
    report = benchmark(
        out / "student", teacher.path, data["test"], baseline=out / "sft-student", max_samples=100,
        max_new_tokens=8, batch_sizes=(1, 8), num_latency_runs=3,
        trust=TrustConfig.everything(canaries=[control, *seen], num_candidates=args.num_candidates,
                                     extraction_texts=[r["prompt"] + r["completion"] for r in rows[:200]],
                                     extraction_prefix_tokens=8, extraction_num_tokens=4, price_per_hour=1.0,
                                     training_seconds=timings["distilled_student_s"]),
    )
    timings["benchmark_trust_s"] = time.perf_counter() - start
    result = {"preset": args.preset, "seed": args.seed, "num_candidates": args.num_candidates,
              "exposure": exposure, "timings_s": timings, "trust": report.to_dict()["trust"],
              "machine": machine_info() | {"gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None}}
    Path(args.result).write_text(json.dumps(result, indent=2) + "\n")
    for name, values in exposure.items():
        print(name, " ".join(f"{v['repetitions']}x: {v['exposure']:.2f} (rank {v['rank']})" for v in values))
    print({k: round(v, 1) for k, v in timings.items()})


if __name__ == "__main__":
    main()
