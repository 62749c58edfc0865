"""What a run prints that the user cannot act on: bitsandbytes' and `kernels`' log lines are demoted to one debug
record each; `DistillationConfig` (and the examples' `HardwareSFTConfig`) follow the machine for bf16 and pinned
memory and do not trigger transformers' deprecation warning for TRL's own `gradient_checkpointing` default."""

import logging
import subprocess
import sys
import warnings

import pytest

from hf_distill.quiet import UNACTIONABLE_LOG_LINES, silence_unactionable_logs
from hf_distill.training.config import DistillationConfig, HardwareSFTConfig


def test_importing_hf_distill_prints_nothing_on_stderr():
    """bitsandbytes (imported by peft, so by trl) logs a kernel note at import; the import of hf_distill is silent."""
    completed = subprocess.run(
        [sys.executable, "-c", "import hf_distill, bitsandbytes, trl"], capture_output=True, text=True, timeout=600
    )
    assert completed.returncode == 0
    assert completed.stderr == ""


def test_unactionable_lines_are_dropped_after_one_debug_record(caplog):
    silence_unactionable_logs()
    silence_unactionable_logs()  # idempotent: one filter per logger
    matmul = logging.getLogger("bitsandbytes.autograd._functions")
    assert len(matmul.filters) == 1
    matmul.filters[0].seen.clear()  # the filter is process-wide: an earlier test's 8-bit run may have shown it once
    with caplog.at_level(logging.DEBUG):
        for _ in range(3):
            matmul.warning("MatMul8bitLt: inputs will be cast from %s to float16 during quantization", "float32")
        matmul.warning("an unrelated warning the user may act on")
    records = [(r.name, r.levelno, r.getMessage()) for r in caplog.records]
    assert records == [
        ("hf_distill.quiet", logging.DEBUG,
         "MatMul8bitLt: inputs will be cast from float32 to float16 during quantization "
         "(from bitsandbytes.autograd._functions; shown once, further ones dropped)"),
        ("bitsandbytes.autograd._functions", logging.WARNING, "an unrelated warning the user may act on"),
    ]
    assert set(UNACTIONABLE_LOG_LINES) >= {"bitsandbytes.backends.cpu.ops", "bitsandbytes.autograd._functions"}


def test_peft_reading_a_deprecated_property_does_not_warn(model_factory):
    """peft reads `is_gradient_checkpointing` (deprecated in transformers 5) on every model it wraps."""
    from peft import LoraConfig, get_peft_model

    silence_unactionable_logs()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")  # what a script sees: our filters stay in front of it
        silence_unactionable_logs()
        get_peft_model(model_factory("llama", hidden=16, layers=1), LoraConfig(r=2, target_modules="all-linear"))
    assert not [w for w in caught if "is_gradient_checkpointing" in str(w.message)]


@pytest.mark.parametrize("config_class", [DistillationConfig, HardwareSFTConfig])
def test_configs_follow_the_machine_without_warnings(config_class, tmp_path):
    import torch

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        config = config_class(output_dir=str(tmp_path), report_to="none")
    messages = [str(w.message) for w in caught]
    assert not [m for m in messages if "gradient_checkpointing" in m or "bf16" in m], messages
    assert config.activation_checkpointing is True and config.gradient_checkpointing is True  # TRL's default kept
    if not torch.cuda.is_available():
        assert config.bf16 is False and config.dataloader_pin_memory is False


def test_the_deprecated_name_still_warns_when_the_user_writes_it(tmp_path):
    """What the user typed themselves is theirs to fix: `gradient_checkpointing=False` keeps its warning."""
    with pytest.warns(FutureWarning, match="`gradient_checkpointing` is deprecated"):
        config = DistillationConfig(output_dir=str(tmp_path), report_to="none", gradient_checkpointing=False)
    assert config.activation_checkpointing is False
