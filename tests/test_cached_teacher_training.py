"""Training without a teacher on cached top-k logits: the sparse loss pinned to references, the trainer path end to
end (matching the online teacher when k is the vocabulary), and every bad input refused with a clear message."""

import datasets
import pytest
import torch
from torch import nn

from hf_distill import DistillationConfig, DistillationTrainer
from hf_distill.data import CachedDatasetError, cache_teacher_logits, decode_topk
from hf_distill.heads import OutputHead
from hf_distill.losses import DIVERGENCES
from hf_distill.losses.sparse import SparseTeacherError, _bucket_terms, sparse_kd_terms
from hf_distill.losses.terms import dense_kd_terms
from hf_distill.teachers import CachedTopKTeacher, LocalModelTeacher
from tests import tiny

VOCAB, HIDDEN, TOKENS = 40, 8, 9


def _head(seed):
    torch.manual_seed(seed)
    linear = nn.Linear(HIDDEN, VOCAB, bias=False)
    return OutputHead(linear, linear.weight, None, 1.0, None, VOCAB)


def _teacher_topk(teacher_head, teacher_hidden, k):
    log_probs = torch.log_softmax(teacher_head.logits(teacher_hidden), -1)
    values, ids = log_probs.topk(k, -1)
    return ids, values, torch.logsumexp(log_probs.scatter(-1, ids, float("-inf")), -1)


@pytest.fixture
def heads_and_states():
    torch.manual_seed(0)
    student_hidden = torch.randn(TOKENS, HIDDEN, requires_grad=True)
    teacher_hidden = torch.randn(TOKENS, HIDDEN) * 2
    labels = torch.randint(0, VOCAB, (TOKENS,))
    return _head(1), _head(2), student_hidden, teacher_hidden, labels


@pytest.mark.parametrize("divergence", list(DIVERGENCES))
def test_sparse_equals_dense_when_k_is_the_vocabulary(divergence, heads_and_states):
    student_head, teacher_head, student_hidden, teacher_hidden, labels = heads_and_states
    ids, values, tail = _teacher_topk(teacher_head, teacher_hidden, VOCAB)
    dense = dense_kd_terms(student_hidden, teacher_hidden, student_head, teacher_head, labels, divergence=divergence)
    sparse = sparse_kd_terms(student_hidden, student_head, ids, values, labels, teacher_tail_log_probs=tail,
                             divergence=divergence)
    torch.testing.assert_close(sparse.kd_sum, dense.kd_sum, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(sparse.ce_sum, dense.ce_sum)
    grad_dense = torch.autograd.grad(dense.kd_sum + 0.5 * dense.ce_sum, student_hidden)[0]
    grad_sparse = torch.autograd.grad(sparse.kd_sum + 0.5 * sparse.ce_sum, student_hidden)[0]
    torch.testing.assert_close(grad_sparse, grad_dense, rtol=1e-4, atol=1e-6)
    assert sparse.num_teacher_agree == dense.num_teacher_agree


def test_forward_kl_with_tail_matches_its_definition(heads_and_states):
    """Reference written from the definition, in float64: KL over {top-k tokens, everything else}."""
    student_head, teacher_head, student_hidden, teacher_hidden, labels = heads_and_states
    ids, values, tail = _teacher_topk(teacher_head, teacher_hidden, 6)
    q = torch.softmax(student_head.logits(student_hidden).double(), -1)
    expected = 0.0
    for t in range(TOKENS):
        inside = set(ids[t].tolist())
        for j, token in enumerate(ids[t].tolist()):
            expected += values[t, j].double().exp() * (values[t, j].double() - q[t, token].log())
        q_tail = sum(q[t, v] for v in range(VOCAB) if v not in inside)
        expected += tail[t].double().exp() * (tail[t].double() - q_tail.log())
    terms = sparse_kd_terms(student_hidden, student_head, ids, values, labels, teacher_tail_log_probs=tail)
    torch.testing.assert_close(terms.kd_sum.double(), expected.detach(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("weights", [(0.9, 0.1), (1.0, 0.0), (0.0, 1.0)])
def test_fused_forward_kl_gradient_equals_autograd(weights, heads_and_states):
    student_head, teacher_head, student_hidden, teacher_hidden, labels = heads_and_states
    ids, values, tail = _teacher_topk(teacher_head, teacher_hidden, 5)
    fused = sparse_kd_terms(student_hidden, student_head, ids, values, labels, teacher_tail_log_probs=tail)
    generic = _bucket_terms(student_head.logits(student_hidden), ids, values, tail, labels, divergence="forward_kl",
                            ce_type="nll")
    torch.testing.assert_close(fused.kd_sum, generic[0])
    grads = [torch.autograd.grad(weights[0] * kd + weights[1] * ce, student_hidden)[0]
             for kd, ce in ((fused.kd_sum, fused.ce_sum), generic)]
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-7)


def test_sparse_loss_refuses_temperature_and_foreign_ids(heads_and_states):
    student_head, teacher_head, student_hidden, teacher_hidden, labels = heads_and_states
    ids, values, tail = _teacher_topk(teacher_head, teacher_hidden, 4)
    with pytest.raises(SparseTeacherError, match="temperature-1 log-probabilities"):
        sparse_kd_terms(student_hidden, student_head, ids, values, labels, temperature=2.0)
    with pytest.raises(SparseTeacherError, match="names token id 45, but the student's vocabulary has 40"):
        sparse_kd_terms(student_hidden, student_head, ids.clamp(max=3) + torch.tensor([0, 0, 0, 42]), values, labels)


# -- the trainer on a cached dataset ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def teacher(model_factory):
    return model_factory("llama", hidden=32, layers=2, seed=11)


@pytest.fixture(scope="module")
def cached(teacher, tokenizer, tmp_path_factory):
    return cache_teacher_logits(teacher, tiny.prompt_completion_dataset(16), tokenizer=tokenizer,
                                output_dir=tmp_path_factory.mktemp("cache"), top_k=len(tokenizer), batch_size=8)


def _args(tmp_path, **kwargs):
    defaults = dict(output_dir=str(tmp_path), report_to="none", save_strategy="no", per_device_train_batch_size=4,
                    logging_steps=1, max_steps=2, learning_rate=1e-3, seed=0, data_seed=0)
    return DistillationConfig(**{**defaults, **kwargs})


def _first_kd_loss(trainer):
    trainer.train()
    return next(entry["kd_loss"] for entry in trainer.state.log_history if "kd_loss" in entry)


def test_cached_teacher_trains_like_the_online_teacher(teacher, cached, tokenizer, model_factory, tmp_path):
    """With k = vocabulary, the cached teacher's loss equals the live teacher's on the same rows (up to the
    encoding's quantization): tokenization, positions, labels and the loss line up."""
    source = tiny.prompt_completion_dataset(16)
    online = DistillationTrainer(model=model_factory("llama", hidden=16, layers=1, seed=3), teacher_model=teacher,
                                 args=_args(tmp_path / "online"), train_dataset=source, processing_class=tokenizer)
    offline = DistillationTrainer(model=model_factory("llama", hidden=16, layers=1, seed=3), teacher_model=None,
                                  args=_args(tmp_path / "offline"), train_dataset=cached, processing_class=tokenizer)
    assert isinstance(offline.teacher, CachedTopKTeacher)
    # The card names the model that wrote the cache, though no teacher is loaded.
    from hf_distill.fingerprints import teacher_provenance

    assert offline.teacher.teacher_provenance == teacher_provenance(teacher, teacher)
    assert offline.train_dataset["labels"] == online.train_dataset["labels"]
    # The encoding's KL error is at most k / (6 * 384**2) per position: 4.3e-4 nats at k = 384.
    assert _first_kd_loss(offline) == pytest.approx(_first_kd_loss(online), abs=5e-4)
    assert all(torch.isfinite(torch.tensor(e["loss"])) for e in offline.state.log_history if "loss" in e)


def test_cached_teacher_with_small_k_and_truncation(teacher, tokenizer, model_factory, tmp_path):
    cached = cache_teacher_logits(teacher, tiny.messages_dataset(8), tokenizer=tokenizer, output_dir=tmp_path / "c",
                                  top_k=8)
    for mode in ("keep_start", "keep_end"):
        trainer = DistillationTrainer(model=model_factory("qwen2", hidden=16, layers=1), teacher_model=None,
                                      args=_args(tmp_path / mode, max_length=12, truncation_mode=mode),
                                      train_dataset=cached, processing_class=tokenizer)
        with trainer.train_dataset.formatted_as(None):
            for row in trainer.train_dataset:
                assert len(row["input_ids"]) == len(row["labels"]) == len(decode_topk(row["teacher_topk"]).covered)
                assert len(row["input_ids"]) <= 12
        trainer.train()
        assert trainer.state.global_step == 2


def test_a_given_teacher_wins_over_the_cache(teacher, cached, tokenizer, model_factory, tmp_path):
    trainer = DistillationTrainer(model=model_factory("llama", hidden=16, layers=1), teacher_model=teacher,
                                  args=_args(tmp_path, max_steps=1), train_dataset=cached, processing_class=tokenizer)
    assert isinstance(trainer.teacher, LocalModelTeacher)
    trainer.train()


def test_cached_column_length_mismatch_names_the_row(cached, tokenizer, model_factory, tmp_path):
    broken = cached.map(lambda row, i: {"input_ids": row["input_ids"] + [5] if i == 3 else row["input_ids"]},
                        with_indices=True)
    with pytest.raises(CachedDatasetError, match=r"Row 3 of the train dataset: `teacher_topk` covers \d+ positions "
                                                 r"but `input_ids` has \d+ tokens"):
        DistillationTrainer(model=model_factory("llama", hidden=16, layers=1), teacher_model=None,
                            args=_args(tmp_path), train_dataset=broken, processing_class=tokenizer)


def test_cache_from_another_tokenizer_is_refused(cached, other_tokenizer, tmp_path):
    student = tiny.ModelFactory(other_tokenizer)("llama", hidden=16, layers=1)
    with pytest.raises(CachedDatasetError, match="cached with another tokenizer .* than the student's"):
        DistillationTrainer(model=student, teacher_model=None, args=_args(tmp_path), train_dataset=cached,
                            processing_class=other_tokenizer)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(temperature=2.0), "temperature-1 log-probabilities"),
        (dict(packing=True, max_length=32), r"`packing` \(--packing\) must be False"),
        (dict(completion_only_loss=False), r"`completion_only_loss` \(--completion_only_loss\) must be unset"),
    ],
)
def test_settings_a_cache_cannot_serve_are_refused(kwargs, message, cached, tokenizer, model_factory, tmp_path):
    with pytest.raises(ValueError, match=message):
        DistillationTrainer(model=model_factory("llama", hidden=16, layers=1), teacher_model=None,
                            args=_args(tmp_path, **kwargs), train_dataset=cached, processing_class=tokenizer)


def test_streamed_cache_is_refused(cached, tokenizer, model_factory, tmp_path):
    streamed = datasets.IterableDataset.from_generator(lambda: iter(cached.to_list()), features=cached.features)
    with pytest.raises(CachedDatasetError, match="load the cache as a `Dataset`"):
        DistillationTrainer(model=model_factory("llama", hidden=16, layers=1), teacher_model=None,
                            args=_args(tmp_path), train_dataset=streamed, processing_class=tokenizer)
