"""Each divergence pinned against an independent float64 reference written from its definition, and `jsd` against
TRL's GKD `generalized_jsd_loss`."""

import math

import pytest
import torch

from hf_distill.losses import DIVERGENCES, distillation_loss


def _probs(logits, temperature=1.0):
    return torch.softmax(logits.double() / temperature, dim=-1)


def _kl(p, q):
    return (p * (p.log() - q.log())).sum(-1)


# References: direct transcriptions of the definitions on probabilities (not log-space tricks).
REFERENCES = {
    "forward_kl": lambda s, t, beta, skew: _kl(t, s),
    "reverse_kl": lambda s, t, beta, skew: _kl(s, t),
    "jsd": lambda s, t, beta, skew: (
        beta * _kl(t, (1 - beta) * s + beta * t) + (1 - beta) * _kl(s, (1 - beta) * s + beta * t)
    ),
    "skew_forward_kl": lambda s, t, beta, skew: _kl(t, skew * t + (1 - skew) * s),
    "skew_reverse_kl": lambda s, t, beta, skew: _kl(s, skew * s + (1 - skew) * t),
    "tvd": lambda s, t, beta, skew: 0.5 * (s - t).abs().sum(-1),
}


def _inputs(seed=0, shape=(2, 5, 37)):
    g = torch.Generator().manual_seed(seed)
    student = torch.randn(shape, generator=g) * 2
    teacher = torch.randn(shape, generator=g) * 3
    mask = (torch.rand(shape[:-1], generator=g) > 0.3).long()
    mask[0, 0] = 1
    return student, teacher, mask


def test_every_divergence_has_a_reference():
    assert set(REFERENCES) == set(DIVERGENCES)


@pytest.mark.parametrize("divergence", sorted(DIVERGENCES))
@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_value_and_gradient_match_reference(divergence, temperature):
    student, teacher, mask = _inputs()
    beta, skew = 0.3, 0.2
    student_ours = student.clone().requires_grad_(True)
    ours = distillation_loss(
        student_ours, teacher, mask, divergence=divergence, beta=beta, skew=skew, temperature=temperature
    )
    student_ref = student.double().clone().requires_grad_(True)
    per_token = REFERENCES[divergence](_probs(student_ref, temperature), _probs(teacher, temperature), beta, skew)
    reference = (per_token * mask).sum() / mask.sum()
    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours.double(), reference, rtol=1e-5, atol=1e-6)
    ours.backward()
    reference.backward()
    torch.testing.assert_close(student_ours.grad.double(), student_ref.grad, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("beta", [0.1, 0.5, 0.9])
def test_jsd_equals_trl_gkd_per_token(beta):
    from trl.experimental.gkd import GKDTrainer

    student, teacher, _ = _inputs(seed=1)
    ours = distillation_loss(student, teacher, divergence="jsd", beta=beta, temperature=1.5, reduction="none")
    trl = GKDTrainer.generalized_jsd_loss(student, teacher, beta=beta, temperature=1.5, reduction="none").sum(-1)
    torch.testing.assert_close(ours, trl, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("beta", "same_as"), [(0.0, "forward_kl"), (1.0, "reverse_kl")])
def test_jsd_end_points_follow_trl(beta, same_as):
    from trl.experimental.gkd import GKDTrainer

    student, teacher, _ = _inputs(seed=2)
    ours = distillation_loss(student, teacher, divergence="jsd", beta=beta, reduction="none")
    torch.testing.assert_close(ours, distillation_loss(student, teacher, divergence=same_as, reduction="none"))
    trl = GKDTrainer.generalized_jsd_loss(student, teacher, beta=beta, reduction="none").sum(-1)
    torch.testing.assert_close(ours, trl, rtol=1e-5, atol=1e-6)


def test_skew_zero_is_plain_kl():
    student, teacher, _ = _inputs(seed=3)
    for skewed, plain in [("skew_forward_kl", "forward_kl"), ("skew_reverse_kl", "reverse_kl")]:
        torch.testing.assert_close(
            distillation_loss(student, teacher, divergence=skewed, skew=0.0),
            distillation_loss(student, teacher, divergence=plain),
        )


@pytest.mark.parametrize("divergence", sorted(DIVERGENCES))
def test_half_precision_inputs_compute_in_float32(divergence):
    student, teacher, mask = _inputs(seed=4)
    for dtype in (torch.bfloat16, torch.float16):
        low = distillation_loss(student.to(dtype), teacher.to(dtype), mask, divergence=divergence)
        upcast = distillation_loss(student.to(dtype).float(), teacher.to(dtype).float(), mask, divergence=divergence)
        assert low.dtype == torch.float32
        torch.testing.assert_close(low, upcast)


def test_identical_distributions_give_zero():
    student, _, mask = _inputs(seed=5)
    for divergence in DIVERGENCES:
        value = distillation_loss(student, student.clone(), mask, divergence=divergence)
        assert abs(value.item()) < 1e-6, divergence


def test_masked_positions_do_not_count():
    student, teacher, mask = _inputs(seed=6)
    changed = student.clone()
    changed[mask == 0] = torch.randn_like(changed[mask == 0]) * 50
    torch.testing.assert_close(distillation_loss(student, teacher, mask), distillation_loss(changed, teacher, mask))


def test_reductions():
    student, teacher, mask = _inputs(seed=7)
    per_token = distillation_loss(student, teacher, mask, reduction="none")
    assert per_token.shape == mask.shape
    assert (per_token[mask == 0] == 0).all()
    torch.testing.assert_close(distillation_loss(student, teacher, mask, reduction="sum"), per_token.sum())
    torch.testing.assert_close(distillation_loss(student, teacher, mask), per_token.sum() / mask.sum())
    no_mask = distillation_loss(student, teacher)
    torch.testing.assert_close(no_mask, distillation_loss(student, teacher, reduction="none").mean())
    empty = distillation_loss(student, teacher, torch.zeros_like(mask))
    assert empty.item() == 0.0 and not math.isnan(empty.item())


def test_unknown_divergence_lists_the_valid_ones():
    student, teacher, _ = _inputs()
    with pytest.raises(ValueError, match="Unknown divergence 'kl'.*forward_kl, reverse_kl, jsd"):
        distillation_loss(student, teacher, divergence="kl")


def test_shape_mismatch_names_the_fix():
    student, teacher, _ = _inputs()
    with pytest.raises(ValueError, match="differ in shape.*padded teacher vocabulary"):
        distillation_loss(student, teacher[..., :-1])
    with pytest.raises(ValueError, match="`mask` has shape"):
        distillation_loss(student, teacher, torch.ones(3, 3))
    with pytest.raises(ValueError, match="Unknown reduction"):
        distillation_loss(student, teacher, reduction="batchmean")
