"""Logit distillation across tokenizers against sequence-level distillation alone, on a task with several valid
answers per prompt (the quickstart's task: "name a fruit other than apple", ...).

A teacher with a SentencePiece-style tokenizer (`▁` spaces, byte fallback) and a student with a byte-level BPE
tokenizer, both tokenizers trained on the same corpus. The teacher is trained once on the task; it then writes one
sampled completion per training prompt (sequence-level data). Every student starts from the same weights (per seed)
and trains on those completions for the same steps with the same data order, three ways, all through
`DistillationTrainer(cross_tokenizer=...)`:

- `sequence-level`: `alpha=0`, cross-entropy on the teacher's completions only;
- `uld` and `span`: `alpha=0.5`, the same cross-entropy plus the cross-tokenizer loss against the teacher's logits.

Measured on the held-out prompts: task accuracy of the student's greedy answer (any valid answer counts) and the
teacher's log-likelihood of the student's greedy answers (mean over prompts of the summed log-probability, in the
teacher's own tokenization, of ` <answer>` and its EOS). Writes `benchmarks/results/cross_tokenizer_cpu.json`.
The defaults (the quickstart's sizes: teacher 128 x 4 layers, 800 steps; students 64 x 2, 300 steps; 4 seeds) took
about 12 minutes on 2 shared CPU cores with one torch thread.

    python benchmarks/cross_tokenizer.py
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM
from transformers.utils import logging as hf_logging

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.tiny: the SentencePiece-style tokenizer builder

from bench_harness import machine_info  # noqa: E402

from hf_distill import DistillationConfig, DistillationTrainer  # noqa: E402
from hf_distill.quickstart.models import ModelShape, build_config, train_tokenizer  # noqa: E402
from hf_distill.quickstart.tasks import answer_is_valid, build_task_dataset, extract_answer  # noqa: E402
from tests.tiny import build_sentencepiece_tokenizer  # noqa: E402

METHODS = {"sequence-level": (None, 0.0), "uld": ("uld", 0.5), "span": ("span", 0.5)}


def _common(steps: int, learning_rate: float, seed: int, output_dir: Path) -> dict:
    return dict(output_dir=str(output_dir), max_steps=steps, per_device_train_batch_size=32,
                learning_rate=learning_rate, lr_scheduler_type="cosine", warmup_steps=max(1, steps // 25),
                weight_decay=0.0, seed=seed, data_seed=seed, report_to="none", save_strategy="no", bf16=False,
                disable_tqdm=True, logging_steps=max(1, steps // 5), use_cpu=True)


def _new_model(shape, tokenizer, seed: int):
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(build_config(shape, tokenizer))


def train_teacher(train, tokenizer, shape: ModelShape, *, steps: int, output_dir: Path):
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(**_common(steps, 2e-3, 0, output_dir))
    trainer = SFTTrainer(model=_new_model(shape, tokenizer, 0), args=args, train_dataset=train,
                         processing_class=tokenizer)
    trainer.train()
    return trainer.model.eval()


@torch.no_grad()
def generate(model, tokenizer, prompts: list[str], *, sample: bool, seed: int = 0, batch_size: int = 64) -> list[str]:
    """Completions of `prompts` (4 new tokens), greedy or sampled, decoded without special tokens."""
    torch.manual_seed(seed)
    tokenizer.padding_side = "left"
    outputs = []
    for start in range(0, len(prompts), batch_size):
        batch = tokenizer(prompts[start:start + batch_size], return_tensors="pt", padding=True)
        ids = model.generate(**batch, max_new_tokens=4, do_sample=sample, top_k=0, pad_token_id=tokenizer.pad_token_id,
                             eos_token_id=tokenizer.eos_token_id)
        outputs += tokenizer.batch_decode(ids[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
    tokenizer.padding_side = "right"
    return outputs


@torch.no_grad()
def teacher_log_likelihood(teacher, tokenizer, prompts: list[str], answers: list[str]) -> float:
    """Mean over rows of log p_teacher(` <answer>` + EOS | prompt), in the teacher's own tokenization."""
    total = 0.0
    for prompt, answer in zip(prompts, answers, strict=True):
        prompt_ids = tokenizer(prompt)["input_ids"]
        answer_ids = tokenizer(" " + answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        ids = torch.tensor([prompt_ids + answer_ids])
        log_probs = torch.log_softmax(teacher(input_ids=ids).logits[0, :-1].double(), -1)
        targets = ids[0, len(prompt_ids):]
        total += float(log_probs[torch.arange(len(prompt_ids) - 1, ids.shape[1] - 1), targets].sum())
    return total / len(prompts)


def train_student(method, rows, tokenizer, teacher, teacher_tokenizer, shape, *, steps: int, seed: int, root: Path):
    cross_tokenizer, alpha = METHODS[method]
    args = DistillationConfig(cross_tokenizer=cross_tokenizer or "uld", alpha=alpha, divergence="forward_kl",
                              **_common(steps, 3e-3, seed, root / f"{method}-{seed}"))
    trainer = DistillationTrainer(model=_new_model(shape, tokenizer, seed), teacher_model=teacher, args=args,
                                  train_dataset=rows, processing_class=tokenizer,
                                  teacher_processing_class=teacher_tokenizer)
    started = time.perf_counter()
    trainer.train()
    return trainer.model.eval(), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--teacher_steps", type=int, default=800)
    parser.add_argument("--student_steps", type=int, default=300)
    parser.add_argument("--num_train", type=int, default=4000)
    parser.add_argument("--teacher_shape", type=int, nargs=2, default=(128, 4), metavar=("HIDDEN", "LAYERS"))
    parser.add_argument("--student_shape", type=int, nargs=2, default=(64, 2), metavar=("HIDDEN", "LAYERS"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "cross_tokenizer_cpu.json"))
    parser.add_argument("--work_dir", default="/tmp/hf_distill_cross_tokenizer")
    options = parser.parse_args()
    hf_logging.set_verbosity_error()
    torch.set_num_threads(options.threads)
    teacher_shape, student_shape = ModelShape(*options.teacher_shape), ModelShape(*options.student_shape)
    data = build_task_dataset(num_train=options.num_train, num_test=300, seed=0)
    texts = [row["prompt"] + row["completion"] for row in data["train"]]
    student_tokenizer = train_tokenizer(texts, vocab_size=400)
    teacher_tokenizer = build_sentencepiece_tokenizer(texts, vocab_size=400)
    root = Path(options.work_dir)
    started = time.perf_counter()
    teacher = train_teacher(data["train"], teacher_tokenizer, teacher_shape, steps=options.teacher_steps,
                            output_dir=root / "t")
    teacher_seconds = time.perf_counter() - started
    prompts = data["train"]["prompt"]
    rows = data["train"].select_columns(["prompt"]).add_column(
        "completion", [" " + extract_answer(text) for text in generate(teacher, teacher_tokenizer, prompts,
                                                                        sample=True)])
    test_prompts, valid = data["test"]["prompt"], data["test"]["valid_answers"]
    teacher_answers = [extract_answer(t) for t in generate(teacher, teacher_tokenizer, test_prompts, sample=False)]
    runs = []
    for seed in range(options.seeds):
        for method in METHODS:
            student, seconds = train_student(method, rows, student_tokenizer, teacher, teacher_tokenizer,
                                             student_shape, steps=options.student_steps, seed=seed, root=root)
            answers = [extract_answer(t) for t in generate(student, student_tokenizer, test_prompts, sample=False)]
            runs.append({
                "method": method, "seed": seed, "train_seconds": round(seconds, 2),
                "accuracy": sum(answer_is_valid(a, v) for a, v in zip(answers, valid, strict=True)) / len(answers),
                "teacher_log_likelihood": teacher_log_likelihood(teacher, teacher_tokenizer, test_prompts, answers),
            })
            print(json.dumps(runs[-1]), flush=True)
    summary = {}
    for method in METHODS:
        mine = [run for run in runs if run["method"] == method]
        summary[method] = {key: {"mean": statistics.mean(r[key] for r in mine),
                                 "stdev": statistics.stdev(r[key] for r in mine) if len(mine) > 1 else 0.0}
                           for key in ("accuracy", "teacher_log_likelihood")}
    result = {
        "options": vars(options), "machine": machine_info(), "teacher_train_seconds": round(teacher_seconds, 1),
        "teacher_accuracy": sum(answer_is_valid(a, v) for a, v in zip(teacher_answers, valid, strict=True)) / 300,
        "teacher_vocab": len(teacher_tokenizer), "student_vocab": len(student_tokenizer),
        "runs": runs, "summary": summary,
    }
    Path(options.output).parent.mkdir(parents=True, exist_ok=True)
    Path(options.output).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"teacher_accuracy": result["teacher_accuracy"], "summary": summary}, indent=2))


if __name__ == "__main__":
    main()
