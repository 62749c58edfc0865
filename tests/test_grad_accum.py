"""Gradient accumulation normalises by the tokens of the whole accumulated batch whatever the model class says about
its own loss: a class with `accepts_loss_kwargs = False` (as transformers' Gemma 3n / Gemma 4 conditional-generation
classes) gets the token-mean gradient too."""

import pytest
import torch
from transformers import LlamaForCausalLM, TrainerCallback

from hf_distill import DistillationConfig, DistillationTrainer
from tests import kd_reference, tiny

ALPHA = 0.6


class NoLossKwargsLlama(LlamaForCausalLM):
    """A tiny llama whose class says its forward takes no loss kwargs (`num_items_in_batch`)."""

    accepts_loss_kwargs = False


def _student(model_factory):
    template = model_factory("llama", seed=1)
    student = NoLossKwargsLlama(template.config)
    student.load_state_dict(template.state_dict())
    return student


class _GradientsBeforeStep(TrainerCallback):
    """Keeps the accumulated gradient of the first optimizer step."""

    def __init__(self):
        self.grads = None

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        if self.grads is None:
            self.grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def _accumulated_gradient(tmp_path, model_factory, tokenizer, data, batch_size, steps):
    recorder = _GradientsBeforeStep()
    trainer = DistillationTrainer(
        model=_student(model_factory), teacher_model=model_factory("qwen2", hidden=48, seed=2),
        args=DistillationConfig(
            output_dir=str(tmp_path / f"bs{batch_size}_ga{steps}"), report_to="none", save_strategy="no",
            max_length=64, max_steps=1, per_device_train_batch_size=batch_size, gradient_accumulation_steps=steps,
            max_grad_norm=0.0, alpha=ALPHA, seed=0, disable_tqdm=True,
        ),
        train_dataset=data, processing_class=tokenizer, callbacks=[recorder],
    )
    assert type(trainer.model).accepts_loss_kwargs is False
    trainer.train()
    return recorder.grads


def _token_mean_gradient(model_factory, tokenizer, data):
    student, teacher = _student(model_factory), model_factory("qwen2", hidden=48, seed=2)
    sums = kd_reference.reference_sums(student, teacher, kd_reference.text_rows(tokenizer, data), alpha=ALPHA)
    (sums["loss"] / sums["count"]).backward()
    return {n: p.grad.float() for n, p in student.named_parameters()}


@pytest.mark.parametrize(("batch_size", "steps"), [(4, 1), (2, 2), (1, 4)])
def test_accumulated_gradient_is_the_token_mean_for_a_class_without_loss_kwargs(
    tmp_path, model_factory, tokenizer, batch_size, steps
):
    data = tiny.text_dataset(4, seed=9)  # rows of 7 to 15 tokens: per-micro-batch means would weigh them unequally
    reference = _token_mean_gradient(model_factory, tokenizer, data)
    grads = _accumulated_gradient(tmp_path, model_factory, tokenizer, data, batch_size, steps)
    assert grads.keys() == reference.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(grad, reference[name], rtol=0, atol=1e-6, msg=name)
