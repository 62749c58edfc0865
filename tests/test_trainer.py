"""DistillationTrainer with an online teacher, on tiny models built from configs."""

import pytest
import torch
from transformers import TrainerCallback
from trl import SFTConfig, SFTTrainer

from hf_distill import DistillationCollator, DistillationConfig, DistillationTrainer
from hf_distill.losses import distillation_loss
from tests import tiny


def _args(tmp_path, **kwargs):
    defaults = dict(
        output_dir=str(tmp_path), report_to="none", save_strategy="no", max_steps=2, per_device_train_batch_size=4,
        logging_steps=1, learning_rate=1e-3, max_length=64, seed=0,
    )
    defaults.update(kwargs)
    return DistillationConfig(**defaults)


def _trainer(tmp_path, model_factory, tokenizer, *, dataset="prompt_completion", student="llama", teacher="qwen2",
             **kw):
    data = tiny.DATASETS[dataset](16)
    return DistillationTrainer(
        model=model_factory(student, seed=1),
        teacher_model=model_factory(teacher, hidden=48, seed=2),
        args=_args(tmp_path, **kw),
        train_dataset=data,
        eval_dataset=data,
        processing_class=tokenizer,
    )


@pytest.mark.parametrize("dataset", sorted(tiny.DATASETS))
def test_every_dataset_format_trains_and_logs(tmp_path, model_factory, tokenizer, dataset):
    trainer = _trainer(tmp_path, model_factory, tokenizer, dataset=dataset)
    assert isinstance(trainer.data_collator, DistillationCollator)
    trainer.train()
    logged = trainer.state.log_history[0]
    for key in ("loss", "kd_loss", "ce_loss", "teacher_agreement"):
        assert key in logged, (key, logged)
    metrics = trainer.evaluate()
    for key in ("eval_loss", "eval_kd_loss", "eval_ce_loss", "eval_teacher_agreement"):
        assert key in metrics
    assert 0.0 <= metrics["eval_teacher_agreement"] <= 1.0


def _batch(trainer):
    return trainer._prepare_inputs(trainer.data_collator([trainer.train_dataset[i] for i in range(4)]))


def _dense_reference(trainer, batch):
    """KD and CE from the models' own full logits: the path the trainer must reproduce from hidden states."""
    student, teacher = trainer.model, trainer.teacher.model
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
    student_logits = student(**inputs).logits[:, :-1]
    with torch.no_grad():
        teacher_logits = teacher(**inputs).logits[:, :-1]
    labels = batch["labels"][:, 1:]
    mask = labels != -100
    vocab = trainer.student_head.vocab_size
    kd = distillation_loss(
        student_logits[..., :vocab], teacher_logits[..., :vocab], mask,
        divergence=trainer.args.divergence, beta=trainer.args.beta, temperature=trainer.args.temperature,
    )
    ce = torch.nn.functional.cross_entropy(student_logits[mask][..., :vocab].float(), labels[mask])
    return kd, ce


@pytest.mark.parametrize("student", tiny.ARCHITECTURES)
def test_loss_from_hidden_states_matches_full_logits(tmp_path, model_factory, tokenizer, student):
    # Gemma-2 soft-caps its logits and GPT-2 ties its embeddings: the trainer's head handling must reproduce both.
    trainer = _trainer(tmp_path, model_factory, tokenizer, student=student, teacher="gemma2", divergence="jsd")
    trainer.model.train()
    batch = _batch(trainer)
    loss = trainer.compute_loss(trainer.model, dict(batch))
    kd, ce = _dense_reference(trainer, batch)
    alpha = trainer.args.alpha
    torch.testing.assert_close(loss, alpha * kd + (1 - alpha) * ce, rtol=1e-5, atol=1e-6)


def test_alpha_zero_is_exactly_sft(tmp_path, model_factory, tokenizer):
    data = tiny.prompt_completion_dataset(16)
    trainer = _trainer(tmp_path, model_factory, tokenizer, alpha=0.0)
    sft = SFTTrainer(
        model=model_factory("llama", seed=1),
        args=SFTConfig(output_dir=str(tmp_path / "sft"), report_to="none", max_length=64, bf16=False),
        train_dataset=data,
        processing_class=tokenizer,
    )
    batch = _batch(trainer)
    ours = trainer.compute_loss(trainer.model, dict(batch), num_items_in_batch=(batch["labels"][:, 1:] != -100).sum())
    theirs = sft.compute_loss(sft.model, dict(batch), num_items_in_batch=(batch["labels"][:, 1:] != -100).sum())
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6)


def test_gradient_accumulation_matches_the_full_batch(tmp_path, model_factory, tokenizer):
    def updated_weights(batch_size, accumulation):
        data = tiny.prompt_completion_dataset(8, seed=3)  # exactly one optimizer step's worth of rows
        trainer = DistillationTrainer(
            model=model_factory("llama", seed=1),
            teacher_model=model_factory("qwen2", hidden=48, seed=2),
            args=_args(
                tmp_path / f"ga{accumulation}", max_steps=1, per_device_train_batch_size=batch_size,
                gradient_accumulation_steps=accumulation, optim="sgd", learning_rate=0.5, lr_scheduler_type="constant",
                max_grad_norm=0.0,
            ),
            train_dataset=data,
            processing_class=tokenizer,
        )
        before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
        trainer.train()
        return {n: p.detach() - before[n] for n, p in trainer.model.named_parameters()}

    full, accumulated = updated_weights(8, 1), updated_weights(4, 2)
    assert any(delta.abs().max() > 1e-4 for delta in full.values())
    for name in full:
        torch.testing.assert_close(accumulated[name], full[name], rtol=1e-4, atol=1e-6, msg=name)


def test_student_learns_the_teacher(tmp_path, model_factory, tokenizer):
    data = tiny.prompt_completion_dataset(64, seed=4)
    teacher = model_factory("llama", hidden=64, seed=7)
    trainer = DistillationTrainer(
        model=model_factory("llama", hidden=32, seed=1),
        teacher_model=teacher,
        args=_args(tmp_path, max_steps=40, per_device_train_batch_size=8, learning_rate=3e-3, alpha=1.0,
                   lr_scheduler_type="constant"),
        train_dataset=data,
        eval_dataset=data.select(range(16)),
        processing_class=tokenizer,
    )
    before = trainer.evaluate()["eval_kd_loss"]
    trainer.train()
    after = trainer.evaluate()
    assert after["eval_kd_loss"] < 0.5 * before, (before, after)


def test_teacher_is_frozen_in_eval_mode_and_unchanged(tmp_path, model_factory, tokenizer):
    trainer = _trainer(tmp_path, model_factory, tokenizer)
    teacher = trainer.teacher.model
    before = {n: p.detach().clone() for n, p in teacher.named_parameters()}
    trainer.train()
    assert not teacher.training
    assert all(not p.requires_grad and p.grad is None for p in teacher.parameters())
    for name, param in teacher.named_parameters():
        assert torch.equal(param, before[name]), name


def test_teacher_from_path_with_init_kwargs_and_from_config(tmp_path, model_factory, tokenizer):
    path = model_factory.save(tmp_path / "teacher", "qwen2", hidden=48, seed=2)
    data = tiny.prompt_completion_dataset(8)
    for teacher_model, extra in [(path, {}), (None, {"teacher_model_name_or_path": path})]:
        trainer = DistillationTrainer(
            model=model_factory("llama", seed=1),
            teacher_model=teacher_model,
            args=_args(tmp_path / "out", teacher_model_init_kwargs={"dtype": "float32"}, max_steps=1, **extra),
            train_dataset=data,
            processing_class=tokenizer,
        )
        assert trainer.teacher.model.dtype == torch.float32
        trainer.train()


def test_student_from_path(tmp_path, model_factory, tokenizer):
    student = model_factory.save(tmp_path / "student", "llama", seed=1)
    trainer = DistillationTrainer(
        model=student, teacher_model=model_factory("qwen2", hidden=48, seed=2), args=_args(tmp_path, max_steps=1),
        train_dataset=tiny.text_dataset(8),
    )
    trainer.train()
    assert trainer.state.global_step == 1


def test_missing_teacher_names_the_options(tmp_path, model_factory, tokenizer):
    with pytest.raises(ValueError, match="No teacher: pass `teacher_model=`.*teacher_model_name_or_path.*cache-logit"):
        DistillationTrainer(
            model=model_factory("llama"), args=_args(tmp_path), train_dataset=tiny.text_dataset(4),
            processing_class=tokenizer,
        )


def test_args_must_be_a_distillation_config(tmp_path, model_factory, tokenizer):
    with pytest.raises(TypeError, match="must be a `DistillationConfig`, got SFTConfig"):
        DistillationTrainer(
            model=model_factory("llama"), teacher_model=model_factory("llama"),
            args=SFTConfig(output_dir=str(tmp_path), report_to="none", bf16=False),
            train_dataset=tiny.text_dataset(4), processing_class=tokenizer,
        )


def test_bad_teacher_type(tmp_path, model_factory, tokenizer):
    with pytest.raises(TypeError, match="`teacher_model` must be a Hub id, a local path or a model, got int"):
        DistillationTrainer(
            model=model_factory("llama"), teacher_model=3, args=_args(tmp_path), train_dataset=tiny.text_dataset(4),
            processing_class=tokenizer,
        )


def test_dft_loss_type_weighs_the_ce_term(tmp_path, model_factory, tokenizer):
    trainer = _trainer(tmp_path, model_factory, tokenizer, alpha=0.0, loss_type="dft")
    batch = _batch(trainer)
    loss = trainer.compute_loss(trainer.model, dict(batch))
    logits = trainer.model(**{k: batch[k] for k in ("input_ids", "attention_mask")}).logits
    labels = batch["labels"][:, 1:]
    mask = labels != -100
    log_probs = logits[:, :-1][mask].float().log_softmax(-1)
    label_log_probs = log_probs.gather(-1, labels[mask][:, None]).squeeze(-1)
    torch.testing.assert_close(loss, (-label_log_probs * label_log_probs.exp()).mean(), rtol=1e-5, atol=1e-6)


def test_loss_follows_alpha_and_divergence_changed_on_the_arguments(tmp_path, model_factory, tokenizer):
    # `args` is the one place the loss settings come from: the value and the gradient use the new ones.
    trainer = _trainer(tmp_path, model_factory, tokenizer, alpha=0.9, divergence="forward_kl")
    trainer.args.alpha, trainer.args.divergence = 0.3, "jsd"
    trainer.model.eval()  # no dropout: both passes see the same network
    batch = _batch(trainer)
    loss = trainer.compute_loss(trainer.model, dict(batch))
    loss.backward()
    grads = {n: p.grad.clone() for n, p in trainer.model.named_parameters()}
    trainer.model.zero_grad(set_to_none=True)
    kd, ce = _dense_reference(trainer, batch)
    reference = 0.3 * kd + 0.7 * ce
    reference.backward()
    torch.testing.assert_close(loss, reference, rtol=1e-5, atol=1e-6)
    for name, param in trainer.model.named_parameters():
        torch.testing.assert_close(grads[name], param.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_alpha_changed_by_a_callback_during_training(tmp_path, model_factory, tokenizer):
    class LowerAlpha(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step == 1:
                args.alpha = 0.25

    trainer = _trainer(tmp_path, model_factory, tokenizer, alpha=0.9, max_steps=2, logging_steps=1)
    trainer.add_callback(LowerAlpha())
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "kd_loss" in entry]
    for entry, alpha in zip(logs, (0.9, 0.25), strict=True):
        assert entry["loss"] == pytest.approx(alpha * entry["kd_loss"] + (1 - alpha) * entry["ce_loss"], rel=1e-5)
