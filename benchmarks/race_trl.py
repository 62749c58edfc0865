"""Race `DistillationTrainer` (online teacher, off-policy) against TRL's `GKDTrainer` with `lmbda=0` (its off-policy
mode) on SmolLM2-135M-Instruct -> its half-depth `init_student` copy: same chat data, batch, sequence length,
divergence (`jsd`, beta 0.5), temperature 1 and steps, one process each. Steps after the warm-up are timed: seconds
per step (wall-clock and process CPU), tokens/s, and peak RSS (CPU) or peak CUDA memory (GPU). Also timed: a TRL
`SFTTrainer` step on the student alone and the teacher's forward pass (the floor a distillation step cannot beat),
and the first-step losses of both trainers. Each chat is the longest that fits `max_length`, so neither trainer
truncates (they truncate from opposite ends) and both train on the same tokens: the JSON records a fingerprint of
each trainer's first batch.

Run:
    OMP_NUM_THREADS=1 python benchmarks/race_trl.py --warmup 1 --steps 3
        # CPU, real weights (fetched once into the cache), as committed; one thread on a shared machine
    python benchmarks/race_trl.py --smoke                        # 2 timed steps at batch 2 x 64 tokens
    python benchmarks/race_trl.py --device cuda --random_weights --tokenizer <folder>
        # GPU machine without a package index: SmolLM2's shapes from its config, random weights (no download); the
        # tokenizer folder is the one `tests/real_checkpoints.tokenizer_folder` saves (2 MB), carried along.
Writes benchmarks/results/race_trl_<device>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench_harness import machine_info, peak_rss_bytes, run_worker, worker_reply  # noqa: E402

PROMPTS = REPO / "benchmarks" / "data" / "prompts.jsonl"
WORKERS = ("ours", "trl_gkd", "trl_sft_student", "teacher_forward")
# SmolLM2-135M-Instruct's architecture (its GGUF metadata), for --random_weights.
SMOLLM2_SHAPE = dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                     num_key_value_heads=3, vocab_size=49_152, max_position_embeddings=8192, rms_norm_eps=1e-5,
                     tie_word_embeddings=True, rope_theta=100_000.0)


def _answer(prompt: str, num_words: int) -> str:
    """A deterministic assistant turn (the race times steps, not text)."""
    words = ("the answer depends on several simple facts that we can check one at a time and then combine "
             + prompt.lower()).split()
    return " ".join(words[i % len(words)] for i in range(num_words)).capitalize() + "."


def _fitted_chat(prompt: str, num_words: int, tokenizer, max_length: int) -> list[dict]:
    """The longest chat of at most `num_words` answer words whose templated tokens fit `max_length`: nothing is
    truncated, so both trainers train on the same tokens (TRL GKD's collator keeps the last `max_length` tokens,
    ours the first: on longer rows they would see different tokens)."""
    def chat(words):
        return [{"role": "user", "content": prompt}, {"role": "assistant", "content": _answer(prompt, words)}]

    def fits(words):
        return len(tokenizer.apply_chat_template(chat(words), tokenize=True, return_dict=False)) <= max_length

    if not fits(1):
        raise ValueError(f"--max_length {max_length} is too short for the prompt {prompt!r} and a one-word answer; "
                         "raise --max_length.")
    low, high = 1, num_words  # the longest word count that fits, by bisection (token count grows with words)
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if fits(middle) else (low, middle - 1)
    return chat(low)


def chat_rows(count: int, num_words: int, tokenizer, max_length: int) -> list[list[dict]]:
    prompts = [json.loads(line)["prompt"][0]["content"] for line in PROMPTS.read_text().splitlines()]
    return [_fitted_chat(prompts[i % len(prompts)], num_words, tokenizer, max_length) for i in range(count)]


def batch_fingerprint(inputs) -> str:
    """SHA-256 of each row's attended token ids and loss mask, independent of padding side and batch width: equal
    fingerprints mean both trainers computed their first loss on the same tokens."""
    import hashlib

    digest = hashlib.sha256()
    for ids, attention, labels in zip(inputs["input_ids"], inputs["attention_mask"], inputs["labels"], strict=True):
        kept = attention.bool()
        digest.update(json.dumps([ids[kept].tolist(), (labels[kept] != -100).tolist()]).encode())
    return digest.hexdigest()


def load_models(args):
    """(teacher, student, tokenizer): real SmolLM2 and its half-depth init, or random weights of the same shapes."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

    from hf_distill.students import init_student

    if args.random_weights:
        torch.manual_seed(0)
        teacher = AutoModelForCausalLM.from_config(LlamaConfig(**SMOLLM2_SHAPE))
        tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    else:
        from tests.real_checkpoints import CHECKPOINTS, converted_checkpoint

        folder = converted_checkpoint(CHECKPOINTS["smollm2-135m-instruct"])
        teacher, tokenizer = AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    student = init_student(teacher, num_layers=15, strategy="uniform")
    return teacher.to(args.device).eval(), student.to(args.device), tokenizer


def _timed(trainer, device: str, record: dict):
    """Wrap `trainer.training_step` to time each step and count its tokens (synchronising CUDA around it)."""
    import torch

    original = trainer.training_step

    def step(model, inputs, *rest, **kwargs):
        if device == "cuda":
            torch.cuda.synchronize()
        start, cpu_start = time.perf_counter(), time.process_time()
        loss = original(model, inputs, *rest, **kwargs)
        if device == "cuda":
            torch.cuda.synchronize()
        record["seconds"].append(time.perf_counter() - start)
        record["cpu_seconds"].append(time.process_time() - cpu_start)
        record["tokens"].append(int(inputs["attention_mask"].sum()))
        record["losses"].append(float(loss))
        record.setdefault("first_batch", batch_fingerprint(inputs))
        return loss

    trainer.training_step = step


def _common(args) -> dict:
    return dict(output_dir=os.path.join(args.work_dir, args.worker), report_to="none", save_strategy="no",
                max_steps=args.warmup + args.steps, per_device_train_batch_size=args.batch_size,
                max_length=args.max_length, learning_rate=1e-5, seed=0, logging_steps=1_000_000,
                use_cpu=args.device == "cpu", bf16=False, dataloader_num_workers=0)


def build_trainer(args, teacher, student, tokenizer, rows):
    from datasets import Dataset

    if args.worker == "ours":
        from hf_distill import DistillationConfig, DistillationTrainer

        data = Dataset.from_dict({"prompt": [r[:1] for r in rows], "completion": [r[1:] for r in rows]})
        config = DistillationConfig(divergence="jsd", beta=0.5, alpha=1.0, temperature=1.0, **_common(args))
        return DistillationTrainer(model=student, teacher_model=teacher, args=config, train_dataset=data,
                                   processing_class=tokenizer)
    if args.worker == "trl_gkd":
        os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
        from trl.experimental.gkd import GKDConfig, GKDTrainer

        config = GKDConfig(lmbda=0.0, beta=0.5, temperature=1.0, **_common(args))
        return GKDTrainer(model=student, teacher_model=teacher, args=config,
                          train_dataset=Dataset.from_dict({"messages": rows}), processing_class=tokenizer)
    from trl import SFTConfig, SFTTrainer

    data = Dataset.from_dict({"prompt": [r[:1] for r in rows], "completion": [r[1:] for r in rows]})
    return SFTTrainer(model=student, args=SFTConfig(**_common(args)), train_dataset=data, processing_class=tokenizer)


def teacher_forward(args, teacher, tokenizer, rows) -> dict:
    import torch

    texts = [tokenizer.apply_chat_template(r, tokenize=False) for r in rows[: args.batch_size]]
    batch = tokenizer(texts, return_tensors="pt", padding=True, truncation=True,
                      max_length=args.max_length).to(args.device)
    seconds, cpu_seconds = [], []
    with torch.no_grad():
        for _ in range(args.warmup + args.steps):
            if args.device == "cuda":
                torch.cuda.synchronize()
            start, cpu_start = time.perf_counter(), time.process_time()
            teacher(**batch)
            if args.device == "cuda":
                torch.cuda.synchronize()
            seconds.append(time.perf_counter() - start)
            cpu_seconds.append(time.process_time() - cpu_start)
    tokens = [int(batch["attention_mask"].sum())] * len(seconds)
    return {"seconds": seconds, "cpu_seconds": cpu_seconds, "tokens": tokens, "losses": []}


def worker(args) -> None:
    import torch

    torch.manual_seed(0)
    teacher, student, tokenizer = load_models(args)
    rows = chat_rows(args.batch_size * (args.warmup + args.steps), args.answer_words, tokenizer, args.max_length)
    if args.worker == "teacher_forward":
        record = teacher_forward(args, teacher, tokenizer, rows)
    else:
        record = {"seconds": [], "cpu_seconds": [], "tokens": [], "losses": []}
        trainer = build_trainer(args, teacher, student, tokenizer, rows)
        _timed(trainer, args.device, record)
        if args.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        trainer.train()
    timed = record["seconds"][args.warmup:]
    seconds = statistics.median(timed)
    tokens = statistics.median(record["tokens"][args.warmup:])
    worker_reply({
        "seconds_per_step": seconds, "all_seconds": record["seconds"], "tokens_per_step": tokens,
        # process CPU seconds (all threads): steadier than wall-clock on a machine shared with other work
        "cpu_seconds_per_step": statistics.median(record["cpu_seconds"][args.warmup:]),
        "all_cpu_seconds": record["cpu_seconds"],
        "tokens_per_second": tokens / seconds, "first_step_loss": record["losses"][0] if record["losses"] else None,
        "first_batch_fingerprint": record.get("first_batch"), "peak_rss_bytes": peak_rss_bytes(),
        "peak_cuda_bytes": torch.cuda.max_memory_allocated() if args.device == "cuda" else None,
    })


def summarise(results: dict, device: str) -> dict:
    memory = "peak_cuda_bytes" if device == "cuda" else "peak_rss_bytes"
    if any("error" in result for result in results.values()):
        return {"error": "a worker failed; see its entry in results"}
    ours, gkd = results["ours"], results["trl_gkd"]
    floor = results["trl_sft_student"]["seconds_per_step"] + results["teacher_forward"]["seconds_per_step"]
    return {
        "tokens_per_second_vs_trl_gkd": ours["tokens_per_second"] / gkd["tokens_per_second"],
        "peak_memory_vs_trl_gkd": ours[memory] / gkd[memory],
        "step_vs_sft_step_plus_teacher_forward": ours["seconds_per_step"] / floor,
        "cpu_seconds_vs_trl_gkd": ours["cpu_seconds_per_step"] / gkd["cpu_seconds_per_step"],
        "cpu_step_vs_sft_step_plus_teacher_forward": ours["cpu_seconds_per_step"] / (
            results["trl_sft_student"]["cpu_seconds_per_step"] + results["teacher_forward"]["cpu_seconds_per_step"]),
        "first_step_loss_relative_difference": abs(ours["first_step_loss"] - gkd["first_step_loss"])
        / abs(gkd["first_step_loss"]),
        "same_first_batch_tokens": ours["first_batch_fingerprint"] == gkd["first_batch_fingerprint"],
        "goals": {"tokens_per_second_vs_trl_gkd": ">= 3", "peak_memory_vs_trl_gkd": "<= 0.5",
                  "step_vs_sft_step_plus_teacher_forward": "<= 0.75",
                  "first_step_loss_relative_difference": "<= 1e-3"},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--random_weights", action="store_true", help="SmolLM2 shapes from a config, no download.")
    parser.add_argument("--tokenizer", default=None, help="Tokenizer folder (needed with --random_weights).")
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--max_length", type=int, default=256)
    parser.add_argument("--answer_words", type=int, default=240)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--worker", choices=WORKERS, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--work_dir", default="/tmp/hf_distill_race")
    parser.add_argument("--output", default=None)
    args = parser.parse_args()
    if args.smoke:
        args.batch_size, args.max_length, args.answer_words, args.warmup, args.steps = 2, 64, 40, 1, 2
    if args.random_weights and not args.tokenizer:
        parser.error("--random_weights needs --tokenizer (a saved tokenizer folder): nothing is downloaded")
    if args.worker:
        return worker(args)
    passthrough = [a for a in sys.argv[1:] if a not in ("--smoke",)]
    sizes = ["--batch_size", str(args.batch_size), "--max_length", str(args.max_length), "--answer_words",
             str(args.answer_words), "--warmup", str(args.warmup), "--steps", str(args.steps)]
    results = {name: run_worker(__file__, [*passthrough, *sizes, "--worker", name]) for name in WORKERS}
    report = {"settings": {k: v for k, v in vars(args).items() if k not in ("worker", "output")},
              "results": results, "ratios": summarise(results, args.device), "machine": machine_info()}
    suffix = "_smoke" if args.smoke else ""
    output = Path(args.output or REPO / "benchmarks" / "results" / f"race_trl_{args.device}{suffix}.json")
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["ratios"], indent=2))
    for name, result in results.items():
        print(name, {k: v for k, v in result.items() if not k.startswith("all_")})


if __name__ == "__main__":
    main()
