"""`cache_teacher_logits` with 2 processes (`torchrun --nproc_per_node 2`, gloo, CPU) writes the same dataset as with
1 process, each rank scoring its own shards."""

import os
import re
import subprocess
import sys

import datasets
import pytest

from tests import tiny

WORKER = os.path.join(os.path.dirname(__file__), "scripts", "cache_logits_worker.py")


def _torchrun(nproc: int, *args: str) -> str:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", WORKER,
               *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd()}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


@pytest.mark.slow
def test_two_ranks_write_the_same_dataset_as_one(model_factory, tmp_path):
    teacher = model_factory.save(tmp_path / "teacher", "llama", hidden=32, layers=2, seed=9)
    tiny.prompt_completion_dataset(11).save_to_disk(str(tmp_path / "data"))

    single = _torchrun(1, teacher, str(tmp_path / "data"), str(tmp_path / "one"))
    double = _torchrun(2, teacher, str(tmp_path / "data"), str(tmp_path / "two"))

    one = datasets.load_from_disk(str(tmp_path / "one"))
    two = datasets.load_from_disk(str(tmp_path / "two"))
    assert len(one) == 11 and one.to_dict() == two.to_dict()
    # 11 rows in shards of 3: rank 0 takes shards 0 and 2 (4 batches of 2), rank 1 shards 1 and 3 (2 + 1 batches).
    scored = dict(re.findall(r"rank (\d) of 2 scored (\d+) batches", double))
    assert scored == {"0": "4", "1": "3"}, double
    assert "rank 0 of 1 scored 7 batches" in single
    assert (tmp_path / "two" / "README.md").exists() and not (tmp_path / "two" / "shards").exists()
