"""The fused, chunked distillation loss from hidden states: pinned against the dense loss on full logits (values and
gradients, every divergence and head variant), its memory and matmul budget, its errors, and the trainer using it."""

import dataclasses

import pytest
import torch
from peft import LoraConfig
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import BitsAndBytesConfig

import hf_distill.teachers.base as teacher_base
from hf_distill import DistillationConfig, DistillationTrainer
from hf_distill.heads import OutputHead
from hf_distill.losses import DIVERGENCES, distillation_loss, distillation_loss_from_hidden
from hf_distill.losses.fused import FusedLossError, FusedLossReuseError, choose_chunk_size, fused_kd_terms
from hf_distill.losses.terms import LossSettings, dense_kd_terms
from tests import tiny

DIVERGENCE_CASES = [(name, 0.5) for name in sorted(DIVERGENCES)] + [("jsd", 0.0), ("jsd", 1.0), ("jsd", 0.2)]

# Head and input variants; each is run for every divergence. Keys are keyword arguments of `_case`.
VARIANTS = {
    "plain": {},
    "mask_bias": dict(mask="bool", bias=True),
    "weighted_mask": dict(mask="weights"),
    "softcap_scale_temperature": dict(softcap=(3.0, 5.0), scale=(0.7, 1.3), temperature=2.0),
    "padded_teacher_vocab": dict(teacher_rows=61),
    "batch_seq_hidden": dict(shape=(3, 7), mask="long"),
    "one_token_chunks": dict(chunk_size=1, mask="bool"),
}


def _case(seed=0, *, shape=(29,), hidden=(16, 24), vocab=53, teacher_rows=None, bias=False, mask=None, softcap=None,
          scale=(1.0, 1.0), temperature=1.0, chunk_size=5, dtype=torch.float32):
    """Inputs of one fused call and the keyword arguments the fused and dense losses share."""
    g = torch.Generator().manual_seed(seed)
    tensors = dict(
        student_hidden=torch.randn(*shape, hidden[0], generator=g),
        teacher_hidden=torch.randn(*shape, hidden[1], generator=g),
        student_weight=torch.randn(vocab, hidden[0], generator=g) / 2,
        teacher_weight=torch.randn(teacher_rows or vocab, hidden[1], generator=g) / 2,
    )
    if bias:
        tensors["student_bias"] = torch.randn(vocab, generator=g)
        tensors["teacher_bias"] = torch.randn(teacher_rows or vocab, generator=g)
    tensors = {k: v.to(dtype) for k, v in tensors.items()}
    if mask is not None:
        keep = torch.rand(shape, generator=g) > 0.3
        keep.view(-1)[0] = True
        weights = keep * torch.rand(shape, generator=g) * 2
        tensors["mask"] = {"bool": keep, "long": keep.long(), "weights": weights}[mask]
    options = dict(
        student_logit_scale=scale[0], teacher_logit_scale=scale[1], temperature=temperature,
        student_softcap=None if softcap is None else softcap[0],
        teacher_softcap=None if softcap is None else softcap[1],
    )
    return tensors, options, chunk_size


def _dense_logits(hidden, weight, bias, scale, softcap, vocab):
    logits = (hidden.float() @ weight.float()[:vocab].t() + (0 if bias is None else bias.float()[:vocab])) * scale
    return logits if softcap is None else softcap * torch.tanh(logits / softcap)


def _dense_loss(tensors, options, divergence, beta):
    """The reference: both models' full float32 logits, then `distillation_loss`."""
    vocab = tensors["student_weight"].shape[0]
    student = _dense_logits(tensors["student_hidden"], tensors["student_weight"], tensors.get("student_bias"),
                            options["student_logit_scale"], options["student_softcap"], vocab)
    teacher = _dense_logits(tensors["teacher_hidden"], tensors["teacher_weight"], tensors.get("teacher_bias"),
                            options["teacher_logit_scale"], options["teacher_softcap"], vocab)
    return distillation_loss(student, teacher, tensors.get("mask"), divergence=divergence, beta=beta, skew=0.2,
                             temperature=options["temperature"])


def _value_and_grads(loss_fn, tensors, names=("student_hidden", "student_weight", "student_bias")):
    leaves = {k: (v.detach().clone().requires_grad_(k in names)) for k, v in tensors.items()}
    loss = loss_fn(leaves)
    loss.backward()
    return loss, {k: leaves[k].grad for k in names if k in leaves}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("divergence, beta", DIVERGENCE_CASES)
def test_value_and_gradients_equal_the_dense_loss(divergence, beta, variant):
    tensors, options, chunk_size = _case(**VARIANTS[variant])
    ours, our_grads = _value_and_grads(
        lambda x: distillation_loss_from_hidden(**x, **options, divergence=divergence, beta=beta, skew=0.2,
                                                chunk_size=chunk_size), tensors)
    reference, reference_grads = _value_and_grads(lambda x: _dense_loss(x, options, divergence, beta), tensors)
    assert ours.dtype == torch.float32 and ours.shape == ()
    torch.testing.assert_close(ours, reference, rtol=2e-5, atol=1e-6)
    assert set(our_grads) == set(reference_grads)
    for name, grad in our_grads.items():
        assert grad.shape == tensors[name].shape, name
        torch.testing.assert_close(grad, reference_grads[name], rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("divergence", ["forward_kl", "jsd", "tvd"])
def test_bf16_inputs_compute_in_float32(divergence):
    tensors, options, chunk_size = _case(dtype=torch.bfloat16, bias=True, mask="bool")
    ours, our_grads = _value_and_grads(
        lambda x: distillation_loss_from_hidden(**x, **options, divergence=divergence, chunk_size=chunk_size), tensors)
    # The reference sees the same bf16 values, upcast: the fused loss must not round logits to bf16.
    upcast = {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}
    reference, reference_grads = _value_and_grads(lambda x: _dense_loss(x, options, divergence, 0.5), upcast)
    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-6)
    for name, grad in our_grads.items():
        assert grad.dtype == torch.bfloat16, name
        torch.testing.assert_close(grad.float(), reference_grads[name], rtol=2e-2, atol=1e-4, msg=name)


@pytest.mark.parametrize("divergence", ["forward_kl", "reverse_kl", "jsd"])
def test_full_size_vocabulary_keeps_float32_accuracy(divergence):
    # 151,936 entries per row and logits offset by +-30 (real log-normalisers): a float32 sum over raw logits, or a
    # BLAS dot product, loses the divergence to cancellation; the reference sums in float64.
    g = torch.Generator().manual_seed(0)
    hidden, weight = torch.randn(6, 16, generator=g), torch.randn(151_936, 16, generator=g) / 2
    teacher_hidden = torch.randn(6, 16, generator=g)
    teacher_weight = weight + torch.randn(151_936, 16, generator=g) / 4
    offsets = dict(student_bias=torch.full((151_936,), -30.0), teacher_bias=torch.full((151_936,), 30.0))
    ours = distillation_loss_from_hidden(hidden, teacher_hidden, weight, teacher_weight, divergence=divergence,
                                         **offsets)
    student_log_probs = torch.log_softmax((hidden @ weight.t()).double() - 30, -1)
    teacher_log_probs = torch.log_softmax((teacher_hidden @ teacher_weight.t()).double() + 30, -1)
    reference = DIVERGENCES[divergence](student_log_probs, teacher_log_probs, beta=0.5).mean()
    torch.testing.assert_close(ours.double(), reference, rtol=2e-5, atol=0.0)


def test_tied_embeddings_sum_both_gradients():
    # GPT-2 style: the lm_head weight is the input embedding, used twice in the graph.
    g = torch.Generator().manual_seed(0)
    embedding = torch.randn(41, 12, generator=g).requires_grad_(True)
    ids, teacher_hidden = torch.randint(0, 41, (17,), generator=g), torch.randn(17, 12, generator=g)
    teacher_weight = torch.randn(41, 12, generator=g)
    grads = []
    for fused_loss in (True, False):
        embedding.grad = None
        hidden = torch.tanh(embedding[ids])
        if fused_loss:
            loss = distillation_loss_from_hidden(hidden, teacher_hidden, embedding, teacher_weight, chunk_size=4)
        else:
            loss = distillation_loss(hidden @ embedding.t(), teacher_hidden @ teacher_weight.t())
        loss.backward()
        grads.append(embedding.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-7)


def test_fully_masked_batch_is_zero_with_zero_gradients():
    tensors, options, _ = _case(mask="bool")
    tensors["mask"] = torch.zeros_like(tensors["mask"])
    loss, grads = _value_and_grads(lambda x: distillation_loss_from_hidden(**x), tensors)
    assert loss.item() == 0.0
    assert all(not grad.any() for grad in grads.values())


class _LargestTensor(TorchDispatchMode):
    """Records the largest tensor any operation creates."""

    largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(tensor, torch.Tensor):
                self.largest = max(self.largest, tensor.numel())
        return out


def test_never_holds_full_logits():
    # tokens x vocab (96 x 500) dwarfs vocab x hidden (500 x 8) and a chunk (8 x 500).
    tensors, _, _ = _case(shape=(96,), hidden=(8, 8), vocab=500)
    leaves = {k: v.requires_grad_(k.startswith("student")) for k, v in tensors.items()}
    with _LargestTensor() as mode:
        distillation_loss_from_hidden(**leaves, divergence="jsd", chunk_size=8).backward()
    assert mode.largest <= 500 * 8, mode.largest
    with _LargestTensor() as dense:
        _dense_loss(leaves, dict(student_logit_scale=1.0, teacher_logit_scale=1.0, student_softcap=None,
                                 teacher_softcap=None, temperature=1.0), "jsd", 0.5).backward()
    assert dense.largest >= 96 * 500  # the check can fail: the dense loss does hold them


class _Matmuls(TorchDispatchMode):
    """Counts the matrix products run inside it."""

    count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket in (torch.ops.aten.mm, torch.ops.aten.addmm, torch.ops.aten.bmm):
            self.count += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("weight_trains, expected", [(True, 4), (False, 3)])
def test_four_matmuls_per_chunk_and_none_for_a_frozen_head(weight_trains, expected):
    tensors, _, _ = _case(shape=(20,))
    tensors["student_hidden"].requires_grad_(True)
    tensors["student_weight"].requires_grad_(weight_trains)  # a LoRA student's lm_head is frozen
    with _Matmuls() as matmuls:
        loss = distillation_loss_from_hidden(**tensors, chunk_size=5)
        loss.backward()
    assert matmuls.count == expected * 4  # 4 chunks, no recomputation in the backward pass
    assert (tensors["student_weight"].grad is not None) == weight_trains


def test_no_grad_computes_only_the_value():
    tensors, _, _ = _case(shape=(20,))
    leaves = {k: v.requires_grad_(k.startswith("student")) for k, v in tensors.items()}
    with torch.no_grad(), _Matmuls() as matmuls:
        loss = distillation_loss_from_hidden(**leaves, chunk_size=10)
    assert matmuls.count == 4  # two projections per chunk, no gradient matmul
    torch.testing.assert_close(loss, _dense_loss(tensors, dict(
        student_logit_scale=1.0, teacher_logit_scale=1.0, student_softcap=None, teacher_softcap=None,
        temperature=1.0), "forward_kl", 0.5))


def test_chunk_size_follows_the_memory_budget():
    assert choose_chunk_size(1000, 151_936, num_buffers=4, memory_bytes=4 * 151_936 * 4 * 100) == 100
    assert choose_chunk_size(1024, 151_936, num_buffers=3, memory_bytes=3 * 151_936 * 4 * 441) == 342  # 3 even chunks
    assert choose_chunk_size(10, 151_936, memory_bytes=2**40) == 10
    assert choose_chunk_size(1024, 10**9, memory_bytes=1) == 1
    assert choose_chunk_size(0, 151_936) == 1


# -- fused_kd_terms: the trainer's entry point ---------------------------------------------------------------------


def _head(vocab, hidden, *, seed, rows=None, bias=False, scale=1.0, softcap=None, wrap=False):
    torch.manual_seed(seed)
    linear = nn.Linear(hidden, rows or vocab, bias=bias)
    module = nn.Sequential(linear) if wrap else linear  # a head the fused loss cannot read directly
    return OutputHead(module, linear.weight, linear.bias, scale, softcap, vocab)


def _terms_and_grads(fn, student_hidden, student_head, settings):
    hidden = student_hidden.detach().clone().requires_grad_(True)
    student_head.module.zero_grad(set_to_none=True)
    terms = fn(hidden)
    (settings.alpha * terms.kd_sum + (1 - settings.alpha) * terms.ce_sum).mul(0.37).backward()
    grads = [hidden.grad] + [p.grad for p in student_head.module.parameters()]
    return terms, grads


KD_TERMS_CASES = {
    "forward_kl_nll": dict(divergence="forward_kl"),
    "jsd_dft_temperature": dict(divergence="jsd", ce_type="dft", temperature=2.0),
    "reverse_kl_alpha_0": dict(divergence="reverse_kl", alpha=0.0),
    "skew_alpha_1_temperature": dict(divergence="skew_forward_kl", alpha=1.0, temperature=0.5),
    "tvd_dft": dict(divergence="tvd", ce_type="dft", alpha=0.5),
}


@pytest.mark.parametrize("case", sorted(KD_TERMS_CASES))
@pytest.mark.parametrize("heads", ["plain", "bias_softcap_scale_padded", "wrapped_teacher", "wrapped_student"])
def test_fused_kd_terms_equal_dense_kd_terms(case, heads):
    settings = LossSettings(**{"alpha": 0.9, **KD_TERMS_CASES[case]}, chunk_size=6)
    variant = dict(
        plain=({}, {}),
        bias_softcap_scale_padded=(dict(bias=True, softcap=4.0, scale=0.8, rows=40), dict(rows=47, softcap=6.0)),
        wrapped_teacher=({}, dict(wrap=True)),  # quantized or PEFT-wrapped teacher heads are run chunk by chunk
        wrapped_student=(dict(wrap=True), {}),  # falls back to the dense loss
    )[heads]
    student_head, teacher_head = _head(37, 12, seed=0, **variant[0]), _head(37, 20, seed=1, **variant[1])
    g = torch.Generator().manual_seed(2)
    student_hidden, teacher_hidden = torch.randn(23, 12, generator=g), torch.randn(23, 20, generator=g)
    labels = torch.randint(0, 37, (23,), generator=g)
    ours, our_grads = _terms_and_grads(
        lambda h: fused_kd_terms(h, teacher_hidden, student_head, teacher_head, labels, settings),
        student_hidden, student_head, settings)
    reference, reference_grads = _terms_and_grads(
        lambda h: dense_kd_terms(h, teacher_hidden, student_head, teacher_head, labels,
                                 **settings.divergence_kwargs(), ce_type=settings.ce_type),
        student_hidden, student_head, settings)
    torch.testing.assert_close(ours.kd_sum, reference.kd_sum, rtol=2e-5, atol=1e-5)
    torch.testing.assert_close(ours.ce_sum, reference.ce_sum, rtol=2e-5, atol=1e-5)
    assert ours.num_teacher_agree.item() == reference.num_teacher_agree.item()
    assert ours.num_label_correct.item() == reference.num_label_correct.item()
    assert ours.num_positions == reference.num_positions == 23
    for ours_grad, reference_grad in zip(our_grads, reference_grads, strict=True):
        torch.testing.assert_close(ours_grad, reference_grad, rtol=1e-4, atol=1e-6)


def test_gradient_of_another_combination_is_refused():
    settings = LossSettings(alpha=0.9, chunk_size=4)
    student_head, teacher_head = _head(30, 8, seed=0), _head(30, 8, seed=1)
    hidden = torch.randn(9, 8, requires_grad=True)
    terms = fused_kd_terms(hidden, torch.randn(9, 8), student_head, teacher_head, torch.randint(0, 30, (9,)), settings)
    with pytest.raises(FusedLossError, match=r"0\.9 \* kd_sum \+ 0\.1.* \* ce_sum.*LossSettings.*use_fused_kd_loss"):
        terms.kd_sum.backward()  # kd alone is not 0.9 : 0.1


def test_second_backward_is_refused():
    tensors, _, _ = _case(shape=(6,))
    hidden = tensors.pop("student_hidden").requires_grad_(True)
    loss = distillation_loss_from_hidden(hidden, **tensors)
    loss.backward(retain_graph=True)
    with pytest.raises(FusedLossReuseError, match="differentiated twice.*Recompute the loss"):
        loss.backward()


BAD_INPUTS = {
    "divergence": (dict(divergence="kl"), r"`divergence` is 'kl'; choose one of: forward_kl"),
    "beta": (dict(beta=1.5), r"`beta` is 1.5; it must be in \[0, 1\]"),
    "skew": (dict(skew=1.0), r"`skew` is 1.0; it must be in \[0, 1\)"),
    "temperature": (dict(temperature=0.0), r"`temperature` is 0.0; it must be > 0"),
    "chunk_size": (dict(chunk_size=0), r"`chunk_size` is 0; it must be >= 1, or None"),
    "positions": (dict(teacher_hidden=torch.randn(5, 24)), r"cover different positions"),
    "hidden_width": (dict(student_hidden=torch.randn(29, 15)), r"`student_hidden` has width 15 .* expects 16"),
    "teacher_vocab": (dict(teacher_weight=torch.randn(40, 24)), r"teacher's vocabulary \(40 rows\) is smaller"),
    "quantized": (
        dict(teacher_weight=torch.zeros(53, 24, dtype=torch.int8)), r"floating `\(vocab, hidden\)`.*quantized"
    ),
    "bias": (dict(student_bias=torch.randn(7)), r"`student_bias` has shape \(7,\); expected \(53,\)"),
    "mask": (dict(mask=torch.ones(3)), r"`mask` has shape \(3,\); expected \(29,\)"),
}


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_bad_input_names_the_problem_and_the_fix(name):
    tensors, _, _ = _case()
    override, message = BAD_INPUTS[name]
    arguments = {**tensors, **override}
    with pytest.raises(FusedLossError, match=message):
        distillation_loss_from_hidden(**arguments)


def test_every_problem_is_reported_at_once():
    tensors, _, _ = _case()
    with pytest.raises(FusedLossError) as error:
        distillation_loss_from_hidden(**tensors, divergence="kl", temperature=-1.0, mask=torch.ones(2))
    assert str(error.value).count("\n- ") == 3


# -- the trainer: fused by default, equal to the dense path ---------------------------------------------------------


def _trainer_loss_and_grads(trainer, use_fused, monkeypatch):
    """One batch's loss and every trainable gradient, asserting which loss form ran."""
    calls = {"fused": 0, "dense": 0}
    for name, key in (("fused_kd_terms", "fused"), ("dense_kd_terms", "dense")):
        real = getattr(teacher_base, name)
        monkeypatch.setattr(teacher_base, name, lambda *a, _real=real, _key=key, **k: calls.__setitem__(
            _key, calls[_key] + 1) or _real(*a, **k))
    trainer.loss_settings = dataclasses.replace(trainer.loss_settings, use_fused=use_fused)
    trainer.model.eval()  # no dropout: both passes see the same network
    trainer.model.zero_grad(set_to_none=True)
    batch = trainer._prepare_inputs(trainer.data_collator([trainer.train_dataset[i] for i in range(4)]))
    loss = trainer.compute_loss(trainer.model, batch)
    loss.backward()
    assert calls == {"fused": int(use_fused), "dense": int(not use_fused)}
    grads = {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    return loss.detach(), grads


def _assert_fused_equals_dense(trainer, monkeypatch):
    fused_loss, fused_grads = _trainer_loss_and_grads(trainer, True, monkeypatch)
    dense_loss, dense_grads = _trainer_loss_and_grads(trainer, False, monkeypatch)
    torch.testing.assert_close(fused_loss, dense_loss, rtol=1e-5, atol=1e-6)
    assert fused_grads.keys() == dense_grads.keys() and fused_grads
    for name, grad in fused_grads.items():
        torch.testing.assert_close(grad, dense_grads[name], rtol=1e-4, atol=1e-6, msg=name)
    return fused_grads


def _args(tmp_path, **kwargs):
    return DistillationConfig(output_dir=str(tmp_path), report_to="none", save_strategy="no", max_length=64,
                              per_device_train_batch_size=4, **kwargs)


def test_config_turns_the_fused_loss_on_and_off(tmp_path):
    assert LossSettings.from_config(_args(tmp_path)).use_fused is True
    settings = LossSettings.from_config(_args(tmp_path, use_fused_kd_loss=False, kd_chunk_size=64, alpha=0.3))
    assert (settings.use_fused, settings.chunk_size, settings.alpha) == (False, 64, 0.3)


STUDENTS = {
    "llama_forward_kl": ("llama", dict(divergence="forward_kl")),
    "gpt2_tied_jsd_dft_temperature": ("gpt2", dict(divergence="jsd", temperature=2.0, loss_type="dft")),
    "gemma2_softcap_reverse_kl": ("gemma2", dict(divergence="reverse_kl", kd_chunk_size=5)),
}


@pytest.mark.parametrize("student", sorted(STUDENTS))
def test_trainer_full_student_fused_equals_dense(tmp_path, model_factory, tokenizer, monkeypatch, student):
    arch, loss_args = STUDENTS[student]
    trainer = DistillationTrainer(
        model=model_factory(arch, seed=1), teacher_model=model_factory("qwen2", hidden=48, seed=2),
        args=_args(tmp_path, **loss_args), train_dataset=tiny.prompt_completion_dataset(8), processing_class=tokenizer,
    )
    grads = _assert_fused_equals_dense(trainer, monkeypatch)
    assert any("embed" in name or "wte" in name or "lm_head" in name for name in grads)


def test_trainer_lora_student_fused_equals_dense(tmp_path, model_factory, tokenizer, monkeypatch):
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0, task_type="CAUSAL_LM")
    trainer = DistillationTrainer(
        model=model_factory("llama", seed=1), teacher_model=model_factory("qwen2", hidden=48, seed=2),
        args=_args(tmp_path, divergence="jsd"), train_dataset=tiny.prompt_completion_dataset(8),
        processing_class=tokenizer, peft_config=lora,
    )
    assert not trainer.student_head.weight.requires_grad
    grads = _assert_fused_equals_dense(trainer, monkeypatch)
    assert all("lora_" in name for name in grads)


@pytest.mark.parametrize("quantize_lm_head", [False, True])
def test_trainer_8bit_teacher_fused_equals_dense(tmp_path, model_factory, tokenizer, monkeypatch, quantize_lm_head):
    teacher_path = model_factory.save(tmp_path / "teacher", "qwen2", hidden=64, seed=2)
    # transformers keeps lm_head unquantized by default; an empty skip list quantizes it too (module path).
    quantization = BitsAndBytesConfig(load_in_8bit=True, **({"llm_int8_skip_modules": []} if quantize_lm_head else {}))
    trainer = DistillationTrainer(
        model=model_factory("llama", seed=1), teacher_model=teacher_path,
        args=_args(tmp_path / "out", teacher_model_init_kwargs={"quantization_config": quantization}),
        train_dataset=tiny.prompt_completion_dataset(8), processing_class=tokenizer,
    )
    assert trainer.teacher.model.is_loaded_in_8bit
    assert (trainer.teacher.head.weight.dtype == torch.int8) == quantize_lm_head
    _assert_fused_equals_dense(trainer, monkeypatch)
