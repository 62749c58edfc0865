"""`hf-distill`: every subcommand parses its dataclasses (and `--config` recipes), documents every option, maps onto
the library's public functions (run end to end here with tiny local models), and answers errors with one line plus
the fix and a non-zero exit status (`--debug` shows the traceback)."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

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
    names = {"quickstart", "generate", "cache-logits", "init-student", "train", "benchmark", "card", "push", "space"}
    for name in names:
        assert name in out
    assert set(COMMANDS) == names


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


# -- the newcomer's path: errors in flag words, short usage errors, shared recipes, quick looks -----------------------


def _closed_endpoint(monkeypatch) -> str:
    """Point huggingface_hub at a local port nothing listens on (connections refused) and leave offline mode."""
    import socket

    from huggingface_hub import constants

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{probe.getsockname()[1]}"
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    return endpoint


def test_a_bad_choice_is_one_line_without_the_usage_block(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--divergence", "kl"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert err.splitlines() == [
        "hf-distill train: error: argument --divergence: invalid choice: 'kl' (choose from 'forward_kl', "
        "'reverse_kl', 'jsd', 'skew_forward_kl', 'skew_reverse_kl', 'tvd')",
        "(`hf-distill train --help` lists every option)",
    ]


def test_train_help_opens_on_the_distillation_options(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    lines = capsys.readouterr().out.splitlines()
    first_screen = "\n".join(lines[:50])
    assert lines[0].startswith("usage: hf-distill train [--config RECIPE.yaml]") and len(lines[0]) < 120
    for flag in ("--teacher_model_name_or_path", "--divergence", "--alpha", "--temperature"):
        assert flag in first_screen
    assert "--per_device_train_batch_size" not in first_screen and "--lora_r" not in first_screen
    titles = [line for line in lines if line and not line.startswith(" ") and line.endswith(":")]
    assert titles[:4] == [
        "DistillationConfig: what this library adds:", "TrainScriptArguments:", "ModelConfig:",
        "SFTConfig: TRL and transformers training options:",
    ]


def test_suggestions_rank_the_options_a_word_starts(tmp_path, capsys):
    from trl import ModelConfig

    from hf_distill import DistillationConfig
    from hf_distill.cli import TrainScriptArguments
    from hf_distill.cli.parser import closest_options

    types = (TrainScriptArguments, DistillationConfig, ModelConfig)
    options = {f.name for cls in types for f in dataclasses.fields(cls)}
    assert set(closest_options("teacher", options)) == {"teacher_model_name_or_path", "teacher_model_init_kwargs"}
    assert closest_options("learnig_rate", options)[0] == "learning_rate"
    assert closest_options("divergenc", options)[0] == "divergence"
    code, _, err = _run(["train", "--config", _recipe(tmp_path, {"teacher_model": "t", "output_dir": "o"})], capsys)
    assert code == 1
    assert "'teacher_model' (did you mean 'teacher_model_init_kwargs' or 'teacher_model_name_or_path'?)" in err


def test_train_names_the_flag_of_bad_json(capsys, tmp_path):
    code, _, err = _run(["train", "--teacher_model_init_kwargs", "{bad", "--output_dir", str(tmp_path)], capsys)
    assert code == 1
    assert "(--teacher_model_init_kwargs) is not valid JSON (Expecting property name enclosed in double quotes" in err


def test_library_errors_name_the_flags_the_user_typed(trained, monkeypatch, capsys):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    code, _, err = _run(["push", "--folder", str(trained), "--repo_id", "tester/x"], capsys)
    assert code == 1 and "pass `--token`" in err and "token=" not in err
    code, _, err = _run(["push", "--folder", str(trained), "--repo_id", "tester/x", "--mode", "merged"], capsys)
    assert code == 1
    assert "--mode merged needs a PEFT adapter" in err and "use --mode full for a full student" in err
    assert "mode=" not in err and "push_student" not in err


def test_unreachable_hub_fails_at_once_with_the_fix(monkeypatch, capsys, tmp_path):
    import time

    endpoint = _closed_endpoint(monkeypatch)
    start = time.perf_counter()
    code, _, err = _run(["train", "--model_name_or_path", "org/student", "--dataset_name", "org/data",
                         "--output_dir", str(tmp_path)], capsys)
    assert code == 1 and time.perf_counter() - start < 10  # no retries with back-off
    assert f"Cannot reach the Hugging Face Hub at {endpoint}" in err
    assert "--model_name_or_path org/student, --dataset_name org/data" in err
    assert "pass a local folder instead of the Hub id, or set HF_HUB_OFFLINE=1" in err


def test_push_to_an_unreachable_endpoint_says_the_fix(trained, monkeypatch, capsys):
    endpoint = _closed_endpoint(monkeypatch)
    monkeypatch.setenv("HF_TOKEN", "hf_" + "x" * 30)
    code, _, err = _run(["push", "--folder", str(trained), "--repo_id", "tester/x"], capsys)
    assert code == 1 and f"Cannot reach the Hugging Face Hub at {endpoint}" in err
    assert "Check the network" in err and "HF_HUB_OFFLINE=1" in err


def test_card_says_it_replaced_its_own_card(trained, capsys):
    code, out, _ = _run(["card", "--folder", str(trained)], capsys)
    assert code == 0 and "(replaced the previous hf-distill card there)" in out


def test_one_recipe_drives_cache_logits_generate_and_train():
    """Recipes (c) and (d) parse into the CLI commands their docs pair them with; each command takes its own keys."""
    from trl import ModelConfig

    from hf_distill import DistillationConfig
    from hf_distill.cli import CacheLogitsArguments, GenerateArguments, TrainScriptArguments, parse_recipe

    configs = Path(__file__).resolve().parents[1] / "examples" / "configs"
    cached = str(configs / "qwen2.5-1.5b_from_qwen2.5-32b-cached.yaml")
    (cache,) = parse_recipe((CacheLogitsArguments,), ["--config", cached])
    script, config, _ = parse_recipe((TrainScriptArguments, DistillationConfig, ModelConfig), ["--config", cached])
    assert cache.teacher == "Qwen/Qwen2.5-32B-Instruct" and cache.batch_size == 4
    assert cache.logits_dir == script.logits_dir == "qwen2.5-32b-capybara-top64"
    assert cache.teacher_model_init_kwargs == config.teacher_model_init_kwargs == {"device_map": "auto",
                                                                                   "dtype": "bfloat16"}
    sequence = str(configs / "smollm2-360m_from_qwen2.5-7b-sequence.yaml")
    (generate,) = parse_recipe((GenerateArguments,), ["--config", sequence])
    assert generate.generations_dir == "qwen2.5-7b-capybara-completions" and generate.batch_size == 16


def test_quick_look_rows_provenance_by_file_and_no_cache_files_in_the_input(assets, capsys, tmp_path):
    import hashlib

    code, out, err = _run(["generate", "--teacher", assets["teacher"], "--dataset_name", assets["data"],
                           "--generations_dir", str(tmp_path / "gen"), "--max_new_tokens", "2", "--max_rows", "3"],
                          capsys)
    assert code == 0, err
    assert len(load_from_disk(str(tmp_path / "gen"))) == 3
    code, out, err = _run(["cache-logits", "--teacher", assets["teacher"], "--dataset_name", assets["data"],
                           "--logits_dir", str(tmp_path / "logits"), "--top_k", "4", "--max_rows", "5"], capsys)
    assert code == 0 and len(load_from_disk(str(tmp_path / "logits"))) == 5
    data_file = tmp_path / "rows.jsonl"
    tiny.prompt_completion_dataset(8, seed=4).to_json(str(data_file))
    code, _, err = _run(["train", "--model_name_or_path", assets["student"], "--teacher_model_name_or_path",
                         assets["teacher"], "--dataset_name", str(data_file), "--output_dir", str(tmp_path / "s"),
                         "--max_steps", "1", "--report_to", "none", "--save_strategy", "no", "--use_cpu", "true"],
                        capsys)
    assert code == 0, err
    (record,) = json.loads((tmp_path / "s" / "distillation_provenance.json").read_text())["datasets"]
    assert (record["name"], record["kind"]) == ("rows.jsonl", "local")
    assert record["content_sha256"] == hashlib.sha256(data_file.read_bytes()).hexdigest()
    assert "`rows.jsonl` (local" in (tmp_path / "s" / "README.md").read_text()
    assert not list(Path(assets["data"]).rglob("cache-*.arrow"))  # maps of a folder dataset write elsewhere


def test_cache_logits_across_tokenizers_then_train(assets, other_tokenizer, capsys, tmp_path):
    """`cache-logits --student_tokenizer`: a teacher with another tokenizer writes a cache for the student, which
    `train --cross_tokenizer uld` reads without the teacher; the provenance names both tokenizers."""
    from hf_distill.fingerprints import tokenizer_hash

    teacher = tiny.ModelFactory(other_tokenizer).save(tmp_path / "other-teacher", "llama", hidden=48, seed=2)
    code, out, err = _run(["cache-logits", "--teacher", teacher, "--student_tokenizer", assets["student"],
                           "--dataset_name", assets["data"], "--logits_dir", str(tmp_path / "logits"),
                           "--top_k", "8", "--max_length", "64"], capsys)
    assert code == 0, err
    code, _, err = _run(["train", "--model_name_or_path", assets["student"],
                         "--dataset_name", str(tmp_path / "logits"), "--cross_tokenizer", "uld",
                         "--output_dir", str(tmp_path / "s"), "--max_steps", "1",
                         "--report_to", "none", "--save_strategy", "no", "--max_length", "64", "--use_cpu", "true"],
                        capsys)
    assert code == 0, err
    record = json.loads((tmp_path / "s" / "distillation_provenance.json").read_text())["cross_tokenizer"]
    assert record["method"] == "uld" and record["teacher_tokenizer"]["sha256"] == tokenizer_hash(other_tokenizer)
