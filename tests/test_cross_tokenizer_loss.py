"""Cross-tokenizer losses (`hf_distill.losses.cross_tokenizer`) against float64 references written on probabilities
from the definitions: ULD (Boizard et al., 2024) and the span loss (shared tokens plus one bucket per side, the
configured divergence; ULD on the unshared remainder). With one tokenizer on both sides, the span path equals
today's loss exactly."""

from __future__ import annotations

import pytest
import torch

from hf_distill.heads import OutputHead
from hf_distill.losses.cross_tokenizer import VocabularyPairs, cross_tokenizer_kd_terms, cross_tokenizer_loss
from hf_distill.losses.terms import LossSettings, dense_kd_terms
from tests.test_losses import REFERENCES

STUDENT_VOCAB, TEACHER_VOCAB = 11, 17


def _logits(seed=0, positions=6):
    g = torch.Generator().manual_seed(seed)
    student = torch.randn(positions, STUDENT_VOCAB, generator=g) * 2
    return student, torch.randn(positions, TEACHER_VOCAB, generator=g) * 3


def _pairs(seed=0, shared=6):
    g = torch.Generator().manual_seed(seed)
    student = torch.randperm(STUDENT_VOCAB, generator=g)[:shared]
    teacher = torch.randperm(TEACHER_VOCAB, generator=g)[:shared]
    return VocabularyPairs(student, teacher, STUDENT_VOCAB, TEACHER_VOCAB)


def uld_reference(p_student, p_teacher):
    """Each probability vector sorted in decreasing order, the shorter padded with zeros to the longer's length, the
    summed absolute difference (float64, differentiable through the sorted values)."""
    width = max(p_student.shape[-1], p_teacher.shape[-1])
    zeros = p_student.new_zeros(p_student.shape[0], width)
    a = torch.cat([p_student.sort(-1, descending=True).values, zeros[:, p_student.shape[-1]:]], -1)
    b = torch.cat([p_teacher.sort(-1, descending=True).values, zeros[:, p_teacher.shape[-1]:]], -1)
    return (a - b).abs().sum(-1)


def span_reference(p_student, p_teacher, pairs, divergence, beta=0.3, skew=0.2):
    """Per position: the divergence between [p(shared tokens), 1 - their sum] of each side (pairs in order), plus ULD
    between the unshared probabilities of each side. Where one side has no unshared token (its bucket always 0), both
    sides' shared probabilities divided by their sum instead."""
    s_ids, t_ids = pairs.student_ids.tolist(), pairs.teacher_ids.tolist()
    s_set, t_set = set(s_ids), set(t_ids)
    s_rest = p_student[:, [i for i in range(p_student.shape[-1]) if i not in s_set]]
    t_rest = p_teacher[:, [i for i in range(p_teacher.shape[-1]) if i not in t_set]]
    s_shared, t_shared = p_student[:, s_ids], p_teacher[:, t_ids]
    if s_rest.shape[-1] and t_rest.shape[-1]:
        s_full = torch.cat([s_shared, 1 - s_shared.sum(-1, keepdim=True)], -1)
        t_full = torch.cat([t_shared, 1 - t_shared.sum(-1, keepdim=True)], -1)
    else:
        s_full = s_shared / s_shared.sum(-1, keepdim=True)
        t_full = t_shared / t_shared.sum(-1, keepdim=True)
    return REFERENCES[divergence](s_full, t_full, beta, skew) + uld_reference(s_rest, t_rest)


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_uld_equals_its_definition(temperature):
    student, teacher = _logits()
    ours = cross_tokenizer_loss(student, teacher, method="uld", temperature=temperature, reduction="none")
    reference = uld_reference(torch.softmax(student.double() / temperature, -1),
                              torch.softmax(teacher.double() / temperature, -1))
    torch.testing.assert_close(ours.double(), reference, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shared", [6, STUDENT_VOCAB])  # some student tokens unshared; every student token shared
@pytest.mark.parametrize("divergence", ["forward_kl", "reverse_kl", "jsd", "tvd", "skew_forward_kl"])
def test_span_equals_its_definition_value_and_gradient(divergence, shared):
    student, teacher = _logits(seed=1)
    pairs = _pairs(seed=1, shared=shared)
    ours_in = student.clone().requires_grad_(True)
    ours = cross_tokenizer_loss(ours_in, teacher, method="span", pairs=pairs, divergence=divergence, beta=0.3,
                                skew=0.2, temperature=1.5, reduction="sum")
    ref_in = student.double().clone().requires_grad_(True)
    reference = span_reference(torch.softmax(ref_in / 1.5, -1), torch.softmax(teacher.double() / 1.5, -1), pairs,
                               divergence).sum()
    torch.testing.assert_close(ours.double(), reference, rtol=1e-5, atol=1e-6)
    ours.backward()
    reference.backward()
    torch.testing.assert_close(ours_in.grad.double(), ref_in.grad, rtol=1e-4, atol=1e-6)


def _heads(seed=0, hidden=8, vocab=STUDENT_VOCAB, teacher_vocab=TEACHER_VOCAB):
    g = torch.Generator().manual_seed(seed)
    student = torch.nn.Linear(hidden, vocab, bias=False)
    teacher = torch.nn.Linear(hidden + 4, teacher_vocab, bias=False)
    with torch.no_grad():
        student.weight.copy_(torch.randn(vocab, hidden, generator=g))
        teacher.weight.copy_(torch.randn(teacher_vocab, hidden + 4, generator=g))
    teacher.requires_grad_(False)
    return (OutputHead(student, student.weight, None, 1.0, None, vocab),
            OutputHead(teacher, teacher.weight, None, 1.0, None, teacher_vocab))


@pytest.mark.parametrize("divergence", ["forward_kl", "jsd", "reverse_kl"])
def test_span_with_one_tokenizer_equals_todays_loss(divergence):
    """Same vocabulary on both sides (every id shared with itself), every trained position matched: the span path's
    KD and CE sums and their gradients are those of the ordinary dense loss."""
    student_head, teacher_head = _heads(vocab=STUDENT_VOCAB, teacher_vocab=STUDENT_VOCAB)
    g = torch.Generator().manual_seed(3)
    hidden = torch.randn(9, 8, generator=g)
    teacher_hidden = torch.randn(9, 12, generator=g)
    labels = torch.randint(0, STUDENT_VOCAB, (9,), generator=g)
    settings = LossSettings(divergence=divergence, beta=0.4, temperature=1.3, chunk_size=4)
    identity = VocabularyPairs(torch.arange(STUDENT_VOCAB), torch.arange(STUDENT_VOCAB), STUDENT_VOCAB, STUDENT_VOCAB)
    ours_hidden = hidden.clone().requires_grad_(True)
    ours = cross_tokenizer_kd_terms(ours_hidden, student_head, labels, teacher_hidden, teacher_head,
                                    torch.arange(9), settings, method="span", pairs=identity)
    (0.7 * ours.kd_sum + 0.3 * ours.ce_sum).backward()
    ours_grads = (ours_hidden.grad.clone(), student_head.weight.grad.clone())
    student_head.weight.grad = None
    dense_hidden = hidden.clone().requires_grad_(True)
    dense = dense_kd_terms(dense_hidden, teacher_hidden, student_head, teacher_head, labels,
                           **settings.divergence_kwargs(), ce_type="nll")
    (0.7 * dense.kd_sum + 0.3 * dense.ce_sum).backward()
    torch.testing.assert_close(ours.kd_sum, dense.kd_sum, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(ours.ce_sum, dense.ce_sum, rtol=1e-6, atol=1e-6)
    assert int(ours.num_teacher_agree) == int(dense.num_teacher_agree)
    assert int(ours.num_label_correct) == int(dense.num_label_correct)
    torch.testing.assert_close(ours_grads[0], dense_hidden.grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ours_grads[1], student_head.weight.grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method", ["uld", "span"])
def test_chunked_terms_equal_a_float64_reference_on_matched_positions(method):
    """KD counted at the matched positions only (`student_index`), CE at every position; chunking (with
    recomputation in the backward pass) changes neither the value nor the gradient; the teacher gets none."""
    student_head, teacher_head = _heads(seed=4)
    g = torch.Generator().manual_seed(5)
    hidden = torch.randn(10, 8, generator=g)
    teacher_hidden = torch.randn(4, 12, generator=g)
    labels = torch.randint(0, STUDENT_VOCAB, (10,), generator=g)
    index = torch.tensor([0, 3, 4, 9])
    pairs = _pairs(seed=4)
    settings = LossSettings(divergence="jsd", beta=0.3, skew=0.2, temperature=1.0, chunk_size=3)
    ours_hidden = hidden.clone().requires_grad_(True)
    terms = cross_tokenizer_kd_terms(ours_hidden, student_head, labels, teacher_hidden, teacher_head, index,
                                     settings, method=method, pairs=pairs)
    terms.kd_sum.backward()
    assert teacher_head.weight.grad is None

    ref_hidden = hidden.double().clone().requires_grad_(True)
    student_probs = torch.softmax(ref_hidden[index] @ student_head.weight.double().T, -1)
    teacher_probs = torch.softmax(teacher_hidden.double() @ teacher_head.weight.double().T, -1)
    per_position = (uld_reference(student_probs, teacher_probs) if method == "uld"
                    else span_reference(student_probs, teacher_probs, pairs, "jsd"))
    torch.testing.assert_close(terms.kd_sum.double(), per_position.sum(), rtol=1e-5, atol=1e-6)
    ce = -torch.log_softmax(hidden.double() @ student_head.weight.double().T, -1)[torch.arange(10), labels]
    torch.testing.assert_close(terms.ce_sum.double(), ce.sum(), rtol=1e-5, atol=1e-6)
    assert terms.num_positions == 10
    per_position.sum().backward()
    torch.testing.assert_close(ours_hidden.grad.double(), ref_hidden.grad, rtol=1e-4, atol=1e-6)
    whole = cross_tokenizer_kd_terms(hidden, student_head, labels, teacher_hidden, teacher_head, index,
                                     LossSettings(divergence="jsd", beta=0.3, skew=0.2, chunk_size=100),
                                     method=method, pairs=pairs)
    torch.testing.assert_close(whole.kd_sum, terms.kd_sum.detach(), rtol=1e-6, atol=1e-6)


def test_uld_gradient_matches_the_definition():
    student, teacher = _logits(seed=6)
    ours_in = student.clone().requires_grad_(True)
    cross_tokenizer_loss(ours_in, teacher, method="uld", reduction="sum").backward()
    ref_in = student.double().clone().requires_grad_(True)
    uld_reference(torch.softmax(ref_in, -1), torch.softmax(teacher.double(), -1)).sum().backward()
    torch.testing.assert_close(ours_in.grad.double(), ref_in.grad, rtol=1e-4, atol=1e-6)


def test_unknown_method_and_missing_pairs_are_refused():
    from hf_distill.losses import LossInputError

    student, teacher = _logits()
    with pytest.raises(LossInputError, match="cross_tokenizer"):
        cross_tokenizer_loss(student, teacher, method="kl")
    with pytest.raises(LossInputError, match="needs `pairs`"):
        cross_tokenizer_loss(student, teacher, method="span")
