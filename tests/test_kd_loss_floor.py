"""The matmul floor of `benchmarks/kd_loss.py` runs in the inputs' dtype (it failed on bf16: a float32 `out=`
buffer), and computes the four products it stands for, checked against float64 products of the same inputs."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
kd_loss = pytest.importorskip("kd_loss")


@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float32, 1e-5), (torch.bfloat16, 3e-2)])
@pytest.mark.parametrize("chunk", [None, 16])
def test_the_floor_computes_its_four_products_in_the_inputs_dtype(dtype, tolerance, chunk):
    inputs = kd_loss._inputs(kd_loss.CASES["smoke"], 0, dtype, torch.device("cpu"))
    floor = kd_loss._Floor(inputs, chunk)
    floor()
    hs, ht, ws, wt = (t.detach().double() for t in inputs)
    _, _, grad_hidden, grad_weight = floor.buffers
    assert {b.dtype for b in floor.buffers} == {dtype}
    logits = hs @ ws.t()
    for got, expected in ((grad_hidden, logits @ ws), (grad_weight, logits.t() @ hs)):
        error = (got.double() - expected).norm() / expected.norm()
        assert error < tolerance
