"""Pushing a student to a local Hub-API server through the real `huggingface_hub` client: one commit, LFS weights,
identical files on the way back, licence pre-flight before any request, and the token kept out of every file."""

import hashlib
import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from huggingface_hub import HfApi, ModelCard, hf_hub_download, snapshot_download
from huggingface_hub.errors import HfHubHTTPError
from transformers import AutoModelForCausalLM

from hf_distill import DistillationConfig, DistillationTrainer
from hf_distill.hub import HubAuthError, PushError, push_student, validate_repo_id
from hf_distill.publish.licenses import LicenseConflictError
from hf_distill.publish.provenance import PROVENANCE_FILE, Provenance, ProvenanceError, dataset_record
from tests import tiny

LLAMA_LICENSE_TEXT = "LLAMA 3.1 COMMUNITY LICENSE AGREEMENT\n(full text of the teacher's licence)\n"


def _args(folder, **kwargs):
    return DistillationConfig(output_dir=str(folder), report_to="none", save_strategy="no", max_steps=1,
                              per_device_train_batch_size=4, max_length=64, **kwargs)


def _sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _state_dicts_equal(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture(scope="module")
def student_folder(tmp_path_factory, model_factory, tokenizer):
    """A saved full student whose local teacher has no card (so its licence is unknown)."""
    root = tmp_path_factory.mktemp("student")
    teacher = model_factory.save(root / "teacher", "llama", hidden=48, seed=2)
    trainer = DistillationTrainer(model=model_factory("llama", seed=1), teacher_model=teacher,
                                  args=_args(root / "out"), train_dataset=tiny.prompt_completion_dataset(8),
                                  processing_class=tokenizer)
    trainer.save_model()
    return root / "out"


@pytest.fixture
def folder(student_folder, tmp_path):
    return Path(shutil.copytree(student_folder, tmp_path / "student"))


def test_push_round_trip_from_hub_teacher(hub_server, model_factory, tokenizer, tmp_path, caplog):
    # The teacher lives on the (local) Hub with a Llama 3.1 card and licence file: provenance pins its commit.
    teacher_dir = Path(model_factory.save(tmp_path / "teacher", "llama", hidden=48, seed=2))
    files = {p.name: p.read_bytes() for p in teacher_dir.iterdir()}
    files |= {"README.md": "---\nlicense: llama3.1\n---\n# tiny teacher\n", "LICENSE": LLAMA_LICENSE_TEXT}
    teacher_commit = hub_server.seed_repo("meta-llama/Llama-3.1-tiny", files)
    args = _args(tmp_path / "out", hub_token=hub_server.token)
    trainer = DistillationTrainer(model=model_factory("llama", seed=1), teacher_model="meta-llama/Llama-3.1-tiny",
                                  args=args, train_dataset=tiny.prompt_completion_dataset(8),
                                  processing_class=tokenizer)
    trainer.train()
    hub_server.state.requests.clear()
    with caplog.at_level(logging.DEBUG):
        result = trainer.push_to_hub("tester/Llama-tiny-distilled", dataset_licenses="cc-by-4.0")

    # Licence: Llama 3.1 outputs -> "Built with Llama", licence copy, NOTICE; the name starts with "Llama" (§1.b.i).
    assert result.verdict.status == "warn" and result.verdict.student_license == "llama3.1"
    assert not any("must start with" in r.text for r in result.verdict.reasons)
    # One commit on top of the repo's initial one, holding every file; the weights went through git-LFS.
    commits = hub_server.commits("tester/Llama-tiny-distilled")
    assert len(commits) == 2 and commits[0].oid == result.commit_oid
    stored = hub_server.files("tester/Llama-tiny-distilled")
    assert set(result.files) <= set(stored) and stored["model.safetensors"].lfs
    weights_sha = _sha256(tmp_path / "out" / "model.safetensors")
    assert hub_server.calls("POST", r"^/tester/Llama-tiny-distilled\.git/info/lfs/objects/batch$")
    assert hub_server.calls("PUT", f"^/lfs-upload/{weights_sha}$")
    assert hub_server.calls("POST", f"^/lfs-verify/{weights_sha}$")
    assert not {"training_args.bin", "optimizer.pt"} & set(stored)

    # Download: identical weights, card and metadata; the model loads with from_pretrained.
    local = Path(snapshot_download("tester/Llama-tiny-distilled"))
    assert _sha256(local / "model.safetensors") == weights_sha
    assert (local / "README.md").read_text() == str(result.card)
    card = ModelCard.load(local / "README.md")
    assert card.data.to_dict() == result.card.data.to_dict()
    assert card.data.teacher_model == {"id": "meta-llama/Llama-3.1-tiny", "revision": teacher_commit}
    assert card.data.license == "llama3.1" and "**Built with Llama**" in card.text
    assert _state_dicts_equal(AutoModelForCausalLM.from_pretrained("tester/Llama-tiny-distilled"), trainer.model)
    provenance = json.loads((local / PROVENANCE_FILE).read_text())
    assert provenance["teacher"]["revision"] == teacher_commit and provenance["teacher"]["license"] == "llama3.1"
    assert provenance["weight_files"]["model.safetensors"] == weights_sha
    assert (local / "LICENSE").read_text().startswith(LLAMA_LICENSE_TEXT.rstrip())
    assert "Llama 3.1 is licensed under the Llama 3.1 Community License" in (local / "NOTICE").read_text()

    # The token is in no file, here or on the Hub, and in no log line.
    token = hub_server.token.encode()
    for path in [*local.rglob("*"), *(tmp_path / "out").rglob("*")]:
        assert not path.is_file() or token not in path.read_bytes(), path
    assert hub_server.token not in caplog.text


def test_licence_conflict_uploads_nothing(hub_server, folder):
    with pytest.raises(LicenseConflictError, match=r"(?s)Gemma Terms of Use.*Nothing was uploaded"):
        push_student(folder, "tester/gemma-student", token=hub_server.token, teacher_license="gemma",
                     student_license="apache-2.0")
    assert hub_server.requests == []  # not even a create: the server never heard of it
    result = push_student(folder, "tester/gemma-student", token=hub_server.token, teacher_license="gemma",
                          student_license="apache-2.0", allow_license_conflict=True)
    assert result.verdict.conflict_overridden
    readme = hf_hub_download("tester/gemma-student", "README.md")
    assert "Licence conflict overridden" in Path(readme).read_text()


def test_non_commercial_hub_dataset_makes_the_student_non_commercial(hub_server, folder):
    data_commit = hub_server.seed_repo("org/nc-data", {"README.md": "---\nlicense: cc-by-nc-4.0\n---\n"},
                                       repo_type="dataset")
    provenance = Provenance.load(folder)
    # The dataset record reads the licence at the revision the Hub API reports.
    provenance.datasets = [dataset_record(Dataset.from_dict({"text": ["a"]}), "train", repo_id="org/nc-data")]
    assert (provenance.datasets[0].revision, provenance.datasets[0].license_source) == (data_commit, "hub-api")
    result = push_student(folder, "tester/nc-student", token=hub_server.token, provenance=provenance,
                          teacher_license="apache-2.0")
    card = ModelCard.load(hf_hub_download("tester/nc-student", "README.md"))
    assert card.data.license == "cc-by-nc-4.0" and card.data.datasets == ["org/nc-data"]
    assert "**Non-commercial use only.**" in card.text and result.verdict.duties.non_commercial


def test_unknown_licence_warns_and_token_comes_from_env(hub_server, folder, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", hub_server.token)
    result = push_student(folder, "tester/unknown-teacher")
    assert result.verdict.status == "warn" and result.verdict.student_license == "unknown"
    assert any(r.source == "teacher" and "cannot be judged" in r.text for r in result.verdict.reasons)
    assert HfApi().model_info("tester/unknown-teacher").card_data.license == "unknown"


def test_adapter_and_merged_pushes_load_back(hub_server, model_factory, tokenizer, tmp_path):
    from peft import AutoPeftModelForCausalLM, LoraConfig

    base_dir = Path(model_factory.save(tmp_path / "base", "llama", seed=1))
    hub_server.seed_repo("tester/tiny-base", {p.name: p.read_bytes() for p in base_dir.iterdir()}
                         | {"README.md": "---\nlicense: apache-2.0\n---\n"})
    trainer = DistillationTrainer(model="tester/tiny-base", teacher_model=model_factory("llama", seed=2),
                                  args=_args(tmp_path / "out"), train_dataset=tiny.prompt_completion_dataset(8),
                                  processing_class=tokenizer, peft_config=LoraConfig(r=4, target_modules="all-linear"))
    trainer.train()
    inputs = tokenizer(["the cat sat on the mat"], return_tensors="pt")
    trainer.model.eval()
    with torch.no_grad():
        expected = trainer.model(**inputs).logits

    adapter = trainer.push_to_hub("tester/tiny-lora", token=hub_server.token, teacher_license="apache-2.0",
                                  dataset_licenses="cc0-1.0")
    assert adapter.mode == "adapter" and "adapter_model.safetensors" in adapter.files
    assert "model.safetensors" not in adapter.files
    data = adapter.card.data
    assert (data.library_name, data.base_model, data.base_model_relation) == ("peft", "tester/tiny-base", "adapter")
    loaded = AutoPeftModelForCausalLM.from_pretrained("tester/tiny-lora").eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs).logits, expected)

    merged = trainer.push_to_hub("tester/tiny-merged", mode="merged", token=hub_server.token)
    assert merged.card.data.base_model_relation == "finetune" and merged.card.data.library_name == "transformers"
    local = Path(snapshot_download("tester/tiny-merged"))
    assert json.loads((local / PROVENANCE_FILE).read_text())["weight_files"] == {
        "model.safetensors": _sha256(local / "model.safetensors")
    }
    with torch.no_grad():
        torch.testing.assert_close(AutoModelForCausalLM.from_pretrained(local).eval()(**inputs).logits, expected)


def test_branch_push_and_unchanged_weights_are_not_reuploaded(hub_server, folder):
    kwargs = dict(token=hub_server.token, teacher_license="mit", dataset_licenses="mit")
    dev = push_student(folder, "tester/branchy", revision="dev", **kwargs)
    assert dev.revision == "dev" and len(hub_server.commits("tester/branchy", branch="dev")) == 2
    assert len(hub_server.commits("tester/branchy")) == 1  # main untouched
    first = push_student(folder, "tester/branchy", **kwargs)
    uploads = len(hub_server.calls("PUT", "^/lfs-upload/"))
    again = push_student(folder, "tester/branchy", commit_message="same files", **kwargs)  # repo exists: 409 is ok
    # The Hub already holds these files: no upload, and no empty commit.
    assert len(hub_server.calls("PUT", "^/lfs-upload/")) == uploads
    assert again.commit_oid == first.commit_oid and len(hub_server.commits("tester/branchy")) == 2
    changed = push_student(folder, "tester/branchy", commit_message="new licence", **{**kwargs,
                                                                                     "teacher_license": "apache-2.0"})
    assert hub_server.commits("tester/branchy")[0].message == "new licence" and changed.commit_oid != first.commit_oid
    assert len(hub_server.calls("PUT", "^/lfs-upload/")) == uploads  # only the card and provenance changed


def test_multipart_lfs_upload(hub_server, folder):
    hub_server.multipart_chunk_size = 64 * 1024  # the tiny model's ~175 kB weights go up in 3 parts
    push_student(folder, "tester/multipart", token=hub_server.token, teacher_license="mit", dataset_licenses="mit")
    assert len(hub_server.calls("PUT", "^/lfs-part/")) >= 3 and hub_server.calls("POST", "^/lfs-complete/")
    path = hf_hub_download("tester/multipart", "model.safetensors")
    assert _sha256(path) == _sha256(folder / "model.safetensors")


def test_benchmark_report_is_pushed_with_plot_and_model_index(hub_server, folder, tokenizer, model_factory):
    from hf_distill.benchmark import BenchmarkReport, benchmark

    report = benchmark(str(folder), model_factory("llama", hidden=48, seed=2), tiny.prompt_completion_dataset(4),
                       tokenizer=tokenizer, teacher_tokenizer=tokenizer, max_new_tokens=4, batch_sizes=(1,),
                       num_latency_runs=1, num_warmup_runs=0, task_metrics=("exact_match",),
                       dataset_name="org/held-out")
    result = push_student(folder, "tester/benchmarked", token=hub_server.token, report=report,
                          teacher_license="apache-2.0", dataset_licenses="cc0-1.0")
    assert {"benchmark/report.json", "benchmark/student_vs_teacher.png"} <= set(result.files)
    # The Hub's .eval_results/ file for the Hub dataset travels in the same single commit.
    assert ".eval_results/org_held-out.yaml" in result.files and len(hub_server.commits("tester/benchmarked")) == 2
    local = Path(snapshot_download("tester/benchmarked"))
    assert "org/held-out" in (local / ".eval_results" / "org_held-out.yaml").read_text()
    assert BenchmarkReport.from_json(local / "benchmark" / "report.json").to_dict() == report.to_dict()
    card = ModelCard.load(local / "README.md")
    assert card.data.eval_results and "![Student versus teacher](benchmark/student_vs_teacher.png)" in card.text
    # A later push from the folder alone finds the report saved there.
    shutil.copytree(local / "benchmark", folder / "benchmark")
    again = push_student(folder, "tester/benchmarked-2", token=hub_server.token, teacher_license="apache-2.0",
                         dataset_licenses="cc0-1.0")
    assert again.card.data.eval_results


@pytest.mark.parametrize(
    "repo_id,kwargs,error,message",
    [
        ("no-namespace", {}, PushError, "`repo_id` is 'no-namespace': it must be `namespace/name`"),
        ("a/b/c", {}, PushError, "it must be `namespace/name`"),
        ("me/bad name!", {}, PushError, "`repo_id` is 'me/bad name!'"),
        ("me/ok", {"mode": "quantized"}, PushError, "`mode` is 'quantized'; choose one of full, adapter, merged"),
        ("me/ok", {"mode": "adapter"}, PushError, "mode='adapter' needs a PEFT adapter"),
        ("me/ok", {"token": None}, HubAuthError, "No Hugging Face token: pass `token=`, set the HF_TOKEN"),
    ],
)
def test_bad_push_inputs_fail_before_any_request(hub_server, folder, repo_id, kwargs, error, message):
    kwargs = {"token": hub_server.token, "teacher_license": "mit", "dataset_licenses": "mit", **kwargs}
    with pytest.raises(error) as raised:
        push_student(folder, repo_id, **kwargs)
    assert message in str(raised.value)
    assert hub_server.requests == []


def test_folder_problems_name_the_fix(hub_server, folder, tmp_path):
    with pytest.raises(PushError, match="does not exist; save the student there first"):
        push_student(tmp_path / "missing", "me/x", token=hub_server.token)
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(folder)}))
    (tmp_path / "adapter" / "adapter_model.safetensors").write_bytes(b"")
    with pytest.raises(PushError, match="holds a PEFT adapter: push it with mode='adapter', or mode='merged'"):
        push_student(tmp_path / "adapter", "me/x", mode="full", token=hub_server.token)
    shutil.copy(folder / PROVENANCE_FILE, tmp_path / "adapter" / PROVENANCE_FILE)
    with pytest.raises(PushError, match="is a local path: nobody else could load the adapter"):
        push_student(tmp_path / "adapter", "me/x", token=hub_server.token)
    (folder / PROVENANCE_FILE).unlink()
    with pytest.raises(ProvenanceError, match="Save the student with `DistillationTrainer.save_model"):
        push_student(folder, "me/x", token=hub_server.token)
    assert hub_server.requests == []


def test_validate_repo_id():
    assert validate_repo_id(" me/model ") == "me/model"
    with pytest.raises(PushError, match="`hub_model_id` is None"):
        validate_repo_id(None, argument="hub_model_id")


def test_server_speaks_datasets_and_spaces(hub_server):
    """What the Spaces demo and dataset pushes rely on: repo types, sdk checks, README validation, runtime."""
    api = HfApi(token=hub_server.token)
    api.create_repo("tester/data", repo_type="dataset")
    api.upload_file(path_or_fileobj=b"a,b\n1,2\n", path_in_repo="data.csv", repo_id="tester/data", repo_type="dataset")
    assert Path(hf_hub_download("tester/data", "data.csv", repo_type="dataset")).read_bytes() == b"a,b\n1,2\n"
    assert [s.rfilename for s in api.dataset_info("tester/data").siblings] == [".gitattributes", "data.csv"]

    url = api.create_repo("tester/demo", repo_type="space", space_sdk="gradio", space_hardware="cpu-upgrade")
    assert url == f"{hub_server.endpoint}/spaces/tester/demo"
    assert api.create_repo("tester/demo", repo_type="space", space_sdk="gradio", exist_ok=True) == url  # 409
    bad = b"---\nsdk: gradio\ncolorFrom: mauve\n---\n"
    with pytest.raises(ValueError, match="colorFrom"):  # the client's README check, answered by the server
        api.upload_file(path_or_fileobj=bad, path_in_repo="README.md", repo_id="tester/demo", repo_type="space")
    good = b"---\ntitle: Demo\nsdk: gradio\ncolorFrom: blue\ncolorTo: pink\n---\n"
    api.upload_file(path_or_fileobj=good, path_in_repo="README.md", repo_id="tester/demo", repo_type="space")
    info = api.space_info("tester/demo")
    assert info.sdk == "gradio" and info.card_data.title == "Demo" and info.runtime.hardware == "cpu-upgrade"
    with pytest.raises(HfHubHTTPError, match="401"):
        HfApi(token="hf_wrong").create_repo("tester/other")
