"""`benchmarks/gpu_fsdp_check.py`, the FSDP2 check for a lent GPU, runs here on CPU (`--cpu`: gloo, float32) so it
does not rot between GPU runs: one process under `torch.distributed.run`, a trained live `lm_head`, and the fused loss
equal to the dense one on the first batch."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.distributed import free_port

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_fsdp_check_runs_on_cpu(tmp_path):
    output = tmp_path / "gpu_fsdp_check.json"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "1", "--master_addr", "127.0.0.1",
               "--master_port", str(free_port()), "benchmarks/gpu_fsdp_check.py", "--cpu", "--steps", "2",
               "--seq-len", "32", "--output", str(output)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    completed = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-4000:]
    record = json.loads(output.read_text())
    assert (record["distributed_type"], record["backend"], record["num_processes"]) == ("FSDP", "gloo", 1)
    assert record["student_weight_is_dtensor"] and record["teacher_is_fsdp_unit"]
    assert record["fused_head_every_step"] and record["ok"]
    assert len(record["losses"]) == 2
    assert record["lm_head_max_abs_change"] > 1e-4
    assert record["first_batch_fused_loss"] == pytest.approx(record["first_batch_dense_loss"], abs=1e-5)
