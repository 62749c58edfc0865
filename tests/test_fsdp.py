"""FSDP2 and DeepSpeed ZeRO-3 for real: two processes (`torch.distributed.run`, gloo on CPU) with the student and the
teacher sharded (`fully_shard`) or partitioned (ZeRO-3, DeepSpeed's CPU accelerator) train exactly like one plain
process with the doubled batch. This catches a loss that reads the
student's `lm_head` as captured before `accelerator.prepare` (FSDP2 replaces the parameters: the live head would never
train) and a teacher forward that skips the root FSDP hook (it would raise on mixed `Tensor` / `DTensor`).

The two-process runs checkpoint at step 2 in the engine's own format (FSDP2 with a full or a sharded state dict,
ZeRO-3): a run resumed from that checkpoint runs only step 3 and ends with the uninterrupted run's student, and the
saved student (a `from_pretrained` folder under every engine) gives the in-memory student's logits."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from hf_distill.fingerprints import model_sha256
from tests import tiny
from tests.distributed import DEEPSPEED_SKIP_REASON, deepspeed_missing, free_port, two_process_launcher
from tests.scripts.fsdp_train import TEACHER

REPO = Path(__file__).resolve().parents[1]
SCRIPT = ["-m", "tests.scripts.fsdp_train", "--max-steps", "3"]
# The runs differ only in how sums are split and reduced across processes (float32 rounding, ~1e-7 relative).
ATOL = 1e-5
SAVE_STEPS = "2"

def _run(command: list[str], output_dir: Path) -> dict:
    output_dir.mkdir(parents=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    completed = subprocess.run(
        command + [str(output_dir)], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-4000:]
    result = json.loads((output_dir / "result.json").read_text())
    result["gradients"] = load_file(output_dir / "gradients.safetensors")
    result["initial_head"] = load_file(output_dir / "initial_head.safetensors")["lm_head.weight"]
    result["student"] = output_dir / "student"
    result["logits"] = load_file(output_dir / "logits.safetensors")
    return result


# Engine -> the script's flags for it.
ENGINE_FLAGS = {
    "fsdp2": ["--fsdp2", "--state-dict-type", "FULL_STATE_DICT"],
    "fsdp2_sharded": ["--fsdp2", "--state-dict-type", "SHARDED_STATE_DICT"],
    "zero3": ["--zero3"],
}
# What a checkpoint of each engine holds: FSDP2's full state dict is a safetensors file, its sharded state dict a
# torch.distributed.checkpoint folder, ZeRO-3's DeepSpeed's own `global_step*` folder.
CHECKPOINT_MODEL = {"fsdp2": "model.safetensors", "fsdp2_sharded": "pytorch_model_fsdp_0", "zero3": "global_step2"}
ENGINES = [
    "fsdp2",
    "fsdp2_sharded",
    pytest.param("zero3", marks=pytest.mark.skipif(deepspeed_missing(), reason=DEEPSPEED_SKIP_REASON)),
]


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    one = _run([sys.executable, *SCRIPT, "--per-device-batch-size", "4"], tmp_path_factory.mktemp("plain") / "one")
    assert (one["num_processes"], one["fsdp"], one["deepspeed"]) == (1, False, False)
    return one


@pytest.fixture(scope="module", params=ENGINES)
def runs(request, plain, tmp_path_factory):
    """The plain one-process run and the same training on 2 processes under `request.param` (FSDP2 or ZeRO-3),
    checkpointing at step 2, and the engine's name."""
    output_dir = tmp_path_factory.mktemp(request.param) / "two"
    two = _run([*two_process_launcher(), *SCRIPT, "--per-device-batch-size", "2", "--save-steps", SAVE_STEPS,
                *ENGINE_FLAGS[request.param]], output_dir)
    assert two["num_processes"] == 2
    assert (two["fsdp"], two["deepspeed"]) == (request.param != "zero3", request.param == "zero3")
    assert two["executed_steps"] == [1, 2, 3]
    two["output_dir"] = output_dir
    return plain, two, request.param


@pytest.fixture(scope="module")
def resumed(runs, tmp_path_factory):
    """The two-process run resumed from its step-2 checkpoint, under the same engine."""
    _, two, engine = runs
    checkpoint = two["output_dir"] / f"checkpoint-{SAVE_STEPS}"
    output_dir = tmp_path_factory.mktemp(f"{engine}-resumed") / "two"
    # The teacher in memory this time (the folder's weights): its provenance hash is computed from its shards.
    return _run([*two_process_launcher(), *SCRIPT, "--per-device-batch-size", "2", "--resume", str(checkpoint),
                 "--in-memory-teacher", *ENGINE_FLAGS[engine]], output_dir)


@pytest.mark.slow
def test_sharded_losses_equal_one_process(runs):
    one, two, _ = runs
    assert len(two["losses"]) == len(one["losses"]) == 3
    assert two["losses"] == pytest.approx(one["losses"], abs=ATOL, rel=0)
    assert two["kd_losses"] == pytest.approx(one["kd_losses"], abs=ATOL, rel=0)
    assert one["losses"][-1] < one["losses"][0]  # it trained (a constant would also "match")


@pytest.mark.slow
def test_sharded_first_step_gradients_equal_one_process(runs):
    one, two, _ = runs
    assert two["gradients"].keys() == one["gradients"].keys()
    assert "lm_head.weight" in one["gradients"]
    for name, gradient in one["gradients"].items():
        torch.testing.assert_close(two["gradients"][name], gradient, atol=ATOL, rtol=0, msg=name)
    assert one["gradients"]["lm_head.weight"].abs().max() > 100 * ATOL  # the head gets a real gradient


@pytest.mark.slow
def test_sharded_saved_student_loads_and_matches_one_process(runs):
    one, two, _ = runs
    reference = AutoModelForCausalLM.from_pretrained(one["student"], dtype=torch.float32)
    sharded = AutoModelForCausalLM.from_pretrained(two["student"], dtype=torch.float32)
    sharded_weights = sharded.state_dict()
    assert sharded_weights.keys() == reference.state_dict().keys()
    for name, weight in reference.state_dict().items():
        torch.testing.assert_close(sharded_weights[name], weight, atol=ATOL, rtol=0, msg=name)
    input_ids = torch.randint(0, reference.config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(sharded(input_ids).logits, reference(input_ids).logits, atol=ATOL, rtol=0)
    # lm_head trained under the engine as much as in the plain run (not left at its initial value).
    moved = (sharded.lm_head.weight.detach() - two["initial_head"]).abs().max().item()
    assert moved > 1e-3
    moved_one = (reference.lm_head.weight.detach() - one["initial_head"]).abs().max().item()
    assert moved == pytest.approx(moved_one, abs=ATOL)


@pytest.mark.slow
def test_zero3_partitioned_heads_count_their_real_rows(tmp_path):
    """ZeRO-3 partitions every parameter to an empty tensor (`shape[0] == 0`) and keeps the real shape in `ds_shape`:
    the heads must count the real rows, or a teacher with the student's own tokenizer is refused ("0 rows")."""
    pytest.importorskip("deepspeed", reason=DEEPSPEED_SKIP_REASON)
    output = tmp_path / "rows.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "MASTER_PORT": str(free_port())}
    completed = subprocess.run([sys.executable, "-m", "tests.scripts.fsdp_zero3_rows", str(output)], cwd=REPO,
                               env=env, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-4000:]
    record = json.loads(output.read_text())
    assert record["local_rows"] == [0, 0]  # really partitioned: the local tensors are empty
    assert record["ds_rows"] == [record["num_tokens"]] * 2  # tiny models have exactly the tokenizer's rows
    assert record["head_rows"] == record["ds_rows"]
    assert record["aligned"] == record["num_tokens"]


@pytest.mark.slow
def test_sharded_saved_student_gives_the_in_memory_logits(runs):
    _, two, _ = runs
    saved = AutoModelForCausalLM.from_pretrained(two["student"], dtype=torch.float32)
    with torch.no_grad():
        logits = saved(two["logits"]["input_ids"]).logits
    torch.testing.assert_close(logits, two["logits"]["logits"], atol=ATOL, rtol=0)


@pytest.mark.slow
def test_resume_from_engine_checkpoint_runs_the_remaining_steps_and_ends_equal(runs, resumed):
    _, two, engine = runs
    checkpoint = two["output_dir"] / f"checkpoint-{SAVE_STEPS}"
    assert (checkpoint / CHECKPOINT_MODEL[engine]).exists(), sorted(p.name for p in checkpoint.iterdir())
    assert resumed["executed_steps"] == [3]  # only the step after the checkpoint
    assert resumed["losses"][-1] == pytest.approx(two["losses"][-1], abs=ATOL, rel=0)
    uninterrupted = load_file(two["student"] / "model.safetensors")
    after_resume = load_file(resumed["student"] / "model.safetensors")
    assert after_resume.keys() == uninterrupted.keys()
    for name, weight in uninterrupted.items():
        torch.testing.assert_close(after_resume[name], weight, atol=ATOL, rtol=0, msg=name)
    torch.testing.assert_close(resumed["logits"]["logits"], two["logits"]["logits"], atol=ATOL, rtol=0)


@pytest.mark.slow
def test_sharded_in_memory_teacher_hashes_like_the_same_unsharded_teacher(runs, resumed):
    """Provenance names an in-memory teacher by a hash of its weights: under FSDP2 / ZeRO-3 the trainer's teacher is
    sharded (DTensors, empty partitions), and the hash must be that of the full weights, as for one process."""
    _, two, _ = runs
    assert two["teacher_record"]["kind"] == "local"  # the uninterrupted runs load it from a folder
    record = resumed["teacher_record"]
    assert record["kind"] == "in-memory"
    unsharded = tiny.ModelFactory(tiny.build_tokenizer())(**TEACHER)
    assert record["content_sha256"] == model_sha256(unsharded)
