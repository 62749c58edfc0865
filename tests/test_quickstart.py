"""The quickstart: its generated dataset, tokenizer, scoring and table, and an end-to-end run of the `smoke` preset
(the same code path as `standard`, tiny sizes) checked through its output folder, the teacher cache and a push to
the local Hub server."""

import json
from pathlib import Path

import pytest
import torch
from huggingface_hub import DatasetCard, ModelCard

from hf_distill.benchmark import BenchmarkReport
from hf_distill.benchmark.quality import TASK_METRICS
from hf_distill.quickstart import PRESETS, QuickstartError, answer_is_valid, build_task_dataset, run_quickstart
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
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
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
        with pytest.raises(ValueError, match="another dataset"):
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
