"""Completion-only loss with a live teacher: the positions the loss trains on come from TRL's own `SFTTrainer`
dataset (the `labels` it builds per row, checked against the prompt length the tokenizer gives), never from the
batch under test, and the loss is recomputed from the models' plain
logits in float64 on those positions alone."""

import pytest
import torch
from trl import SFTConfig, SFTTrainer

from hf_distill import DistillationConfig, DistillationTrainer
from tests import tiny


def _settings(tmp_path, **kwargs):
    return dict(output_dir=str(tmp_path), report_to="none", save_strategy="no", max_steps=1, max_length=64, seed=0,
                per_device_train_batch_size=4, **kwargs)


def _completion_positions(sft: SFTTrainer, rows: int, width: int) -> torch.Tensor:
    """`(rows, width - 1)` booleans: position t is trained when token t + 1 is a completion token, as TRL labels it."""
    mask = torch.zeros(rows, width, dtype=torch.bool)
    for index in range(rows):
        completion = torch.tensor(sft.train_dataset[index]["labels"]) != -100
        mask[index, : completion.numel()] = completion
    return mask[:, 1:]


def _forward_kl_and_ce(student_logits, teacher_logits, labels, positions):
    """Token means over `positions` of KL(p_teacher || p_student) and of the student's cross-entropy, in float64."""
    student = student_logits[positions].double().log_softmax(-1)
    teacher = teacher_logits[positions].double().log_softmax(-1)
    kd = (teacher.exp() * (teacher - student)).sum(-1).mean()
    ce = -student.gather(-1, labels[positions][:, None]).mean()
    return kd, ce


@pytest.mark.parametrize("alpha", [0.5, 1.0])
def test_live_teacher_loss_trains_on_completion_tokens_only(tmp_path, model_factory, tokenizer, alpha):
    data = tiny.prompt_completion_dataset(4, seed=8)
    trainer = DistillationTrainer(
        model=model_factory("llama", seed=1), teacher_model=model_factory("qwen2", hidden=48, seed=2),
        args=DistillationConfig(**_settings(tmp_path / "kd", alpha=alpha)), train_dataset=data,
        processing_class=tokenizer,
    )
    sft = SFTTrainer(model=model_factory("llama", seed=1), args=SFTConfig(**_settings(tmp_path / "sft", bf16=False)),
                     train_dataset=data, processing_class=tokenizer)
    batch = trainer._prepare_inputs(trainer.data_collator([trainer.train_dataset[i] for i in range(4)]))
    input_ids, attention_mask = batch["input_ids"], batch["attention_mask"]
    for index in range(4):  # the same tokens as TRL's dataset (right padding)
        ids = sft.train_dataset[index]["input_ids"]
        assert input_ids[index, : len(ids)].tolist() == ids and attention_mask[index].sum() == len(ids)
    positions = _completion_positions(sft, 4, input_ids.shape[1])
    for index, row in enumerate(data):  # and as the tokenizer counts the prompt: its tokens are never targets
        prompt_length = len(tokenizer(row["prompt"])["input_ids"])
        assert not positions[index, : prompt_length - 1].any() and positions[index, prompt_length - 1]

    trainer.model.train(False)  # no dropout: the reference forward is the same function
    loss = trainer.compute_loss(trainer.model, dict(batch))
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
    with torch.no_grad():
        student_logits = trainer.model(**inputs).logits[:, :-1]
        teacher_logits = trainer.teacher.model(**inputs).logits[:, :-1]
    kd, ce = _forward_kl_and_ce(student_logits, teacher_logits, input_ids[:, 1:], positions)
    torch.testing.assert_close(loss.double(), alpha * kd + (1 - alpha) * ce, rtol=1e-5, atol=1e-6)
