"""Two processes (`torchrun --nproc_per_node 2`, gloo on CPU) train exactly like one process with the doubled batch:
the loss is normalised by the tokens of the whole batch across processes and DDP averages the gradients, so the
logged losses and the final weights agree to float32 rounding."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.distributed import two_process_launcher

REPO = Path(__file__).resolve().parents[1]
# Tolerances: the two runs differ only in how the sums are split and reduced (float32 rounding, ~1e-7 relative).
LOSS_RTOL = 1e-5
WEIGHT_ATOL = 1e-5



def _run(command: list[str], output_dir: Path) -> dict:
    output_dir.mkdir(parents=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    completed = subprocess.run(
        command + [str(output_dir)], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads((output_dir / "result.json").read_text())
    result["weights"] = load_file(output_dir / "weights.safetensors")
    return result


@pytest.mark.slow
def test_two_processes_equal_one_process_with_doubled_batch(tmp_path):
    script = ["-m", "tests.scripts.multiprocess_train", "--max-steps", "4"]
    one = _run([sys.executable, *script, "--per-device-batch-size", "4"], tmp_path / "one")
    two = _run(
        [
            *two_process_launcher(),
            *script,
            "--per-device-batch-size",
            "2",
        ],
        tmp_path / "two",
    )

    assert (one["num_processes"], two["num_processes"]) == (1, 2)
    assert len(one["losses"]) == len(two["losses"]) == 4
    assert two["num_tokens"] == one["num_tokens"]  # the same rows were seen, split across the two ranks
    assert two["losses"] == pytest.approx(one["losses"], rel=LOSS_RTOL)
    assert two["kd_losses"] == pytest.approx(one["kd_losses"], rel=LOSS_RTOL)
    assert one["weights"].keys() == two["weights"].keys()
    for name, weight in one["weights"].items():
        torch.testing.assert_close(two["weights"][name], weight, atol=WEIGHT_ATOL, rtol=0, msg=name)
    assert one["losses"][-1] < one["losses"][0]  # it trained (a constant would also "match")
