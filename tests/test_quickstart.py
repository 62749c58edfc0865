"""The quickstart: its generated dataset, tokenizer, scoring and table, and an end-to-end run of the `smoke` preset
(the same code path as `standard`, tiny sizes) checked through its output folder, the teacher cache and a push to
the local Hub server."""

import dataclasses
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import torch
from huggingface_hub import DatasetCard, ModelCard, SpaceCard

from hf_distill.benchmark import BenchmarkReport
from hf_distill.benchmark.quality import TASK_METRICS
from hf_distill.publish.provenance import Provenance
from hf_distill.publish.space.requirements import GRADIO_SDK_VERSION
from hf_distill.quickstart import (
    PRESETS,
    QuickstartError,
    QuickstartStageError,
    answer_is_valid,
    build_task_dataset,
    run_quickstart,
)
from hf_distill.quickstart.models import train_tokenizer
from hf_distill.quickstart.report import comparison_rows, format_table, verdict_lines
from hf_distill.quickstart.scoring import TASK_ACCURACY, task_accuracy_metric
from hf_distill.quickstart.tasks import extract_answer

# -- dataset ---------------------------------------------------------------------------------------------------------


def test_task_dataset_is_deterministic_with_disjoint_splits_and_many_multi_answer_prompts():
    data = build_task_dataset(600, 60, seed=3)
    assert data["train"].to_dict() == build_task_dataset(600, 60, seed=3)["train"].to_dict()
    assert data["train"]["completion"] != build_task_dataset(600, 60, seed=4)["train"]["completion"]
    assert set(data["train"]["prompt"]).isdisjoint(data["test"]["prompt"])
    rows = list(data["train"])
    assert all(row["completion"].strip() in row["valid_answers"] for row in rows)
    multi = [row for row in rows if len(row["valid_answers"]) > 1]
    assert len(multi) / len(rows) > 0.5  # where the teacher's distribution carries more than one label
    # Repeated prompts get different sampled answers: one label per row, not the answer set.
    answers_by_prompt = {}
    for row in multi:
        answers_by_prompt.setdefault(row["prompt"], set()).add(row["completion"])
    assert any(len(answers) > 1 for answers in answers_by_prompt.values())
    assert {"category_other_than", "number_between", "addition"} <= set(data["train"]["task"])


def test_answers_are_checked_against_every_valid_answer():
    assert extract_answer(" pear.\nQ: more") == "pear"
    assert answer_is_valid(" pear", ["apple", "pear"]) and answer_is_valid("apple.", ["apple", "pear"])
    assert not answer_is_valid(" plum", ["apple", "pear"]) and not answer_is_valid("", ["apple"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_train": 0}, "num_train (0)"),
        ({"num_test": 0}, "num_test (0)"),
        ({"test_fraction": 1.5}, "test_fraction"),
    ],
)
def test_bad_dataset_sizes_are_refused(kwargs, message):
    with pytest.raises(QuickstartError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build_task_dataset(**{"num_train": 10, "num_test": 2, **kwargs})


def test_tokenizer_training_is_deterministic_and_round_trips():
    texts = [row["prompt"] + row["completion"] for row in build_task_dataset(200, 10)["train"]]
    first, second = train_tokenizer(texts, vocab_size=300), train_tokenizer(texts, vocab_size=300)
    assert first.get_vocab() == second.get_vocab()
    ids = first(texts[0])["input_ids"]
    assert first.decode(ids) == texts[0]
    rendered = first.apply_chat_template([{"role": "user", "content": "what is 2 plus 3"}], tokenize=False)
    assert rendered == "Q: what is 2 plus 3\nA:"  # chat front-ends prompt the models in the task format


# -- scoring and table -----------------------------------------------------------------------------------------------


def test_task_accuracy_metric_is_registered_only_inside_its_block_and_checks_the_rows():
    held_out = build_task_dataset(10, 4, seed=1)["test"]
    references = [c.strip() for c in held_out["completion"]]
    with task_accuracy_metric(held_out) as name:
        metric = TASK_METRICS[name].fn
        assert metric(references, references) == 1.0  # the sampled answers are valid answers
        assert metric(["nonsense"] * 4, references) == 0.0
        with pytest.raises(QuickstartError, match="another dataset"):
            metric(references, ["x"] * 4)
    assert TASK_ACCURACY not in TASK_METRICS


def test_verdict_says_what_the_numbers_show_whichever_way():
    rows = [
        {"role": "teacher", "model": "teacher", "forward_kl": 0.0, "top1_agreement": 1.0, "task_accuracy": 0.7},
        {
            "role": "student",
            "model": "distilled student",
            "forward_kl": 0.30,
            "top1_agreement": 0.8,
            "task_accuracy": 0.5,
            "cross_entropy": 1.0,
        },
        {
            "role": "baseline",
            "model": "SFT student",
            "forward_kl": 0.20,
            "top1_agreement": 0.8,
            "task_accuracy": 0.6,
            "cross_entropy": 0.9,
        },
    ]
    text = "\n".join(verdict_lines(rows))
    assert "divergence to the teacher (lower is closer): the SFT student is better (0.3 distilled vs 0.2 SFT)" in text
    assert "top-1 agreement with the teacher: the distilled and SFT students tie" in text
    assert "task accuracy (any valid answer): the SFT student is better" in text
    table = format_table(rows)
    assert table.splitlines()[0].startswith("model") and "SFT student" in table and "-" in table.splitlines()[2]


# -- arguments -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"preset": "huge"}, "`preset` (--preset) is 'huge'; choose one of: standard, smoke."),
        ({"push_to_hub": "not a repo id"}, "push_to_hub"),
        ({"num_threads": 0}, "`num_threads` (--num_threads) is 0; it must be an integer >= 1, or unset."),
    ],
)
def test_bad_arguments_fail_before_any_work(tmp_path, kwargs, message):
    with pytest.raises(QuickstartError, match="Invalid quickstart arguments") as error:
        run_quickstart(tmp_path / "out", cache_dir=tmp_path / "cache", **kwargs)
    assert message in str(error.value)
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


def test_output_dir_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(QuickstartError, match=r"`output_dir` \(--output_dir\) .* is a file"):
        run_quickstart(tmp_path / "file", preset="smoke", cache_dir=tmp_path / "cache")


def test_standard_preset_students_share_steps_and_shape():
    preset = PRESETS["standard"]
    assert preset.student.hidden_size < preset.teacher.hidden_size and preset.student_steps > 0
    assert preset.teacher_key() != PRESETS["smoke"].teacher_key()


# -- end to end ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("quickstart")
    lines = []
    threads = torch.get_num_threads()
    result = run_quickstart(root / "out", preset="smoke", cache_dir=root / "cache", echo=lines.append)
    assert torch.get_num_threads() == threads  # its one-thread setting does not outlive the run
    return result, lines, root


@pytest.mark.slow
def test_smoke_run_writes_student_card_report_provenance_and_space(smoke_run):
    result, lines, root = smoke_run
    out = root / "out"
    assert lines[0] == "[1/6] Building the task dataset ..." and lines[-1].startswith("[6/6] Writing the model card")
    student = out / "student"
    for name in (
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "README.md",
        "distillation_provenance.json",
        "benchmark/report.json",
        "benchmark/report.md",
    ):
        assert (student / name).is_file(), name
    for plot in ("benchmark/student_vs_teacher.png", "benchmark/training_curves.png"):
        assert (student / plot).stat().st_size > 1000
    assert (out / "sft-student" / "model.safetensors").is_file()
    assert (out / "space" / "app.py").is_file() and (out / "space" / "README.md").is_file()
    assert DatasetCard.load(out / "data" / "README.md").data.license == "cc0-1.0"

    # The card carries the measured numbers (task accuracy included) and names the real sources.
    card = ModelCard.load(student / "README.md")
    assert card.data.license == "apache-2.0"
    metrics = {m["name"]: m["value"] for m in card.data.to_dict()["model-index"][0]["results"][0]["metrics"]}
    report = BenchmarkReport.from_json(student / "benchmark" / "report.json")
    assert metrics["Task accuracy"] == pytest.approx(report.student.quality.task_metrics[TASK_ACCURACY])
    assert metrics["Forward KL to teacher (nats/token)"] == pytest.approx(report.student.fidelity.forward_kl)
    assert "hf-distill-quickstart-student" in card.text
    provenance = json.loads((student / "distillation_provenance.json").read_text())
    assert provenance["teacher"]["license"] == "apache-2.0" and provenance["config"]["alpha"] == 1.0
    # The trust measurements reach the card's "Risks and measurements" section and risk_record.json, student and
    # teacher side by side.
    assert "## Risks and measurements" in card.text and report.trust is not None
    risk = json.loads((student / "risk_record.json").read_text())
    assert risk["provenance_file"] == "distillation_provenance.json"
    assert risk["license_verdict"] == Provenance.load(student).check_license().status
    assert risk["measurements"] == json.loads(json.dumps(dataclasses.asdict(report.trust)))

    # The printed table is the report, row by row.
    saved = json.loads((out / "quickstart_report.json").read_text())
    assert [row["model"] for row in saved["rows"]] == ["teacher", "distilled student", "SFT student"]
    assert saved["rows"] == comparison_rows(report, TASK_ACCURACY)
    assert saved["rows"][1]["num_parameters"] < saved["rows"][0]["num_parameters"]
    assert saved["timings_seconds"]["total"] > 0 and saved["teacher_cache_hit"] is False
    summary = result.summary()
    assert "distilled student" in summary and "Distilled vs SFT student" in summary
    assert TASK_ACCURACY not in TASK_METRICS  # the run's metric does not leak


@pytest.mark.slow
def test_second_run_reuses_the_cached_teacher(smoke_run):
    first, _, root = smoke_run
    again = run_quickstart(root / "again", preset="smoke", cache_dir=root / "cache", echo=lambda line: None)
    assert again.teacher_cache_hit and again.teacher_dir == first.teacher_dir
    assert again.timings["teacher"] < first.timings["teacher"]
    assert list((root / "cache" / "quickstart").iterdir()) == [first.teacher_dir]  # no staging folders left


@pytest.mark.slow
def test_push_to_hub_pushes_student_and_space_when_a_token_is_set(smoke_run, hub_server, monkeypatch):
    _, _, root = smoke_run
    monkeypatch.setenv("HF_TOKEN", hub_server.token)
    result = run_quickstart(
        root / "pushed",
        preset="smoke",
        cache_dir=root / "cache",
        push_to_hub="tester/qs-student",
        echo=lambda line: None,
    )
    assert set(result.pushed) == {"student", "space"}
    files = hub_server.files("tester/qs-student")
    assert {"model.safetensors", "README.md", "distillation_provenance.json"} <= set(files)
    assert "app.py" in hub_server.files("tester/qs-student-demo", repo_type="space")
    assert hub_server.token not in Path(root / "pushed" / "quickstart_report.json").read_text()


def test_push_without_a_token_is_skipped_with_a_note(tmp_path, monkeypatch):
    from hf_distill.quickstart import stages

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(stages, "resolve_token", lambda token=None: None)
    pushed, notes = stages.push(None, None, "tester/x", private=None, output_dir=tmp_path)
    assert pushed == {} and "no Hugging Face token" in notes[0]


# -- a base install: no extras, packages checked first, a failing last stage, quiet stdout, the HF cache ------------


def _hide_gradio(monkeypatch):
    """As on a base install (`pip install .`): `import gradio` fails and its distribution is unknown."""
    from importlib import metadata

    from hf_distill.publish.space import requirements

    real_version = metadata.version

    def version(package):
        if package == "gradio":
            raise metadata.PackageNotFoundError(package)
        return real_version(package)

    monkeypatch.setitem(sys.modules, "gradio", None)
    monkeypatch.setattr(requirements.metadata, "version", version)
    _find_spec_misses(monkeypatch, "gradio")


def _find_spec_misses(monkeypatch, missing: str):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == missing else real_find_spec(name, *a)
    )


@pytest.mark.slow
def test_quickstart_completes_and_writes_the_space_without_gradio(smoke_run, tmp_path, monkeypatch):
    _, _, root = smoke_run
    _hide_gradio(monkeypatch)
    result = run_quickstart(tmp_path / "out", preset="smoke", cache_dir=root / "cache", echo=lambda line: None)
    space = tmp_path / "out" / "space"
    assert result.space_dir == space and (space / "app.py").is_file()
    assert SpaceCard.load(space / "README.md").data.sdk_version == GRADIO_SDK_VERSION
    assert f"gradio=={GRADIO_SDK_VERSION}" in (space / "requirements.txt").read_text().splitlines()
    assert any("needs Gradio to run here" in note for note in result.notes)


def test_the_space_pins_the_gradio_the_app_is_tested_with():
    pytest.importorskip("gradio")  # the app tests (tests/test_space_app.py) run it under the installed Gradio
    assert metadata.version("gradio") == GRADIO_SDK_VERSION


def test_a_missing_package_is_refused_before_stage_1(tmp_path, monkeypatch):
    _find_spec_misses(monkeypatch, "yaml")
    lines = []
    with pytest.raises(QuickstartError) as error:
        run_quickstart(tmp_path / "out", preset="smoke", cache_dir=tmp_path / "cache", echo=lines.append)
    assert "needs the package `yaml`, which is not installed: run `python -m pip install pyyaml`" in str(error.value)
    assert lines == [] and not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_failing_last_stage_still_prints_and_saves_the_table(smoke_run, tmp_path, monkeypatch):
    from hf_distill.quickstart import stages

    _, _, root = smoke_run

    def card_and_space(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(stages, "card_and_space", card_and_space)
    lines = []
    with pytest.raises(QuickstartStageError, match=r"\[6/6\] Writing the model card.* failed: No space left") as error:
        run_quickstart(tmp_path / "out", preset="smoke", cache_dir=root / "cache", echo=lines.append)
    assert "quickstart_report.json" in str(error.value)
    saved = json.loads((tmp_path / "out" / "quickstart_report.json").read_text())
    report = BenchmarkReport.from_json(tmp_path / "out" / "student" / "benchmark" / "report.json")
    assert saved["rows"] == comparison_rows(report, TASK_ACCURACY)
    assert any("No space left on device" in note for note in saved["notes"])
    assert format_table(saved["rows"]) in "\n".join(lines)  # printed, not only saved


@pytest.mark.slow
def test_stdout_holds_the_stages_and_table_without_logged_dicts(smoke_run, tmp_path, capfd):
    from hf_distill.cli import main

    _, _, root = smoke_run
    capfd.readouterr()
    assert main(["quickstart", "--preset", "smoke", "--output_dir", str(tmp_path / "out"),
                 "--cache_dir", str(root / "cache")]) == 0
    out = capfd.readouterr().out.splitlines()
    assert [line for line in out if line.lstrip().startswith("{")] == []
    assert out[0] == "[1/6] Building the task dataset ..." and any(line.startswith("model ") for line in out)
    versions = next(line for line in out if line.startswith("Versions: "))
    assert f"torch {metadata.version('torch')}" in versions and f"trl {metadata.version('trl')}" in versions
    saved = json.loads((tmp_path / "out" / "quickstart_report.json").read_text())
    assert saved["versions"]["transformers"] == metadata.version("transformers")


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"HF_HOME": "{tmp}/hf"}, "{tmp}/hf/hf_distill"),
        ({"XDG_CACHE_HOME": "{tmp}/xdg"}, "{tmp}/xdg/huggingface/hf_distill"),
        ({"HF_HOME": "{tmp}/hf", "HF_DISTILL_CACHE": "{tmp}/own"}, "{tmp}/own"),
        ({}, "{home}/.cache/huggingface/hf_distill"),
    ],
)
def test_teacher_cache_follows_the_hugging_face_cache_folder(tmp_path, monkeypatch, env, expected):
    from hf_distill.quickstart.training import cache_root

    for name in ("HF_HOME", "XDG_CACHE_HOME", "HF_DISTILL_CACHE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name, value in env.items():
        monkeypatch.setenv(name, value.format(tmp=tmp_path))
    assert cache_root() == Path(expected.format(tmp=tmp_path, home=tmp_path / "home"))
    assert cache_root(tmp_path / "given") == tmp_path / "given"


# -- the README's first command on a fresh machine -------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]
_NOT_SOURCE = shutil.ignore_patterns(".git", "build", "*.egg-info", "__pycache__", ".venv*", "hf-distill-quickstart")
_TABLE_ROW = re.compile(r"^(teacher|distilled student|SFT student)\s{2,}(.*)$")


def _table_and_versions(text: str) -> tuple[dict[str, list[str]], str | None]:
    """The comparison table's rows (latency column left out: it measures the machine) and the `Versions:` line."""
    rows = {}
    for line in text.splitlines():
        if match := _TABLE_ROW.match(line):
            cells = match.group(2).split()
            rows[match.group(1)] = cells[:4] + cells[5:]
    versions = next((line for line in text.splitlines() if line.startswith("Versions: ")), None)
    return rows, versions


def _run(command, **kwargs):
    done = subprocess.run(command, capture_output=True, text=True, **kwargs)
    assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.mark.slow
def test_readme_first_command_completes_on_a_base_install_in_a_fresh_venv(tmp_path):
    """`pip install torch==2.13.0 && pip install . && hf-distill quickstart` in a new venv (no system packages, no
    extras, so no Gradio) with an empty Hugging Face cache, as a newcomer runs it; docs/quickstart.md shows its
    table."""
    source, venv, work = tmp_path / "source", tmp_path / "venv", tmp_path / "work"
    shutil.copytree(REPO, source, ignore=_NOT_SOURCE)  # pip builds in the source folder: never in the checkout
    work.mkdir()
    env = {name: value for name, value in os.environ.items() if name not in ("PYTHONPATH", "HF_DISTILL_CACHE")}
    env |= {"HF_HOME": str(tmp_path / "hf_home"), "HF_HUB_OFFLINE": "1", "VIRTUAL_ENV": str(venv),
            "PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"}
    _run([sys.executable, "-m", "venv", str(venv)], timeout=300)
    python = str(venv / "bin" / "python")
    _run([python, "-m", "pip", "install", "-q", "torch==2.13.0"], env=env, timeout=1200)
    _run([python, "-m", "pip", "install", "-q", "."], cwd=source, env=env, timeout=1200)
    _run([python, "-c", "import importlib.util, sys; sys.exit(importlib.util.find_spec('gradio') is not None)"],
         env=env, timeout=120)  # a base install has no Gradio

    stdout = _run(["hf-distill", "quickstart"], cwd=work, env=env, timeout=1800).stdout
    lines = stdout.splitlines()
    assert [line for line in lines if line.lstrip().startswith("{")] == []  # no logged dicts between the stages
    assert "[6/6] Writing the model card, plots and the Space: done" in stdout
    out = work / "hf-distill-quickstart"
    for name in ("student/model.safetensors", "student/README.md", "student/benchmark/report.json",
                 "sft-student/model.safetensors", "space/app.py", "space/requirements.txt", "quickstart_report.json"):
        assert (out / name).is_file(), name
    assert SpaceCard.load(out / "space" / "README.md").data.sdk_version == GRADIO_SDK_VERSION
    teachers = list((tmp_path / "hf_home" / "hf_distill" / "quickstart").glob("teacher-*/model.safetensors"))
    assert len(teachers) == 1  # the teacher cache follows HF_HOME

    # docs/quickstart.md shows this run's table; its numbers are deterministic for given library versions.
    documented, documented_versions = _table_and_versions((REPO / "docs" / "quickstart.md").read_text())
    measured, versions = _table_and_versions(stdout)
    assert set(measured) == set(documented) == {"teacher", "distilled student", "SFT student"}
    if versions != documented_versions:
        pytest.skip(f"docs/quickstart.md's table is from {documented_versions!r}; this run has {versions!r}")
    assert measured == documented
