"""LoRA and QLoRA students, 8-bit teachers (bitsandbytes on the CPU), and vocabulary alignment."""

import pytest
import torch
from peft import LoraConfig
from transformers import BitsAndBytesConfig

from hf_distill import DistillationTrainer
from tests import tiny
from tests.test_trainer import _args, _batch, _dense_reference


def _lora():
    return LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0, task_type="CAUSAL_LM")


def _snapshot(model):
    return {n: p.detach().float().clone() for n, p in model.named_parameters()}


def _changed(model, before):
    return {n for n, p in model.named_parameters() if not torch.equal(p.detach().float(), before[n])}


def test_lora_student_changes_only_adapters(tmp_path, model_factory, tokenizer):
    trainer = DistillationTrainer(
        model=model_factory("llama", seed=1),
        teacher_model=model_factory("qwen2", hidden=48, seed=2),
        args=_args(tmp_path, max_steps=3, learning_rate=1e-2),
        train_dataset=tiny.prompt_completion_dataset(16),
        processing_class=tokenizer,
        peft_config=_lora(),
    )
    before = _snapshot(trainer.model)
    trainer.train()
    changed = _changed(trainer.model, before)
    assert changed and all("lora_" in name for name in changed), changed
    assert not any("lora_" in name for name, _ in trainer.teacher.model.named_parameters())


def test_qlora_student_with_8bit_teacher(tmp_path, model_factory, tokenizer):
    student_path = model_factory.save(tmp_path / "student", "llama", seed=1)
    teacher_path = model_factory.save(tmp_path / "teacher", "qwen2", hidden=64, seed=2)
    args = _args(
        tmp_path / "out", max_steps=2, learning_rate=1e-2,
        model_init_kwargs={
            "quantization_config": BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=torch.float32)
        },
        teacher_model_init_kwargs={"quantization_config": BitsAndBytesConfig(load_in_8bit=True)},
    )
    trainer = DistillationTrainer(
        model=student_path, teacher_model=teacher_path, args=args, train_dataset=tiny.prompt_completion_dataset(16),
        processing_class=tokenizer, peft_config=_lora(),
    )
    teacher = trainer.teacher.model
    assert teacher.is_loaded_in_8bit and teacher.model.layers[0].self_attn.q_proj.weight.dtype == torch.int8
    assert trainer.model.get_base_model().is_loaded_in_4bit
    before = _snapshot(trainer.model)
    trainer.train()
    changed = _changed(trainer.model, before)
    assert changed and all("lora_" in name for name in changed), changed
    assert all(torch.isfinite(torch.tensor(log["loss"])) for log in trainer.state.log_history if "loss" in log)
    # The loss still equals the one built from both models' own (quantized) full logits.
    batch = _batch(trainer)
    kd, ce = _dense_reference(trainer, batch)
    loss = trainer.compute_loss(trainer.model, dict(batch))
    torch.testing.assert_close(loss, 0.9 * kd + 0.1 * ce, rtol=1e-4, atol=1e-5)


def test_padded_teacher_vocabulary_is_aligned(tmp_path, model_factory, tokenizer):
    # Like Qwen2.5-7B (152,064 rows) teaching Qwen2.5-0.5B (151,936 rows): same tokenizer, padded embeddings. The
    # teacher's tokenizer is known here, so any number of extra rows is fine (without it: a 64/128 round-up only).
    trainer = DistillationTrainer(
        model=model_factory("llama", seed=1),
        teacher_model=model_factory("qwen2", hidden=48, seed=2, vocab_size=len(tokenizer) + 64),
        args=_args(tmp_path),
        train_dataset=tiny.prompt_completion_dataset(16),
        processing_class=tokenizer,
        teacher_processing_class=tokenizer,
    )
    assert trainer.student_head.vocab_size == trainer.teacher.head.vocab_size == len(tokenizer)
    batch = _batch(trainer)
    kd, ce = _dense_reference(trainer, batch)
    torch.testing.assert_close(trainer.compute_loss(trainer.model, dict(batch)), 0.9 * kd + 0.1 * ce)
    trainer.train()


def test_different_tokenizer_is_refused_before_training(tmp_path, model_factory, tokenizer, other_tokenizer):
    teacher_path = tmp_path / "teacher"
    teacher = tiny.ModelFactory(other_tokenizer)("qwen2", hidden=48)
    teacher.save_pretrained(teacher_path)
    other_tokenizer.save_pretrained(teacher_path)
    for teacher_model, kwargs in [(str(teacher_path), {}), (teacher, {"teacher_processing_class": other_tokenizer})]:
        with pytest.raises(ValueError, match="does not match the student's.*distil at sequence level"):
            DistillationTrainer(
                model=model_factory("llama"), teacher_model=teacher_model, args=_args(tmp_path),
                train_dataset=tiny.text_dataset(4), processing_class=tokenizer, **kwargs,
            )


def test_teacher_smaller_than_the_tokenizer_is_refused(tmp_path, model_factory, tokenizer):
    with pytest.raises(ValueError, match=r"teacher's vocabulary \(300 embedding rows"):
        DistillationTrainer(
            model=model_factory("llama"), teacher_model=model_factory("llama", vocab_size=300),
            args=_args(tmp_path), train_dataset=tiny.text_dataset(4), processing_class=tokenizer,
        )


def test_trainable_peft_teacher_is_refused(tmp_path, model_factory, tokenizer):
    from peft import get_peft_model

    teacher = get_peft_model(model_factory("llama"), _lora())
    with pytest.raises(ValueError, match="teacher is a PEFT model with trainable adapters.*merge_and_unload"):
        DistillationTrainer(
            model=model_factory("llama"), teacher_model=teacher, args=_args(tmp_path),
            train_dataset=tiny.text_dataset(4), processing_class=tokenizer,
        )

