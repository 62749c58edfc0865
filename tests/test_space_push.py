"""Pushing the generated Space to the local Hub-API server (tests/hub_server.py) through the real huggingface_hub."""

from __future__ import annotations

import pytest
from huggingface_hub import HfApi, SpaceCard

from hf_distill.hub import SpaceConfigError, SpaceCreationError, create_space
from tests import hub_server as local_hub

STUDENT = "tester/tiny-student"
TEACHER = "org/tiny-teacher"
SPACE = "tester/tiny-demo"
STUDENT_CARD = """---
license: apache-2.0
library_name: transformers
---
# tiny-student

## Evaluation

| Metric | student | teacher |
|---|---|---|
| Perplexity ↓ | 12.5 | 10.1 |

![Student versus teacher](benchmark/plot.png)

## Provenance

| source | id |
|---|---|
| teacher | org/tiny-teacher |
"""


@pytest.fixture
def hub(hub_server):
    hub_server.seed_repo(STUDENT, {"README.md": STUDENT_CARD, "config.json": "{}"})
    return hub_server


def push(hub, output_dir, **kwargs):
    kwargs = {"teacher": TEACHER, "space_id": SPACE, "push": True, "token": hub.token, **kwargs}
    return create_space(STUDENT, output_dir=output_dir, **kwargs)


def hub_files(hub):
    return hub.files(SPACE, repo_type="space")


def test_push_creates_a_gradio_space_in_one_commit(hub, tmp_path):
    (tmp_path / "notes.txt").write_text("not part of the Space")  # a stray file must not be uploaded
    result = push(hub, tmp_path, private=True, max_new_tokens=32)

    assert result.pushed and result.space_url == f"{hub.endpoint}/spaces/{SPACE}"
    assert result.commit_url == f"{hub.endpoint}/spaces/{SPACE}/commit/{result.commit_oid}"
    commits = hub.commits(SPACE, repo_type="space")
    assert len(commits) == 2 and commits[0].oid == result.commit_oid  # the initial commit, then ours
    files = hub_files(hub)
    assert set(files) == {".gitattributes", *result.files}
    assert set(result.files) == {"app.py", "requirements.txt", "README.md", "space_config.json", "benchmark.md"}
    for name in result.files:
        assert files[name].content == (tmp_path / name).read_bytes()
    repo = hub.state.repos[("space", SPACE)]
    assert repo.sdk == "gradio" and repo.private and repo.space_settings["hardware"] == "cpu-basic"


def test_pushed_readme_metadata(hub, tmp_path):
    push(hub, tmp_path)
    info = HfApi(token=hub.token).space_info(SPACE)
    assert info.sdk == "gradio"
    data = info.card_data.to_dict()
    assert data["models"] == [STUDENT, TEACHER] and data["preload_from_hub"] == [STUDENT, TEACHER]
    assert data["license"] == "apache-2.0"  # read from the student's card on the Hub
    assert data["app_file"] == "app.py" and data["suggested_hardware"] == "cpu-basic"
    assert data["colorFrom"] in local_hub.SPACE_COLORS and len(data["short_description"]) <= 60
    readme = SpaceCard(hub.files(SPACE, repo_type="space")["README.md"].content.decode())
    assert readme.data.sdk_version and "| Perplexity ↓ | 12.5 | 10.1 |" in readme.text
    benchmark = hub.files(SPACE, repo_type="space")["benchmark.md"].content.decode()
    assert "Perplexity" in benchmark and "plot.png" not in benchmark  # the card's relative plot is not in the Space


def test_push_again_adds_one_commit_to_the_existing_space(hub, tmp_path):
    first = push(hub, tmp_path)
    second = push(hub, tmp_path, title="Second version", hardware="zero-a10g")
    commits = hub.commits(SPACE, repo_type="space")
    assert len(commits) == 3 and [c.oid for c in commits[:2]] == [second.commit_oid, first.commit_oid]
    readme = SpaceCard(hub.files(SPACE, repo_type="space")["README.md"].content.decode())
    assert readme.data.title == "Second version" and readme.data.suggested_hardware == "zero-a10g"


def test_zero_gpu_hardware_is_requested_at_creation(hub, tmp_path):
    push(hub, tmp_path, hardware="zero-a10g")
    assert hub.state.repos[("space", SPACE)].space_settings["hardware"] == "zero-a10g"


def _answer_402(handler, query):
    handler._json_body()
    raise local_hub.HubHTTPError(402, "You need a paid plan to create this Space.")


@pytest.fixture
def payment_required(hub, monkeypatch):
    """The Hub's answer to a free account creating a Gradio Space on CPU hardware."""
    routes = [("POST", r"/api/repos/create", _answer_402), *local_hub.ROUTES]  # the first match wins
    monkeypatch.setattr(local_hub, "ROUTES", routes)
    return hub


def test_402_explains_the_paid_plan_and_offers_zero_gpu(payment_required, tmp_path):
    with pytest.raises(SpaceCreationError) as error:
        push(payment_required, tmp_path)
    message = str(error.value)
    assert "402 Payment Required" in message and "'tester/tiny-demo'" in message and "paid plan" in message
    assert 'hardware="zero-a10g"' in message and "--hardware zero-a10g" in message and "ZeroGPU" in message
    assert error.value.__cause__.response.status_code == 402
    assert not payment_required.calls("POST", r"/commit/")  # nothing uploaded
    assert (tmp_path / "app.py").is_file()  # the folder is written and can be pushed later


def test_402_on_zero_gpu_explains_the_hosting_limit(payment_required, tmp_path):
    with pytest.raises(SpaceCreationError, match="may host only a few ZeroGPU Spaces"):
        push(payment_required, tmp_path, hardware="zero-a10g")


def test_402_on_an_existing_space_still_uploads(payment_required, tmp_path):
    payment_required.seed_repo(SPACE, {"README.md": "---\nsdk: gradio\n---\n"}, repo_type="space")
    result = push(payment_required, tmp_path)
    assert result.pushed and hub_files(payment_required)["app.py"].content == (tmp_path / "app.py").read_bytes()


def test_push_without_a_token_fails_before_any_work(hub, tmp_path):
    with pytest.raises(SpaceConfigError, match=r"`push=True` needs a Hugging Face token: pass `token=`"):
        push(hub, tmp_path / "space", token=None)
    assert not (tmp_path / "space").exists()
    assert not hub.calls("POST", r"/api/repos/create")


def test_a_wrong_token_is_the_hubs_error(hub, tmp_path):
    with pytest.raises(Exception, match="401|Invalid credentials"):
        push(hub, tmp_path, token="hf_wrong")
    assert ("space", SPACE) not in hub.state.repos
