"""The generated Space: folder, README metadata, requirements, argument checks, and the app's API via gradio_client."""

from __future__ import annotations

import json
import re
import sys
import types
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

import pytest
import torch
from huggingface_hub import SpaceCard
from transformers import AutoModelForCausalLM, AutoTokenizer

from hf_distill.publish.space import HARDWARE, SpaceConfigError, create_space
from hf_distill.publish.space import app_template as template
from tests.space_helpers import free_port, import_app, save_models

gradio_client = pytest.importorskip("gradio_client")

PROMPT = "what is two add three"
MAX_NEW_TOKENS = 8


@pytest.fixture(scope="module")
def models(tmp_path_factory, model_factory):
    return save_models(tmp_path_factory.mktemp("space_models"), model_factory)


@pytest.fixture(scope="module")
def space(models, tmp_path_factory):
    student, teacher = models
    return create_space(
        student, teacher=teacher, output_dir=tmp_path_factory.mktemp("space") / "demo", max_new_tokens=MAX_NEW_TOKENS
    )


@contextmanager
def launched(app, settings):
    """Builds and launches the app on a free loopback port; always closes the server."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
        demo = app.build_demo(settings)
        port = free_port()
        # No `demo.queue()` here: it would replace the queue settings `build_demo` chose with Gradio's defaults.
        demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
        try:
            yield f"http://127.0.0.1:{port}/"
        finally:
            demo.close()


@pytest.fixture(scope="module")
def app(space):
    return import_app(space.folder)


@pytest.fixture(scope="module")
def client(app, space):
    with launched(app, app.AppSettings.load(space.folder, environ={})) as url:
        yield gradio_client.Client(url, verbose=False)


def greedy_answer(folder: str) -> str:
    """Reference: the same greedy generation done directly with transformers."""
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": PROMPT}], tokenize=False, add_generation_prompt=True
    )
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False).input_ids
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=MAX_NEW_TOKENS, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)


# --- the folder -------------------------------------------------------------------------------------------------


def test_folder_holds_the_app_and_its_files(space):
    assert space.files == ["app.py", "requirements.txt", "README.md", "space_config.json", "benchmark.md"]
    assert all((space.folder / name).is_file() for name in space.files)
    assert (space.folder / "app.py").read_text() == Path(template.__file__).read_text()
    assert "hf_distill" not in re.findall(r"^(?:from|import) (\S+)", (space.folder / "app.py").read_text(), re.M)
    assert not space.pushed and space.space_url is None
    config = json.loads((space.folder / "space_config.json").read_text())
    assert config["max_new_tokens"] == MAX_NEW_TOKENS and Path(config["student"]).is_absolute()


def test_requirements_pin_the_installed_versions(space):
    lines = (space.folder / "requirements.txt").read_text().splitlines()
    pins = dict(line.split("==") for line in lines if "==" in line)
    for package in ("torch", "transformers", "accelerate", "huggingface_hub", "gradio"):
        assert pins[package] == metadata.version(package).split("+")[0]
    assert "peft" not in pins  # neither model is an adapter
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in lines  # cpu-basic: the CPU-only wheel


def test_readme_metadata(space):
    card = SpaceCard.load(space.folder / "README.md")
    data = card.data.to_dict()
    assert data["sdk"] == "gradio" and data["app_file"] == "app.py"
    assert data["sdk_version"] == metadata.version("gradio")
    assert data["title"] == "tiny-student vs tiny-teacher"
    assert data["emoji"] and data["colorFrom"] and data["colorTo"]
    assert data["license"] == "mit"  # from the student's card
    assert data["suggested_hardware"] == "cpu-basic"
    assert 0 < len(data["short_description"]) <= 60
    assert {"hf-distill", "distillation"} <= set(data["tags"])
    assert "models" not in data  # local folders are not Hub ids
    assert "| perplexity | 41.5 | 38.2 |" in card.text


def test_hub_ids_become_models_and_an_unknown_licence_warns(tmp_path):
    result = create_space(
        "me/tiny-student", teacher="org/big-teacher", output_dir=tmp_path, hardware="zero-a10g", space_id="me/demo"
    )
    data = SpaceCard.load(tmp_path / "README.md").data.to_dict()
    assert data["models"] == ["me/tiny-student", "org/big-teacher"]
    assert data["preload_from_hub"] == ["me/tiny-student", "org/big-teacher"]
    assert data["suggested_hardware"] == "zero-a10g" and "license" not in data
    assert any("licence of 'me/tiny-student' is unknown" in warning for warning in result.warnings)
    requirements = (tmp_path / "requirements.txt").read_text()
    assert "download.pytorch.org/whl/cpu" not in requirements  # GPU hardware takes the default CUDA wheel
    assert "peft==" in requirements  # offline, the Hub repo may be an adapter: peft goes in to be safe
    assert json.loads((tmp_path / "space_config.json").read_text())["teacher"] == "org/big-teacher"
    assert not (tmp_path / "benchmark.md").exists()


def test_explicit_licence_and_benchmark_object(models, tmp_path):
    class Report:  # duck-typed like hf_distill.benchmark.BenchmarkReport
        def to_markdown(self):
            return "| metric | value |\n|---|---|\n| agreement | 0.75 |"

    create_space(models[0], output_dir=tmp_path, license="apache-2.0", benchmark=Report())
    assert SpaceCard.load(tmp_path / "README.md").data.license == "apache-2.0"
    assert "| agreement | 0.75 |" in (tmp_path / "benchmark.md").read_text()
    assert json.loads((tmp_path / "space_config.json").read_text())["teacher"] is None


def test_benchmark_from_a_markdown_file_and_stale_table_removed(models, tmp_path):
    report = tmp_path / "report.md"
    report.write_text("# Report\n\n## Evaluation\n\n| a | b |\n|---|---|\n| 1 | 2 |\n")
    out = tmp_path / "space"
    create_space(models[0], output_dir=out, benchmark=report)
    assert (out / "benchmark.md").read_text() == "| a | b |\n|---|---|\n| 1 | 2 |\n"
    (Path(models[0]) / "README.md").rename(tmp_path / "card.md")  # a student without a card: no table
    try:
        result = create_space(models[0], output_dir=out)
    finally:
        (tmp_path / "card.md").rename(Path(models[0]) / "README.md")
    assert not (out / "benchmark.md").exists() and "benchmark.md" not in result.files


def test_adapter_student_pins_peft_and_loads_in_the_app(models, tmp_path):
    from peft import LoraConfig, get_peft_model

    base = AutoModelForCausalLM.from_pretrained(models[0])
    adapter = get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    adapter.save_pretrained(tmp_path / "adapter")
    create_space(tmp_path / "adapter", output_dir=tmp_path / "space", license="mit")
    assert f"peft=={metadata.version('peft')}" in (tmp_path / "space" / "requirements.txt").read_text()
    loaded = template.LoadedModel.load(str(tmp_path / "adapter"), device="cpu", dtype=torch.float32)
    assert loaded.tokenizer is not None and hasattr(loaded.model, "peft_config")


# --- bad arguments: one SpaceConfigError, raised before anything is written ------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hardware": "gpu-huge"}, "`hardware`='gpu-huge' is not a Space hardware flavour"),
        ({"push": True}, "`push=True` needs `space_id`"),
        ({"space_id": "demo"}, "`space_id` is 'demo': it must be `namespace/name`"),
        ({"space_id": "me/a/b"}, "`space_id` is 'me/a/b': it must be `namespace/name`"),
        ({"space_id": "me/bad..name"}, "`space_id` is 'me/bad..name': Cannot have -- or .. in repo_id"),
        ({"space_id": "me/demo", "push": True}, "is a local folder, which a Space on the Hub cannot load"),
        ({"private": "yes"}, "`private`='yes' must be True, False or None"),
        ({"max_new_tokens": 0}, "`max_new_tokens`=0 must be an integer from 1 to 1024"),
        ({"benchmark": "missing.json"}, "`benchmark`='missing.json' is not a file"),
        ({"teacher": "not a model!"}, "`teacher`='not a model!' is neither a local folder nor a valid Hub id"),
        (
            {"teacher": "gpt2"},
            "`teacher`='gpt2' is neither a local folder nor a valid Hub id: `teacher` is 'gpt2': it",
        ),
    ],
)
def test_bad_arguments(models, tmp_path, kwargs, message):
    with pytest.raises(SpaceConfigError, match=re.escape(message)):
        create_space(models[0], output_dir=tmp_path / "space", **kwargs)
    assert not (tmp_path / "space").exists()


def test_every_problem_is_listed_at_once(models, tmp_path):
    with pytest.raises(SpaceConfigError) as error:
        create_space(models[0], output_dir=tmp_path, hardware="tpu", space_id="x")
    assert len(error.value.problems) == 2 and "zero-a10g" in str(error.value)
    assert set(HARDWARE) >= {"cpu-basic", "zero-a10g", "t4-small"}


def test_folder_arguments_are_checked(models, tmp_path):
    with pytest.raises(SpaceConfigError, match="is a local path but not a model folder"):
        create_space(tmp_path, output_dir=tmp_path / "space")
    with pytest.raises(SpaceConfigError, match="`output_dir` is the student's own folder"):
        create_space(models[0], output_dir=models[0])
    (tmp_path / "file").write_text("x")
    with pytest.raises(SpaceConfigError, match="is a file: give a folder"):
        create_space(models[0], output_dir=tmp_path / "file")


# --- the app's settings and helpers ---------------------------------------------------------------------------


def test_settings_from_config_and_environment(space, app):
    settings = app.AppSettings.load(space.folder, environ={})
    assert settings.teacher.endswith("tiny-teacher") and settings.resolved_max_new_tokens() == MAX_NEW_TOKENS
    assert settings.resolved_device() == "cpu" and settings.resolved_dtype() == torch.float32
    assert "| perplexity | 41.5 | 38.2 |" in settings.benchmark_markdown
    environ = {"HF_DISTILL_STUDENT": "me/other", "HF_DISTILL_TEACHER": "", "HF_DISTILL_MAX_NEW_TOKENS": "3"}
    settings = app.AppSettings.load(space.folder, environ=environ)
    assert (settings.student, settings.teacher, settings.max_new_tokens) == ("me/other", None, 3)
    with pytest.raises(ValueError, match="HF_DISTILL_DTYPE='half' is not one of"):
        app.AppSettings.load(space.folder, environ={"HF_DISTILL_DTYPE": "half"}).resolved_dtype()
    with pytest.raises(ValueError, match="No student model: set the HF_DISTILL_STUDENT variable"):
        app.AppSettings.load(space.folder / "nowhere", environ={})


def test_extract_benchmark_markdown():
    card = (
        "---\nlicense: mit\n---\n# M\n## Results\nno table\n"
        "## Benchmark\n| a |\n|---|\n| 1 |\n![plot](benchmark/plot.png)\n### sub\n| b |\n## Next\n| c |"
    )
    assert template.extract_benchmark_markdown(card) == "| a |\n|---|\n| 1 |\n### sub\n| b |"
    assert template.extract_benchmark_markdown("# M\n## Usage\n| x |\n") is None
    online = "## Evaluation\n| a |\n![plot](https://example.org/p.png)"  # an absolute image stays
    assert template.extract_benchmark_markdown(online) == "| a |\n![plot](https://example.org/p.png)"


def test_zero_gpu_decorates_the_generation(space, monkeypatch):
    """With `spaces` importable the generation runs under `@spaces.GPU`; on ZeroGPU the models go to CUDA."""
    calls = []
    fake = types.ModuleType("spaces")
    fake.GPU = lambda **options: lambda function: calls.append((function.__name__, options)) or function
    monkeypatch.setitem(sys.modules, "spaces", fake)
    app = import_app(space.folder, name="zero_gpu_space_app")
    assert calls == [("generate_for", {"duration": 120})]
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    settings = app.AppSettings(student="me/s")
    assert app.on_zero_gpu() and settings.resolved_device() == "cuda" and settings.resolved_dtype() == torch.bfloat16
    assert settings.resolved_max_new_tokens() == app.GPU_MAX_NEW_TOKENS


# --- the launched app, through gradio_client --------------------------------------------------------------------


def test_api_compares_student_and_teacher(client, models):
    student_answer, student_stats, teacher_answer, teacher_stats, raw = client.predict(
        PROMPT, MAX_NEW_TOKENS, api_name="/compare"
    )
    assert student_answer == greedy_answer(models[0]) and student_answer.strip()
    assert teacher_answer == greedy_answer(models[1]) and teacher_answer.strip()
    for role, stats, folder in (("student", student_stats, models[0]), ("teacher", teacher_stats, models[1])):
        values = raw[role]
        model = AutoModelForCausalLM.from_pretrained(folder)
        assert values["parameters"] == model.num_parameters()
        assert values["bytes"] == model.get_memory_footprint() and values["dtype"] == "float32"
        assert 0 < values["new_tokens"] <= MAX_NEW_TOKENS
        assert 0 < values["time_to_first_token_s"] <= values["total_s"]
        assert values["tokens_per_second"] == pytest.approx(values["new_tokens"] / values["total_s"])
        assert re.search(r"\| Time to first token \| \d+\.\d{3} s \|", stats)
        assert re.search(r"\| Tokens/s \| \d+\.\d \|", stats)
    assert raw["teacher"]["parameters"] > raw["student"]["parameters"]


def test_api_streams_student_then_teacher(client):
    job = client.submit(PROMPT, MAX_NEW_TOKENS, api_name="/compare")
    updates = [update for update in job]
    assert len(updates) >= 4  # at least two updates per model: answer pieces, then the final timings
    first = updates[0]
    assert first[0] and first[2] == ""  # the student answers first; the teacher waits its turn
    assert "…" in first[3]  # the teacher's timings are not measured yet
    assert updates[-1][2] and job.outputs()[-1] == updates[-1]


def test_api_rejects_an_empty_prompt(client):
    with pytest.raises(Exception, match="Type a prompt first"):
        client.predict("   ", MAX_NEW_TOKENS, api_name="/compare")


def test_student_only_app(app, models):
    with launched(app, app.AppSettings(student=models[0], max_new_tokens=MAX_NEW_TOKENS)) as url:
        outputs = gradio_client.Client(url, verbose=False).predict(PROMPT, MAX_NEW_TOKENS, api_name="/compare")
    answer, stats, raw = outputs
    assert answer == greedy_answer(models[0]) and set(raw) == {"student"}
    assert re.search(r"\| Total time \| \d+\.\d{3} s \|", stats)


def test_benchmark_report_json_beside_the_student(models, tmp_path):
    """A real `BenchmarkReport` saved as `benchmark.json` in the student's folder becomes the Space's table."""
    from hf_distill.benchmark import benchmark
    from tests import tiny

    report = benchmark(
        models[0],
        models[1],
        tiny.prompt_completion_dataset(4),
        max_new_tokens=2,
        batch_sizes=(1,),
        num_latency_runs=1,
        num_warmup_runs=0,
    )
    report.to_json(Path(models[0]) / "benchmark.json")
    try:
        create_space(models[0], teacher=models[1], output_dir=tmp_path)
    finally:
        (Path(models[0]) / "benchmark.json").unlink()
    table = (tmp_path / "benchmark.md").read_text()
    assert table == report.to_markdown().rstrip() + "\n" and "Perplexity" in table
    assert table in (tmp_path / "README.md").read_text()
