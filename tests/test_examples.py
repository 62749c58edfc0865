"""The examples: every YAML recipe parses into its script's dataclasses and states hardware, memory and time; every
script has a PEP 723 header; the accelerate configs load; and each recipe runs through its script's real `main()`
with the model ids replaced by tiny local folders (the only other overrides: data, steps and sizes)."""

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest
import yaml
from datasets import DatasetDict, load_from_disk

from hf_distill.cli import parse_recipe
from tests import tiny

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SCRIPTS = ("logit_distillation", "offline_logits", "sequence_level")
RECIPES = sorted((EXAMPLES / "configs").glob("*.yaml"))
ACCELERATE_CONFIGS = sorted((EXAMPLES / "accelerate").glob("*.yaml"))
# PEP 723's reference regular expression for inline script metadata.
_PEP723 = re.compile(r"(?m)^# /// (?P<type>[a-zA-Z0-9-]+)$\s(?P<content>(^#(| .*)$\s)+)^# ///$")


def _load(name: str):
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses resolve their module while the file executes
        spec.loader.exec_module(module)
    return sys.modules[name]


def _script_of(recipe: Path):
    owners = [name for name in SCRIPTS if recipe.name in _load(name).RECIPES]
    assert len(owners) == 1, f"{recipe.name} must be listed in the RECIPES of exactly one example script: {owners}"
    return _load(owners[0])


# -- recipes, headers, configs ---------------------------------------------------------------------------------------


def test_there_is_a_recipe_for_each_example_task():
    assert len(RECIPES) >= 5 and len(ACCELERATE_CONFIGS) == 3
    assert {_script_of(recipe).__name__ for recipe in RECIPES} == set(SCRIPTS)


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda path: path.name)
def test_every_recipe_parses_into_its_script_dataclasses(recipe):
    module = _script_of(recipe)
    parsed = parse_recipe(module.DATACLASS_TYPES, ["--config", str(recipe)])  # on a CPU too: bf16 follows hardware
    assert [type(p) for p in parsed] == list(module.DATACLASS_TYPES)
    keys = yaml.safe_load(recipe.read_text())
    values = {name: getattr(p, name) for p in parsed for name in vars(p)}
    assert set(keys) <= set(values)  # every key is a field (unknown keys are refused with their closest option)
    for key in ("model_name_or_path", "dataset_name", "output_dir"):
        assert values[key] == keys[key]
    assert values["model_name_or_path"].count("/") == 1  # real Hub ids, replaced by tiny folders in the smoke runs


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda path: path.name)
def test_every_recipe_states_hardware_memory_and_time(recipe):
    header = recipe.read_text().split("\n\n")[0]
    for label in ("# Hardware:", "# Memory:", "# Time:"):
        assert label in header, f"{recipe.name} lacks {label}"
    assert "ESTIMATE" in header  # numbers not measured here say so


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_options_are_hf_distill_command_options(script):
    """One set of names: every option of an example script is an option of some `hf-distill` command, so a recipe
    drives the script and the CLI alike."""
    from dataclasses import fields

    from hf_distill.cli.parser import pipeline_options

    own = {f.name for f in fields(_load(script).DATACLASS_TYPES[0])}
    assert own - pipeline_options() == set()


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_script_has_a_pep723_header_and_a_main(script):
    text = (EXAMPLES / f"{script}.py").read_text()
    blocks = [m for m in _PEP723.finditer(text) if m.group("type") == "script"]
    assert len(blocks) == 1
    content = "".join(
        line[2:] if line.startswith("# ") else line[1:]
        for line in blocks[0].group("content").splitlines(keepends=True)
    )
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    metadata = tomllib.loads(content)
    assert metadata["requires-python"] == ">=3.10" and "hf-distill" in metadata["dependencies"]
    assert callable(_load(script).main)


@pytest.mark.parametrize("config", ACCELERATE_CONFIGS, ids=lambda path: path.name)
def test_accelerate_configs_load(config):
    from accelerate.commands.config.config_args import load_config_from_file

    loaded = load_config_from_file(str(config))
    expected = {"ddp.yaml": "MULTI_GPU", "fsdp2.yaml": "FSDP", "deepspeed_zero3.yaml": "DEEPSPEED"}[config.name]
    assert str(loaded.distributed_type).split(".")[-1] == expected and loaded.mixed_precision == "bf16"
    if config.name == "fsdp2.yaml":
        assert loaded.fsdp_config["fsdp_version"] == 2
        assert loaded.fsdp_config["fsdp_state_dict_type"] == "FULL_STATE_DICT"  # saves a from_pretrained folder
    if config.name == "deepspeed_zero3.yaml":
        # The teacher is partitioned while it loads, then wrapped as a ZeRO-3 inference engine.
        assert loaded.deepspeed_config["zero_stage"] == 3 and loaded.deepspeed_config["zero3_init_flag"] is True


# -- smoke runs: the recipes through the scripts' main(), tiny local models -------------------------------------------


@pytest.fixture(scope="module")
def tiny_assets(tmp_path_factory, model_factory, other_tokenizer):
    root = tmp_path_factory.mktemp("examples")
    DatasetDict({"train": tiny.messages_dataset(8, seed=1), "test": tiny.messages_dataset(4, seed=3)}).save_to_disk(
        str(root / "data")
    )
    return {
        "root": root,
        "data": str(root / "data"),
        "student": model_factory.save(root / "student", "llama", hidden=16, layers=1, seed=1),
        "teacher": model_factory.save(root / "teacher", "llama", hidden=32, seed=2),
        "other_teacher": tiny.ModelFactory(other_tokenizer).save(root / "other-teacher", "llama", hidden=32, seed=3),
    }


def _smoke_args(recipe: str, assets, output_dir: Path, **overrides) -> list[str]:
    args = {
        "config": str(EXAMPLES / "configs" / recipe),
        "model_name_or_path": assets["student"],
        "dataset_name": assets["data"],
        "output_dir": str(output_dir),
        "max_steps": "2",
        "per_device_train_batch_size": "2",
        "gradient_accumulation_steps": "1",
        "max_length": "64",
        "save_strategy": "no",
        **overrides,
    }
    return [item for key, value in args.items() for item in (f"--{key}", value)]


@pytest.mark.slow
@pytest.mark.parametrize(
    "recipe",
    ["qwen2.5-0.5b_from_qwen2.5-1.5b.yaml", "qwen2.5-1.5b-lora_from_qwen2.5-7b-8bit.yaml"],
)
def test_logit_distillation_recipes_run(recipe, tiny_assets, tmp_path):
    out = tmp_path / "student"
    trainer = _load("logit_distillation").main(
        _smoke_args(
            recipe,
            tiny_assets,
            out,
            teacher_model_name_or_path=tiny_assets["teacher"],
            benchmark_max_samples="2",
            benchmark_max_new_tokens="4",
        )
    )
    assert trainer.state.global_step == 2
    provenance = json.loads((out / "distillation_provenance.json").read_text())
    assert provenance["teacher"]["kind"] == "local" and provenance["teacher"]["name"] == "teacher"
    assert (out / "README.md").is_file() and (out / "benchmark" / "report.json").is_file()
    if "8bit" in recipe:  # the recipe's 8-bit teacher and LoRA student, as on the GPU
        assert trainer.teacher.model.is_loaded_in_8bit
        assert (out / "adapter_config.json").is_file()
        assert json.loads((out / "adapter_config.json").read_text())["r"] == 16


@pytest.mark.slow
def test_offline_logits_recipe_caches_then_trains_without_teacher(tiny_assets, tmp_path):
    module = _load("offline_logits")
    recipe = "qwen2.5-1.5b_from_qwen2.5-32b-cached.yaml"
    common = dict(teacher=tiny_assets["teacher"], tokenizer=tiny_assets["student"],
                  logits_dir=str(tmp_path / "logits"), top_k="8")
    cached = module.main(["cache", *_smoke_args(recipe, tiny_assets, tmp_path / "student", **common)])
    assert len(cached) == 8 and len(load_from_disk(str(tmp_path / "logits"))) == 8
    trainer = module.main(["train", *_smoke_args(recipe, tiny_assets, tmp_path / "student", **common)])
    assert trainer.state.global_step == 2 and trainer.teacher.model is None  # no teacher in training
    assert (tmp_path / "student" / "model.safetensors").is_file()
    with pytest.raises(SystemExit, match="usage: offline_logits.py"):
        module.main(["--config", recipe])


@pytest.mark.slow
def test_sequence_level_recipe_runs_across_tokenizers(tiny_assets, tmp_path, tokenizer, other_tokenizer):
    assert tokenizer.get_vocab() != other_tokenizer.get_vocab()
    module = _load("sequence_level")
    trainer = module.main(
        [
            *_smoke_args(
                "smollm2-360m_from_qwen2.5-7b-sequence.yaml",
                tiny_assets,
                tmp_path / "student",
                teacher=tiny_assets["other_teacher"],
                generations_dir=str(tmp_path / "gen"),
                max_new_tokens="6",
                batch_size="4",
            ),
        ]
    )
    generated = load_from_disk(str(tmp_path / "gen"))
    assert len(generated) == 8 and generated["teacher"][0] == tiny_assets["other_teacher"]
    assert trainer.state.global_step == 2 and (tmp_path / "student" / "model.safetensors").is_file()
