"""`hf-distill`: every subcommand parses its dataclasses (and `--config` recipes), documents every option, maps onto
the library's public functions (run end to end here with tiny local models), and answers errors with one line plus
the fix and a non-zero exit status (`--debug` shows the traceback)."""

import dataclasses
import json
import subprocess
import sys

import pytest
import yaml
from datasets import DatasetDict, load_from_disk
from huggingface_hub import ModelCard

from hf_distill.benchmark import BenchmarkReport
from hf_distill.cli import COMMANDS, main, make_parser
from tests import tiny


@pytest.fixture(scope="module")
def assets(tmp_path_factory, model_factory):
    root = tmp_path_factory.mktemp("cli")
    teacher = model_factory.save(root / "teacher", "llama", hidden=48, seed=2)
    student = model_factory.save(root / "student-init", "llama", hidden=16, layers=1, seed=1)
    DatasetDict(
        {"train": tiny.prompt_completion_dataset(16, seed=1), "test": tiny.prompt_completion_dataset(4, seed=9)}
    ).save_to_disk(str(root / "data"))
    return {"root": root, "teacher": teacher, "student": student, "data": str(root / "data")}


def _run(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# -- parsing and help ------------------------------------------------------------------------------------------------


def test_top_level_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for name in ("quickstart", "generate", "cache-logits", "train", "benchmark", "card", "push", "space"):
        assert name in out
    assert set(COMMANDS) == {"quickstart", "generate", "cache-logits", "train", "benchmark", "card", "push", "space"}


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_option_of_every_command_is_documented(name):
    parser = make_parser(COMMANDS[name].dataclass_types(), prog=f"hf-distill {name}")
    helps = {action.dest: action.help for action in parser._actions}
    assert helps.get("config")  # every command takes a recipe
    for dataclass_type in COMMANDS[name].dataclass_types():
        for field in dataclasses.fields(dataclass_type):
            if field.init:
                assert helps.get(field.name), f"--{field.name} of `hf-distill {name}` has no help"


def test_subcommand_help_shows_config_loss_and_lora_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0
    for flag in ("--config", "--divergence", "--teacher_model_name_or_path", "--alpha", "--lora_r", "--dataset_name"):
        assert flag in out


# -- errors ----------------------------------------------------------------------------------------------------------


def _recipe(tmp_path, content) -> str:
    path = tmp_path / "recipe.yaml"
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    return str(path)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["generate"], "`hf-distill generate` needs --teacher, --dataset_name, --output_dir: pass them"),
        (["push", "--folder", "x"], "`hf-distill push` needs --repo_id"),
        (["train", "--config", "missing.yaml"], "Recipe 'missing.yaml' does not exist"),
        (["train", "--alpha", "2", "--output_dir", "o"], "`alpha` (--alpha) is 2.0; it must be in [0, 1]"),
        (["quickstart", "--output-dir", "qs", "--push-to-hub", "bad id"], "push_to_hub"),  # the spelling
        (
            [
                "generate",
                "--teacher",
                "t",
                "--dataset_name",
                "d",
                "--output_dir",
                "o",
                "--teacher_model_init_kwargs",
                "{bad",
            ],
            "--teacher_model_init_kwargs is not a JSON object",
        ),
    ],
)
def test_errors_are_one_line_with_the_fix_and_exit_1(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = _run(argv, capsys)
    assert code == 1
    assert message in err
    assert "Traceback" not in err and err.rstrip().endswith("(run again with --debug for the full traceback)")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"divergenc": "jsd", "output_dir": "o"}, "'divergenc' (did you mean 'divergence'?)"),
        ("- a\n- b\n", "must be a YAML mapping of option names to values, got list"),
        ("key: [unclosed\n", "is not valid YAML"),
    ],
)
def test_bad_recipes_are_named_with_the_fix(content, message, capsys, tmp_path):
    code, _, err = _run(["train", "--config", _recipe(tmp_path, content)], capsys)
    assert code == 1 and message in err


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        main(["train", "--config", str(tmp_path / "missing.yaml"), "--debug"])


def test_usage_errors_exit_2(capsys):
    for argv in (["no-such-command"], ["train", "--alpha", "not-a-number"]):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2, argv
    assert main([]) == 2 and "<command>" in capsys.readouterr().out  # no command: the help, as a usage error


def test_interrupt_exits_130(monkeypatch, capsys):
    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setitem(COMMANDS, "card", dataclasses.replace(COMMANDS["card"], run=interrupted))
    code, _, err = _run(["card", "--folder", "x"], capsys)
    assert code == 130 and "interrupted" in err


def test_console_script_exit_status_and_one_line_error(tmp_path):
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from hf_distill.cli import main; sys.exit(main())",
            "train",
            "--config",
            str(tmp_path / "missing.yaml"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 1
    errors = [line for line in completed.stderr.splitlines() if line.startswith("hf-distill train: error:")]
    assert len(errors) == 1 and "Traceback" not in completed.stderr


# -- end to end with tiny models -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(assets):
    """`hf-distill train --config recipe.yaml` with a flag overriding the recipe, benchmark after training."""
    out = assets["root"] / "trained"
    recipe = assets["root"] / "train.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "model_name_or_path": assets["student"],
                "teacher_model_name_or_path": assets["teacher"],
                "dataset_name": assets["data"],
                "output_dir": str(out),
                "max_steps": 50,
                "per_device_train_batch_size": 4,
                "report_to": "none",
                "save_strategy": "no",
                "max_length": 64,
                "benchmark_after_training": True,
                "benchmark_max_new_tokens": 4,
                "alpha": 0.5,
                "use_cpu": True,
            }
        )
    )
    assert main(["train", "--config", str(recipe), "--max_steps", "2"]) == 0
    return out


def test_train_writes_student_provenance_card_and_report(trained):
    assert (trained / "model.safetensors").is_file() and (trained / "distillation_provenance.json").is_file()
    report = BenchmarkReport.from_json(trained / "benchmark" / "report.json")
    assert report.teacher is not None and report.student.fidelity is not None
    card = ModelCard.load(trained / "README.md")
    assert "distillation" in card.data.tags and card.data.to_dict()["model-index"]
    provenance = json.loads((trained / "distillation_provenance.json").read_text())
    assert provenance["config"]["max_steps"] == 2  # the command-line flag beat the recipe's 50 steps
    assert provenance["config"]["alpha"] == 0.5  # ... and the recipe beat the default


def test_benchmark_card_and_space_commands(trained, assets, capsys, tmp_path):
    code, out, _ = _run(
        [
            "benchmark",
            "--student",
            str(trained),
            "--teacher",
            assets["teacher"],
            "--dataset_name",
            assets["data"],
            "--max_new_tokens",
            "4",
            "--batch_sizes",
            "1",
            "--num_latency_runs",
            "1",
            "--output_dir",
            str(tmp_path / "bench"),
        ],
        capsys,
    )
    assert code == 0 and "Forward KL" in out
    assert BenchmarkReport.from_json(tmp_path / "bench" / "report.json").student.quality.num_examples == 4
    assert (tmp_path / "bench" / "student_vs_teacher.png").stat().st_size > 1000

    code, out, _ = _run(["card", "--folder", str(trained), "--output", str(tmp_path / "CARD.md")], capsys)
    assert code == 0 and ModelCard.load(tmp_path / "CARD.md").data.license

    code, out, _ = _run(
        ["space", "--student", str(trained), "--teacher", assets["teacher"], "--output_dir", str(tmp_path / "space")],
        capsys,
    )
    assert code == 0 and (tmp_path / "space" / "app.py").is_file() and "Space folder" in out


def test_generate_and_cache_logits_commands_then_train_without_teacher(assets, capsys, tmp_path):
    code, out, _ = _run(
        [
            "generate",
            "--teacher",
            assets["teacher"],
            "--dataset_name",
            assets["data"],
            "--output_dir",
            str(tmp_path / "gen"),
            "--max_new_tokens",
            "4",
            "--num_samples",
            "2",
        ],
        capsys,
    )
    assert code == 0 and "32 completions" in out
    assert len(load_from_disk(str(tmp_path / "gen"))) == 32

    code, out, _ = _run(
        [
            "cache-logits",
            "--teacher",
            assets["teacher"],
            "--dataset_name",
            assets["data"],
            "--output_dir",
            str(tmp_path / "logits"),
            "--top_k",
            "8",
            "--max_length",
            "64",
        ],
        capsys,
    )
    assert code == 0 and "top-8" in out
    code, _, err = _run(
        [
            "train",
            "--model_name_or_path",
            assets["student"],
            "--dataset_name",
            str(tmp_path / "logits"),
            "--output_dir",
            str(tmp_path / "from-cache"),
            "--max_steps",
            "2",
            "--report_to",
            "none",
            "--save_strategy",
            "no",
            "--max_length",
            "64",
            "--use_cpu",
            "true",
        ],
        capsys,
    )
    assert code == 0, err
    assert (tmp_path / "from-cache" / "model.safetensors").is_file()


def test_push_command(trained, hub_server, capsys, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)  # HF_HOME is a temporary folder: no stored login either
    code, _, err = _run(["push", "--folder", str(trained), "--repo_id", "tester/cli-student"], capsys)
    assert code == 1 and "No Hugging Face token" in err and hub_server.requests == []

    monkeypatch.setenv("HF_TOKEN", hub_server.token)
    code, out, err = _run(["push", "--folder", str(trained), "--repo_id", "tester/cli-student"], capsys)
    assert code == 0, err
    assert "model.safetensors" in hub_server.files("tester/cli-student") and "Pushed" in out
    assert hub_server.token not in out + err


def test_train_with_push_to_hub_pushes_once_with_the_benchmark(assets, hub_server, monkeypatch, tmp_path, capsys):
    import hf_distill.publish.student as student_push
    import hf_distill.training.trainer as trainer_module

    monkeypatch.setenv("HF_TOKEN", hub_server.token)
    calls = {"train": 0, "save_model": 0, "build_model_card": 0}

    def counted(name, function):  # counts the calls made once training is over (checkpoints save and card too)
        def wrapper(*args, **kwargs):
            calls[name] += name != "train" and calls["train"] > 0
            result = function(*args, **kwargs)
            calls["train"] += name == "train"
            return result
        return wrapper

    for name in ("train", "save_model"):
        monkeypatch.setattr(trainer_module.DistillationTrainer, name,
                            counted(name, getattr(trainer_module.DistillationTrainer, name)))
    for module in (trainer_module, student_push):
        monkeypatch.setattr(module, "build_model_card", counted("build_model_card", module.build_model_card))
    code, out, err = _run([
        "train", "--model_name_or_path", assets["student"], "--teacher_model_name_or_path", assets["teacher"],
        "--dataset_name", assets["data"], "--output_dir", str(tmp_path / "out"), "--max_steps", "2",
        "--save_steps", "1", "--per_device_train_batch_size", "4", "--max_length", "64", "--report_to", "none",
        "--use_cpu", "--benchmark_after_training", "--benchmark_max_new_tokens", "2", "--push_to_hub",
        "--hub_model_id", "tester/cli-trained",
    ], capsys)
    assert code == 0, err
    # One checked commit on top of the repo's first one: no checkpoint uploads, no extra push from `save_model`.
    assert len(hub_server.commits("tester/cli-trained")) == 2 and "Pushed" in out
    assert "benchmark/report.json" in hub_server.files("tester/cli-trained")
    # The student is saved once and gets one card: the one pushed is the one kept beside it.
    assert calls == {"train": 1, "save_model": 1, "build_model_card": 1}
    pushed = hub_server.files("tester/cli-trained")["README.md"].content
    assert (tmp_path / "out" / "README.md").read_bytes() == pushed
