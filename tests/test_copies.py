"""Copies of a distilled student are models of their own: the trainer leaves no per-instance forward behind that
would run the original's weights (`copy.deepcopy`, `trl.create_reference_model`, a second trainer on a copy)."""

import copy

import pytest
import torch
import trl

from hf_distill import DistillationConfig, DistillationTrainer
from hf_distill.heads import OutputHeadCallError, final_hidden_states
from tests import tiny


def _trainer(tmp_path, model_factory, tokenizer, model=None, **kwargs):
    args = DistillationConfig(
        output_dir=str(tmp_path), report_to="none", save_strategy="no", max_length=64, max_steps=2,
        per_device_train_batch_size=4, learning_rate=1e-2, seed=0, disable_tqdm=True, **kwargs,
    )
    return DistillationTrainer(
        model=model if model is not None else model_factory("llama", seed=1),
        teacher_model=model_factory("qwen2", hidden=48, seed=2), args=args,
        train_dataset=tiny.prompt_completion_dataset(8), processing_class=tokenizer,
    )


def _plain_logits(model, input_ids):
    """The model's logits computed from its own modules, bypassing any `forward` set on the instance."""
    hidden = model.model(input_ids=input_ids).last_hidden_state
    return model.lm_head(hidden)


def _input_ids(tokenizer):
    return torch.tensor([tokenizer("what is 2 add 3 the answer is 5")["input_ids"]])


def test_a_deep_copy_computes_with_its_own_weights(tmp_path, model_factory, tokenizer):
    trainer = _trainer(tmp_path, model_factory, tokenizer)
    trainer.train()
    student = trainer.model.eval()
    clone = copy.deepcopy(student)
    with torch.no_grad():
        clone.lm_head.weight.zero_()
        input_ids = _input_ids(tokenizer)
        clone_logits, student_logits = clone(input_ids=input_ids).logits, student(input_ids=input_ids).logits
        torch.testing.assert_close(clone_logits, _plain_logits(clone, input_ids))
        torch.testing.assert_close(student_logits, _plain_logits(student, input_ids))
    assert clone_logits.abs().max() == 0 and student_logits.abs().max() > 0


def test_a_reference_model_does_not_track_the_policy(tmp_path, model_factory, tokenizer):
    trainer = _trainer(tmp_path, model_factory, tokenizer)
    trainer.train()
    reference = trl.create_reference_model(trainer.model)
    input_ids = _input_ids(tokenizer)
    with torch.no_grad():
        before = reference(input_ids=input_ids).logits
        for param in trainer.model.parameters():  # the policy moves on, as under DPO
            param.add_(0.05)
        after = reference(input_ids=input_ids).logits
        torch.testing.assert_close(after, before, rtol=0, atol=0)
        torch.testing.assert_close(after, _plain_logits(reference, input_ids))
        assert not torch.allclose(trainer.model(input_ids=input_ids).logits, after)


def test_a_second_trainer_on_a_copy_trains_the_copy(tmp_path, model_factory, tokenizer):
    first = _trainer(tmp_path / "first", model_factory, tokenizer)
    first.train()
    original = first.model
    original.zero_grad(set_to_none=True)
    original_weights = {name: p.detach().clone() for name, p in original.named_parameters()}
    clone = copy.deepcopy(original)
    clone_weights = {name: p.detach().clone() for name, p in clone.named_parameters()}

    second = _trainer(tmp_path / "second", model_factory, tokenizer, model=clone)
    second.train()

    moved = [name for name, p in clone.named_parameters() if not torch.equal(p, clone_weights[name])]
    backbone = [name for name, _ in clone.named_parameters() if name.startswith("model.")]
    assert set(backbone) <= set(moved), sorted(set(backbone) - set(moved))[:5]
    for name, param in original.named_parameters():
        assert param.grad is None, name
        assert torch.equal(param, original_weights[name]), name


def test_final_hidden_states_match_the_models_own_and_leave_no_hook(model_factory, tokenizer):
    model = model_factory("gemma2", seed=3).eval()  # soft-capped logits: the head's post-processing sees no rows
    input_ids = _input_ids(tokenizer)
    with torch.no_grad():
        hidden = final_hidden_states(model, input_ids=input_ids)
        expected = model(input_ids=input_ids, output_hidden_states=True).hidden_states[-1]
    torch.testing.assert_close(hidden, expected, rtol=0, atol=0)
    assert not model.lm_head._forward_pre_hooks and "forward" not in vars(model)


def test_final_hidden_states_refuse_a_head_the_forward_never_runs(model_factory, tokenizer):
    model = model_factory("llama", seed=3)
    model.get_output_embeddings = lambda: torch.nn.Linear(32, 8)  # not the module the forward projects with
    with pytest.raises(OutputHeadCallError, match="output head of LlamaForCausalLM ran 0 times in one forward"):
        final_hidden_states(model, input_ids=_input_ids(tokenizer))
