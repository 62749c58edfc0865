"""On-policy and mixed distillation (`lmbda`, `seq_kd`): on fixed sampled sequences the trainer's loss equals a float64
reference written from the definition and TRL's GKD loss; with `lmbda=1` the dataset's completions never reach the
loss; sampling is reproducible for a seed; gradient accumulation stays exact; `lmbda=0` is the off-policy path.

"Fixed sampled sequences": the models' `generate` is replaced by `_FixedSampler`, whose completion of a prompt is a
function of the prompt's token ids alone (known to the test before the trainer runs), followed by an end-of-sequence
token and junk that the trainer must cut."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from peft import LoraConfig
from trl.experimental.gkd import GKDTrainer

from hf_distill import DistillationConfig, DistillationTrainer
from hf_distill.teachers import ServedTeacher
from hf_distill.training.on_policy import draw_completion_source
from tests import kd_reference, tiny
from tests.distributed import two_process_launcher
from tests.served_teacher_server import TeacherServer
from tests.test_grad_accum import _GradientsBeforeStep
from tests.test_multiprocess_training import LOSS_RTOL, WEIGHT_ATOL, _run

JUNK_AFTER_EOS = [11, 12, 13]


def fixed_completion(prompt_ids: list[int], eos_token_id: int) -> list[int]:
    """The completion `_FixedSampler` "samples" for a prompt, through its EOS: 3 to 6 ordinary tokens."""
    total = sum(prompt_ids)
    return [7 + (total * 31 + 17 * k) % 300 for k in range(3 + total % 4)] + [eos_token_id]


class _FixedSampler:
    """Stands in for `model.generate`: reads the left-padded prompts and appends each one's fixed completion, then junk
    after the EOS and right padding (as `generate` pads finished rows)."""

    def __init__(self, tokenizer):
        self.tokenizer, self.calls = tokenizer, 0

    def __call__(self, input_ids, attention_mask, **kwargs):
        self.calls += 1
        rows = [fixed_completion(ids[mask.bool()].tolist(), self.tokenizer.eos_token_id) + JUNK_AFTER_EOS
                for ids, mask in zip(input_ids, attention_mask, strict=True)]
        width = max(len(row) for row in rows) + 2
        new = torch.full((len(rows), width), self.tokenizer.pad_token_id)
        for index, row in enumerate(rows):
            new[index, : len(row)] = torch.tensor(row)
        return torch.cat([input_ids, new], dim=1)


def _refuse(*args, **kwargs):
    raise AssertionError("generate must not be called")


def _reference_rows(tokenizer, dataset) -> list[tuple[list[int], int]]:
    """(prompt + fixed completion, prompt length) of each row, tokenized here from the prompt text."""
    rows = []
    for prompt in dataset["prompt"]:
        prompt_ids = tokenizer(prompt)["input_ids"]
        rows.append((prompt_ids + fixed_completion(prompt_ids, tokenizer.eos_token_id), len(prompt_ids)))
    return rows


def _trainer(tmp_path, model_factory, tokenizer, data, *, name="run", callbacks=(), **config):
    settings = dict(output_dir=str(tmp_path / name), report_to="none", save_strategy="no", max_length=64,
                    max_steps=1, per_device_train_batch_size=4, logging_steps=1, seed=0, disable_tqdm=True,
                    learning_rate=1e-2, max_grad_norm=0.0, lmbda=1.0, max_new_tokens=8)
    return DistillationTrainer(
        model=model_factory("llama", seed=1), teacher_model=model_factory("qwen2", hidden=48, seed=2),
        args=DistillationConfig(**{**settings, **config}), train_dataset=data, processing_class=tokenizer,
        callbacks=list(callbacks),
    )


def _with_fixed_samples(trainer, tokenizer, *, student=True, teacher=False):
    """Patch the models' `generate`: fixed completions where asked, a failure where sampling must not happen."""
    samplers = {}
    for role, model, fixed in (("student", trainer.model, student), ("teacher", trainer.teacher.model, teacher)):
        samplers[role] = _FixedSampler(tokenizer) if fixed else None
        model.generate = samplers[role] or _refuse
    return samplers


def _first_step_logs(trainer) -> dict:
    trainer.train()
    return next(entry for entry in trainer.state.log_history if "kd_loss" in entry)


def _jsd_reference(student, teacher, rows, beta: float) -> tuple[float, float, torch.Tensor, torch.Tensor]:
    """Mean generalized JSD (from its definition, float64) and CE over the completion positions of `rows`, plus the
    concatenated student and teacher logits `(1, positions, vocab)` of those positions for TRL."""
    jsd, ce, student_rows, teacher_rows = [], [], [], []
    with torch.no_grad():
        for ids, prompt_length in rows:
            inputs = torch.tensor([ids])
            keep = slice(prompt_length - 1, len(ids) - 1)  # position i predicts token i + 1
            s_logits, t_logits = student(inputs).logits[0, keep].double(), teacher(inputs).logits[0, keep].double()
            p_s, p_t = torch.softmax(s_logits, -1), torch.softmax(t_logits, -1)
            mix = (1 - beta) * p_s + beta * p_t
            jsd.append(beta * (p_t * (p_t / mix).log()).sum(-1) + (1 - beta) * (p_s * (p_s / mix).log()).sum(-1))
            targets = torch.tensor(ids[prompt_length:])
            ce.append(-torch.log_softmax(s_logits, -1).gather(-1, targets[:, None]).squeeze(-1))
            student_rows.append(s_logits.float())
            teacher_rows.append(t_logits.float())
    jsd, ce = torch.cat(jsd), torch.cat(ce)
    return float(jsd.mean()), float(ce.mean()), torch.cat(student_rows)[None], torch.cat(teacher_rows)[None]


def test_loss_on_student_samples_equals_float64_reference_and_trl_gkd(tmp_path, model_factory, tokenizer):
    data = tiny.prompt_completion_dataset(4, seed=3)
    trainer = _trainer(tmp_path, model_factory, tokenizer, data, divergence="jsd", beta=0.5, alpha=0.7)
    reference_student, reference_teacher = model_factory("llama", seed=1), model_factory("qwen2", hidden=48, seed=2)
    samplers = _with_fixed_samples(trainer, tokenizer)
    logs = _first_step_logs(trainer)

    rows = _reference_rows(tokenizer, data)
    jsd, ce, student_logits, teacher_logits = _jsd_reference(reference_student, reference_teacher, rows, beta=0.5)
    every_position = torch.zeros(student_logits.shape[:2], dtype=torch.long)  # TRL's mean over unmasked labels
    trl_jsd = GKDTrainer.generalized_jsd_loss(student_logits, teacher_logits, labels=every_position, beta=0.5)
    assert samplers["student"].calls == 1 and trainer.on_policy.counts == {"student": 1}
    assert logs["kd_loss"] == pytest.approx(jsd, rel=1e-5)
    assert logs["kd_loss"] == pytest.approx(float(trl_jsd), rel=1e-5)
    assert logs["ce_loss"] == pytest.approx(ce, rel=1e-5)
    assert logs["loss"] == pytest.approx(0.7 * jsd + 0.3 * ce, rel=1e-5)
    # Trained positions: the completions through their EOS, counted here (junk after the EOS and the prompt excluded).
    assert logs["num_tokens"] == sum(len(ids) for ids, _ in rows)


def test_lmbda_one_never_trains_on_the_dataset_completions(tmp_path, model_factory, tokenizer):
    data = tiny.prompt_completion_dataset(4, seed=3)
    other = Dataset.from_dict({"prompt": data["prompt"],
                               "completion": [c + " and more words than before" for c in data["completion"]]})
    results = {}
    for lmbda in (1.0, 0.0):
        for name, dataset in (("given", data), ("changed", other)):
            trainer = _trainer(tmp_path, model_factory, tokenizer, dataset, name=f"{name}{lmbda}", lmbda=lmbda)
            _with_fixed_samples(trainer, tokenizer, student=lmbda > 0)
            loss = _first_step_logs(trainer)["loss"]
            results[name, lmbda] = loss, {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    assert results["given", 1.0][0] == results["changed", 1.0][0]
    for name, weight in results["given", 1.0][1].items():
        assert torch.equal(weight, results["changed", 1.0][1][name]), name
    assert results["given", 0.0][0] != results["changed", 0.0][0]  # off-policy, the completion change shows


def test_lmbda_zero_is_the_off_policy_loss_and_never_samples(tmp_path, model_factory, tokenizer):
    data = tiny.prompt_completion_dataset(4, seed=3)
    trainer = _trainer(tmp_path, model_factory, tokenizer, data, lmbda=0.0, alpha=0.6)
    assert trainer.on_policy is None
    _with_fixed_samples(trainer, tokenizer, student=False)
    logs = _first_step_logs(trainer)
    reference = kd_reference.reference_means(model_factory("llama", seed=1), model_factory("qwen2", hidden=48, seed=2),
                                             kd_reference.prompt_completion_rows(tokenizer, data), alpha=0.6)
    for name in ("loss", "kd_loss", "ce_loss"):
        assert logs[name] == pytest.approx(reference[name], rel=1e-5), name


def test_seq_kd_trains_on_teacher_samples(tmp_path, model_factory, tokenizer):
    data = tiny.prompt_completion_dataset(4, seed=3)
    trainer = _trainer(tmp_path, model_factory, tokenizer, data, lmbda=0.0, seq_kd=True, alpha=1.0)
    samplers = _with_fixed_samples(trainer, tokenizer, student=False, teacher=True)
    logs = _first_step_logs(trainer)
    rows = _reference_rows(tokenizer, data)
    reference = kd_reference.reference_means(model_factory("llama", seed=1), model_factory("qwen2", hidden=48, seed=2),
                                             rows, alpha=1.0)
    assert samplers["teacher"].calls == 1 and trainer.on_policy.counts == {"teacher": 1}
    assert logs["kd_loss"] == pytest.approx(reference["kd_loss"], rel=1e-5)


@pytest.mark.parametrize(("batch_size", "steps"), [(4, 1), (2, 2)])
def test_gradient_accumulation_on_samples_is_the_token_mean(tmp_path, model_factory, tokenizer, batch_size, steps):
    data = tiny.prompt_completion_dataset(4, seed=3)  # completions of 4 to 7 tokens: unequal micro-batches
    recorder = _GradientsBeforeStep()
    trainer = _trainer(tmp_path, model_factory, tokenizer, data, per_device_train_batch_size=batch_size,
                       gradient_accumulation_steps=steps, alpha=0.6, callbacks=[recorder])
    _with_fixed_samples(trainer, tokenizer)
    trainer.train()
    assert trainer.on_policy.counts == {"student": steps}

    student, teacher = model_factory("llama", seed=1), model_factory("qwen2", hidden=48, seed=2)
    sums = kd_reference.reference_sums(student, teacher, _reference_rows(tokenizer, data), alpha=0.6)
    (sums["loss"] / sums["count"]).backward()
    for name, grad in recorder.grads.items():
        reference = dict(student.named_parameters())[name].grad.float()
        torch.testing.assert_close(grad, reference, rtol=0, atol=1e-6, msg=name)


def _sampled_batches(trainer, data, tokenizer):
    batches = [trainer.data_collator([trainer.train_dataset[i] for i in range(start, start + 2)]) for start in (0, 2)]
    rebuilt, count = trainer.get_batch_samples(iter(batches), 2, trainer.args.device)
    return rebuilt, count


def test_sampling_is_reproducible_for_a_seed_and_leaves_the_global_generator(tmp_path, model_factory, tokenizer):
    data = tiny.prompt_completion_dataset(4, seed=3)
    runs = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        trainer = _trainer(tmp_path, model_factory, tokenizer, data, name=name, seed=seed)
        state = torch.random.get_rng_state()
        runs[name], count = _sampled_batches(trainer, data, tokenizer)
        assert torch.equal(torch.random.get_rng_state(), state)  # sampling used its own generator
        assert count == sum(int((batch["labels"][:, 1:] != -100).sum()) for batch in runs[name])
    for batch_a, batch_b in zip(runs["a"], runs["b"], strict=True):
        assert torch.equal(batch_a["input_ids"], batch_b["input_ids"])
    assert any(not torch.equal(a["input_ids"], c["input_ids"]) for a, c in zip(runs["a"], runs["c"], strict=True))
    # The prompts are kept, the labels start where the prompt ends, and nothing of the dataset's completion is left.
    for batch, start in zip(runs["a"], (0, 2), strict=True):
        for row in range(2):
            prompt = tokenizer(data["prompt"][start + row])["input_ids"]
            assert batch["input_ids"][row, : len(prompt)].tolist() == prompt
            assert (batch["labels"][row, : len(prompt)] == -100).all()
            assert batch["labels"][row, len(prompt)] != -100


def test_padded_embedding_rows_are_never_sampled(tmp_path, model_factory, tokenizer):
    # Both models have 64 rows beyond the tokenizer (as Qwen2.5's padded embeddings): ids no token has.
    rows = len(tokenizer) + 64
    data = tiny.prompt_completion_dataset(4, seed=3)
    trainer = DistillationTrainer(
        model=model_factory("llama", seed=1, vocab_size=rows),
        teacher_model=model_factory("qwen2", hidden=48, seed=2, vocab_size=rows),
        args=DistillationConfig(output_dir=str(tmp_path / "padded"), report_to="none", max_length=64, lmbda=1.0,
                                max_new_tokens=8, generation_temperature=5.0),  # hot: every row gets some mass
        train_dataset=data, processing_class=tokenizer, teacher_processing_class=tokenizer,
    )
    rebuilt, _ = _sampled_batches(trainer, data, tokenizer)
    sampled = torch.cat([batch["input_ids"][batch["labels"] != -100] for batch in rebuilt])
    assert sampled.numel() >= 16 and int(sampled.max()) < len(tokenizer)


def _checkpointed_layers(model) -> list[tuple[str, bool]]:
    return [(name, module.gradient_checkpointing) for name, module in model.named_modules()
            if hasattr(module, "gradient_checkpointing")]


def test_sampling_leaves_activation_checkpointing_as_the_trainer_set_it(tmp_path, model_factory, tokenizer):
    data = tiny.prompt_completion_dataset(4, seed=3)
    trainer = _trainer(tmp_path, model_factory, tokenizer, data)
    trainer.model.activation_checkpointing_enable(every_n_layers=2)  # as `train()` does for these settings
    before = _checkpointed_layers(trainer.model)
    assert {flag for _, flag in before} == {True, False}  # every second layer: a setting a re-enable would lose
    _sampled_batches(trainer, data, tokenizer)
    assert _checkpointed_layers(trainer.model) == before and trainer.model.training


def test_completion_source_draws_follow_lmbda_and_the_seed():
    def share(lmbda, seed=0):
        draws = [draw_completion_source(seed, step, i, lmbda=lmbda, seq_kd=False) for step in range(500)
                 for i in range(4)]
        return draws, draws.count("student") / len(draws)

    assert share(0.0)[1] == 0.0 and share(1.0)[1] == 1.0
    draws, fraction = share(0.3)
    assert abs(fraction - 0.3) < 0.03
    assert share(0.3)[0] == draws and share(0.3, seed=1)[0] != draws
    assert {draw_completion_source(0, s, 0, lmbda=0.0, seq_kd=True) for s in range(20)} == {"teacher"}


def test_a_lora_student_samples_through_peft(tmp_path, model_factory, tokenizer):
    trainer = DistillationTrainer(
        model=model_factory("llama", seed=1), teacher_model=model_factory("qwen2", hidden=48, seed=2),
        args=DistillationConfig(output_dir=str(tmp_path / "lora"), report_to="none", save_strategy="no", max_steps=1,
                                max_length=64, per_device_train_batch_size=2, lmbda=1.0, max_new_tokens=4,
                                learning_rate=1e-2, disable_tqdm=True),
        train_dataset=tiny.prompt_completion_dataset(2), processing_class=tokenizer,
        peft_config=LoraConfig(r=4, target_modules="all-linear", lora_dropout=0.0),
    )
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    trainer.train()
    assert trainer.on_policy.counts == {"student": 1} and trainer.on_policy.generation_seconds > 0
    changed = [n for n, p in trainer.model.named_parameters() if p.requires_grad and not torch.equal(p, before[n])]
    assert changed and all("lora_" in name for name in changed)


@pytest.mark.slow
def test_two_processes_sample_and_train_like_one_process_with_the_doubled_batch(tmp_path):
    # Greedy samples (so they do not depend on how rows are split), lmbda 0.5: step 0 samples, step 1 does not. SGD, so
    # that the weights differ as the gradients do (Adam's first steps blow a ~1e-9 gradient entry up to the lr).
    script = ["-m", "tests.scripts.multiprocess_train", "--max-steps", "2", "--lmbda", "0.5", "--optim", "sgd"]
    one = _run([sys.executable, *script, "--per-device-batch-size", "4"], tmp_path / "one")
    two = _run([*two_process_launcher(), *script, "--per-device-batch-size", "2"], tmp_path / "two")

    assert (one["num_processes"], two["num_processes"]) == (1, 2)
    assert one["completion_sources"] == two["completion_sources"] == {"student": 1, "dataset": 1}
    assert two["num_tokens"] == one["num_tokens"]
    assert two["losses"] == pytest.approx(one["losses"], rel=LOSS_RTOL)
    assert two["kd_losses"] == pytest.approx(one["kd_losses"], rel=LOSS_RTOL)
    for name, weight in one["weights"].items():
        torch.testing.assert_close(two["weights"][name], weight, atol=WEIGHT_ATOL, rtol=0, msg=name)


def test_a_served_teacher_scores_the_student_samples(tmp_path, model_factory, tokenizer):
    # top_k = the whole vocabulary: the served targets are then exact, so the in-process float64 reference applies.
    folder = model_factory.save(tmp_path / "teacher", "qwen2", hidden=48, seed=2)
    server = TeacherServer(folder, max_logprobs=len(tokenizer))
    try:
        data = tiny.prompt_completion_dataset(4, seed=3)
        trainer = DistillationTrainer(
            model=model_factory("llama", seed=1), teacher_model=ServedTeacher(server.url, top_k=len(tokenizer)),
            args=DistillationConfig(output_dir=str(tmp_path / "served"), report_to="none", save_strategy="no",
                                    max_length=64, max_steps=1, per_device_train_batch_size=4, logging_steps=1,
                                    disable_tqdm=True, lmbda=1.0, alpha=0.6),
            train_dataset=data, processing_class=tokenizer,
        )
        trainer.model.generate = _FixedSampler(tokenizer)
        logs = _first_step_logs(trainer)
    finally:
        server.stop()
    reference = kd_reference.reference_means(model_factory("llama", seed=1), model_factory("qwen2", hidden=48, seed=2),
                                             _reference_rows(tokenizer, data), alpha=0.6)
    assert trainer.on_policy.counts == {"student": 1}
    for name in ("loss", "kd_loss", "ce_loss"):
        assert logs[name] == pytest.approx(reference[name], rel=1e-5), name


@pytest.mark.slow
def test_the_benchmark_script_runs_on_the_smoke_preset(tmp_path):
    root = Path(__file__).resolve().parents[1]
    result = tmp_path / "on_policy.json"
    completed = subprocess.run(
        [sys.executable, "benchmarks/on_policy.py", "--preset", "smoke", "--steps", "2", "--lmbdas", "0", "1",
         "--output_dir", str(tmp_path / "runs"), "--cache_dir", str(tmp_path / "cache"), "--result", str(result)],
        cwd=root, env={**os.environ, "PYTHONPATH": str(root)}, capture_output=True, text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    runs = json.loads(result.read_text())["runs"]
    assert set(runs) == {"sft", "lmbda=0", "lmbda=1"}
    assert runs["lmbda=1"]["completion_sources"] == {"student": 2} and runs["lmbda=1"]["sampling_step_cpu_s"] > 0
    assert all(0.0 <= run["task_accuracy"] <= 1.0 and run["forward_kl_to_teacher"] >= 0 for run in runs.values())
