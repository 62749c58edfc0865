"""Every accelerate config of `examples/accelerate/` is launched for real: `accelerate launch` with a CPU variant of
the shipped file, 2 processes over gloo, running `examples/logit_distillation.py` on a recipe of `examples/configs/`
with tiny local models. (The other recipes run through their scripts' `main()` in `tests/test_examples.py`.)"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM

from tests.distributed import DEEPSPEED_SKIP_REASON, deepspeed_missing, free_port
from tests.test_examples import _smoke_args
from tests.test_examples import tiny_assets as examples_assets

REPO = Path(__file__).resolve().parents[1]
tiny_assets = examples_assets  # test_examples.py's fixture: a tiny student, teacher and dataset saved to folders
EXAMPLES = REPO / "examples"

# The only fields of a shipped accelerate config the CPU variant changes, and why:
#   use_cpu: true          there is no GPU here (accelerate then uses gloo);
#   mixed_precision: "no"  bf16 autocast on CPU is slow and not what these tiny float32 runs compare;
#   num_processes: 2       two CPU processes instead of 8 GPUs.
# Everything else (engine, FSDP2 units, resharding, `fsdp_cpu_ram_efficient_loading`, ZeRO-3 with `zero3_init_flag`,
# the 16-bit save) is launched as shipped.
CPU_OVERRIDES = {"use_cpu": True, "mixed_precision": "no", "num_processes": 2}

# Config -> (recipe it is documented with, accelerate's engine, the teacher's wrapper class under that engine).
LAUNCHES = {
    "ddp.yaml": ("qwen2.5-0.5b_from_qwen2.5-1.5b.yaml", "MULTI_CPU", "LlamaForCausalLM"),
    "fsdp2.yaml": ("qwen2.5-7b_from_qwen2.5-32b-zero3.yaml", "FSDP", "FSDPLlamaForCausalLM"),
    "deepspeed_zero3.yaml": ("qwen2.5-7b_from_qwen2.5-32b-zero3.yaml", "DEEPSPEED", "DeepSpeedEngine"),
}


def _param(name: str):
    marks = [pytest.mark.slow]
    if name == "deepspeed_zero3.yaml":
        marks.append(pytest.mark.skipif(deepspeed_missing(), reason=DEEPSPEED_SKIP_REASON))
    return pytest.param(name, marks=marks, id=name)


def test_every_accelerate_config_is_launched():
    assert set(LAUNCHES) == {path.name for path in (EXAMPLES / "accelerate").glob("*.yaml")}
    assert all((EXAMPLES / "configs" / recipe).is_file() for recipe, _, _ in LAUNCHES.values())


def cpu_variant(config: Path, folder: Path) -> Path:
    """`config` with `CPU_OVERRIDES` applied, written to `folder`; every other field as shipped."""
    shipped = yaml.safe_load(config.read_text())
    assert set(CPU_OVERRIDES) <= set(shipped)  # overriding fields the shipped file sets, not adding new ones
    path = folder / f"cpu-{config.name}"
    path.write_text(yaml.safe_dump({**shipped, **CPU_OVERRIDES}))
    return path


def _script_args(recipe: str, assets, output_dir: Path, *, cpu: bool = True) -> list[str]:
    """The recipe with the model ids replaced by tiny folders (`tests/test_examples.py`'s overrides: data, steps and
    sizes), a learning rate that moves the weights in 2 steps, and on CPU `--use_cpu` (accelerate's multi-process
    launcher hands the config's `use_cpu` to the script only on its single-process path)."""
    return _smoke_args(
        recipe, assets, output_dir, teacher_model_name_or_path=assets["teacher"], learning_rate="1e-2",
        warmup_steps="0", logging_steps="1", benchmark_max_samples="2", benchmark_max_new_tokens="4",
        **({"use_cpu": "true"} if cpu else {}),
    )


def _launch(config: Path, recipe: str, assets, tmp_path: Path, *launch_args: str, cpu: bool = True) -> list[str]:
    return [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config), *launch_args,
        "-m", "tests.scripts.launch_example", str(EXAMPLES / "logit_distillation.py"), str(tmp_path / "record.json"),
        "--", *_script_args(recipe, assets, tmp_path / "student", cpu=cpu),
    ]


def _check_trained(tmp_path: Path, assets, engine: str, teacher_engine: str, processes: int = 2) -> dict:
    """The run's record: `processes` processes under `engine`, 2 steps, finite losses; its saved folder loads with
    plain from_pretrained, its lm_head trained, and provenance names the teacher folder."""
    record = json.loads((tmp_path / "record.json").read_text())
    assert (record["distributed_type"], record["num_processes"], record["global_step"]) == (engine, processes, 2)
    assert record["teacher_engine"] == teacher_engine
    assert len(record["losses"]) == 2 and all(torch.isfinite(torch.tensor(record["losses"])))
    student = AutoModelForCausalLM.from_pretrained(tmp_path / "student", dtype=torch.float32)
    initial = AutoModelForCausalLM.from_pretrained(assets["student"], dtype=torch.float32)
    assert (student.lm_head.weight - initial.lm_head.weight).abs().max() > 1e-3
    provenance = json.loads((tmp_path / "student" / "distillation_provenance.json").read_text())
    assert provenance["teacher"]["kind"] == "local" and provenance["teacher"]["name"] == "teacher"
    return record


ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def _launch_and_check(config: str, config_file: Path, assets, tmp_path: Path, *, cpu: bool, processes: int) -> dict:
    """`accelerate launch --config_file config_file` of `config`'s recipe on this machine, then `_check_trained`."""
    recipe, engine, teacher_engine = LAUNCHES[config]
    command = _launch(config_file, recipe, assets, tmp_path, "--main_process_ip", "127.0.0.1",
                      "--main_process_port", str(free_port()), cpu=cpu)
    completed = subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-4000:]
    return _check_trained(tmp_path, assets, engine, teacher_engine, processes=processes)


@pytest.mark.parametrize("config", [_param(name) for name in LAUNCHES])
def test_accelerate_config_launches_the_example(config, tiny_assets, tmp_path):
    record = _launch_and_check(config, cpu_variant(EXAMPLES / "accelerate" / config, tmp_path), tiny_assets,
                               tmp_path, cpu=True, processes=CPU_OVERRIDES["num_processes"])
    assert record["fsdp_version"] == (2 if config == "fsdp2.yaml" else None)
    assert record["zero_stage"] == (3 if config == "deepspeed_zero3.yaml" else None)


GPUS = torch.cuda.device_count()


@pytest.mark.gpu
@pytest.mark.skipif(GPUS == 0, reason="needs a CUDA GPU")
@pytest.mark.parametrize("config", [
    pytest.param(name, marks=pytest.mark.skipif(name == "deepspeed_zero3.yaml" and deepspeed_missing(),
                                                reason=DEEPSPEED_SKIP_REASON))
    for name in ("fsdp2.yaml", "deepspeed_zero3.yaml")
])
def test_accelerate_config_launches_the_example_on_gpus(config, tiny_assets, tmp_path):
    """The shipped config on the GPUs present, as shipped (bf16, NCCL) but for `num_processes` (the config's 8 GPUs
    are rarely all here). DDP needs 2 GPUs to be more than a plain run, so it is the CPU test's."""
    shipped = yaml.safe_load((EXAMPLES / "accelerate" / config).read_text())
    variant = tmp_path / f"gpu-{config}"
    variant.write_text(yaml.safe_dump({**shipped, "num_processes": GPUS}))
    record = _launch_and_check(config, variant, tiny_assets, tmp_path, cpu=False, processes=GPUS)
    assert record["mixed_precision"] == "bf16"


@pytest.mark.slow
def test_documented_two_node_launch(tiny_assets, tmp_path):
    """docs/scaling.md's two-node FSDP2 launch, both "nodes" on this machine: its YAML keys over fsdp2.yaml, the CPU
    overrides, one process per node (so `--num_processes 2` where the doc has 16), the main node at 127.0.0.1. Each
    node runs the documented command with its own `--machine_rank`."""
    doc = (REPO / "docs" / "scaling.md").read_text()
    documented = re.search(r"accelerate launch --config_file fsdp2_2nodes.yaml(.*?)examples/", doc, re.S).group(1)
    flags = re.findall(r"--(\w+)", documented)
    assert flags == ["num_machines", "num_processes", "machine_rank", "main_process_ip", "main_process_port"]
    keys = yaml.safe_load(re.search(r"```yaml\n(.*?)```", doc, re.S).group(1))
    port = free_port()
    shipped = yaml.safe_load((EXAMPLES / "accelerate" / "fsdp2.yaml").read_text())
    config = tmp_path / "fsdp2_2nodes.yaml"
    config.write_text(yaml.safe_dump({**shipped, **keys, **CPU_OVERRIDES, "main_process_ip": "127.0.0.1",
                                      "main_process_port": port}))
    values = {"num_machines": "2", "num_processes": "2", "main_process_ip": "127.0.0.1",
              "main_process_port": str(port)}  # and `--machine_rank` 0 or 1
    nodes = [
        subprocess.Popen(
            _launch(config, LAUNCHES["fsdp2.yaml"][0], tiny_assets, tmp_path,
                    *[item for flag in flags for item in (f"--{flag}", values.get(flag, str(rank)))]),
            cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for rank in (0, 1)
    ]
    for node in nodes:
        out, err = node.communicate(timeout=600)
        assert node.returncode == 0, out[-2000:] + err[-4000:]
    _check_trained(tmp_path, tiny_assets, "FSDP", LAUNCHES["fsdp2.yaml"][2])
