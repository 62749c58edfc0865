"""Every `DistillationConfig` validation: messages name the field, the value, the valid range and the CLI flag."""

import pytest

from hf_distill import DistillationConfig, DistillationConfigError


def _config(tmp_path, **kwargs):
    return DistillationConfig(output_dir=str(tmp_path), report_to="none", **kwargs)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("divergence", "kl", r"`divergence` \(--divergence\) is 'kl'; choose one of: forward_kl, reverse_kl, jsd"),
        ("alpha", 1.5, r"`alpha` \(--alpha\) is 1.5; it must be in \[0, 1\]"),
        ("alpha", -0.1, r"`alpha` \(--alpha\) is -0.1"),
        ("beta", 2.0, r"`beta` \(--beta\) is 2.0; it must be in \[0, 1\]"),
        ("skew", 1.0, r"`skew` \(--skew\) is 1.0; it must be in \[0, 1\)"),
        ("skew", -0.5, r"`skew` \(--skew\) is -0.5"),
        ("temperature", 0.0, r"`temperature` \(--temperature\) is 0.0; it must be > 0"),
        ("teacher_model_init_kwargs", 3, r"`teacher_model_init_kwargs` .* must be a dict or a JSON object string"),
    ],
)
def test_invalid_field_is_rejected(tmp_path, field, value, message):
    with pytest.raises(DistillationConfigError, match=message):
        _config(tmp_path, **{field: value})


def test_every_problem_is_reported_at_once(tmp_path):
    with pytest.raises(DistillationConfigError) as error:
        _config(tmp_path, divergence="nope", alpha=2, temperature=-1)
    text = str(error.value)
    assert "`divergence`" in text and "`alpha`" in text and "`temperature`" in text
    assert isinstance(error.value, ValueError)


def test_defaults_and_json_kwargs(tmp_path):
    config = _config(tmp_path, teacher_model_init_kwargs='{"dtype": "float32"}')
    assert config.teacher_model_init_kwargs == {"dtype": "float32"}
    assert (config.divergence, config.alpha, config.beta, config.skew, config.temperature) == (
        "forward_kl", 0.9, 0.5, 0.1, 1.0,
    )
    # SFTConfig's `loss_type` keeps its meaning: the flavour of the cross-entropy term.
    assert config.loss_type == "nll"
    assert _config(tmp_path, loss_type="dft").loss_type == "dft"


def test_every_distillation_field_is_documented():
    from dataclasses import fields

    from trl import SFTConfig

    inherited = {f.name for f in fields(SFTConfig)}
    for f in fields(DistillationConfig):
        if f.name not in inherited:
            assert f.metadata.get("help"), f"{f.name} has no help text"
