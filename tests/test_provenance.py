"""Provenance: source resolution (Hub cache, local folders, in-memory objects), dataset records, and the
`distillation_provenance.json` a trainer writes at save time."""

import hashlib
import json

import pytest
import torch
from datasets import Dataset
from huggingface_hub import constants

from hf_distill import DistillationConfig, DistillationTrainer
from hf_distill.fingerprints import folder_sha256
from hf_distill.publish.provenance import (
    PROVENANCE_FILE,
    Provenance,
    ProvenanceError,
    count_tokens,
    dataset_record,
    is_hub_id,
    model_record,
    non_default_config,
)
from tests import tiny

SECRET = "hf_this_token_must_never_be_written"


def _fake_hub_cache(root, repo_id, commits: dict[str, str], main: str, repo_type="model"):
    """The Hub cache layout: refs/main holds a commit id; snapshots/<commit>/README.md per revision."""
    folder = root / f"{repo_type}s--{repo_id.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(main)
    for commit, license_id in commits.items():
        snapshot = folder / "snapshots" / commit
        snapshot.mkdir(parents=True)
        (snapshot / "README.md").write_text(f"---\nlicense: {license_id}\n---\n# card\n")
        (snapshot / "LICENSE").write_text(f"{license_id} text\n")


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    root = tmp_path / "hub"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(root))
    return root


def test_hub_source_reads_commit_and_licence_at_that_revision(hub_cache):
    old, new = "a" * 40, "b" * 40
    # The licence changed between revisions (as Phi-2's did): each revision reports its own.
    _fake_hub_cache(hub_cache, "org/teacher", {old: "other", new: "mit"}, main=new)
    latest = model_record("teacher", "org/teacher")
    assert (latest.kind, latest.repo_id, latest.revision, latest.license) == ("hub", "org/teacher", new, "mit")
    assert latest.license_source == "card" and latest.license_files == ["LICENSE"]
    pinned = model_record("teacher", "org/teacher", revision=old)
    assert (pinned.revision, pinned.license) == (old, "other")


def test_uncached_hub_source_offline_keeps_licence_missing(hub_cache):
    record = model_record("teacher", "org/never-downloaded")
    assert (record.kind, record.revision, record.license, record.license_source) == ("hub", None, None, "missing")


def test_local_folder_source_hashes_config_and_weights(tmp_path, model_factory):
    folder = tmp_path / "teacher"
    model_factory.save(folder, "llama", seed=3)
    (folder / "README.md").write_text("---\nlicense: gemma\n---\n")
    record = model_record("teacher", str(folder))
    assert (record.kind, record.name, record.license, record.repo_id) == ("local", "teacher", "gemma", None)
    assert record.content_sha256 == folder_sha256(folder)
    assert str(tmp_path) not in json.dumps(record.to_dict())  # the local path stays on this machine
    before = record.content_sha256
    (folder / "README.md").write_text("---\nlicense: mit\n---\n")  # the card is not part of the content hash
    assert folder_sha256(folder) == before
    model_factory.save(folder, "llama", seed=4)
    assert folder_sha256(folder) != before


def test_in_memory_model_is_hashed_by_its_weights(model_factory):
    model = model_factory("llama", seed=0)
    record = model_record("teacher", model)
    assert record.kind == "in-memory" and record.details["num_parameters"] > 0
    assert record.content_sha256 == model_record("teacher", model_factory("llama", seed=0)).content_sha256
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    assert model_record("teacher", model).content_sha256 != record.content_sha256


@pytest.mark.parametrize(
    "value,expected",
    [("Qwen/Qwen2.5-0.5B", True), ("gpt2", True), ("./model", False), ("/abs/path", False), ("a/b/c", False),
     ("~/model", False), ("C:\\models\\x", False), ("", False)],
)
def test_is_hub_id(value, expected):
    assert is_hub_id(value) is expected


def test_count_tokens_sums_lengths_and_completion_mask():
    rows = {"input_ids": [[1, 2, 3], [4, 5], [6]], "completion_mask": [[0, 1, 1], [0, 1], [1]]}
    assert count_tokens(Dataset.from_dict(rows)) == (6, 4)
    assert count_tokens(Dataset.from_dict(rows).select([2, 0])) == (4, 3)  # indices mapping respected
    assert count_tokens(Dataset.from_dict({"text": ["a"]})) == (None, None)
    labelled = {"input_ids": [[1, 2, 3], [4, 5]], "labels": [[-100, 2, 3], [-100, -100]]}
    assert count_tokens(Dataset.from_dict(labelled)) == (5, 2)


def test_dataset_from_hub_cache_gets_id_revision_and_licence(tmp_path, hub_cache):
    commit = "c" * 40
    _fake_hub_cache(hub_cache, "org/data", {commit: "cc-by-nc-4.0"}, main=commit, repo_type="dataset")
    # datasets' own cache layout for a Hub dataset: {namespace}___{name}/{config}/{version}/{commit}/
    arrow_dir = tmp_path / "datasets" / "org___data" / "default" / "0.0.0" / commit
    Dataset.from_dict({"input_ids": [[1, 2], [3]]}).save_to_disk(arrow_dir)
    dataset = Dataset.from_file(str(next(arrow_dir.glob("*.arrow"))))
    record = dataset_record(dataset, "train")
    assert (record.repo_id, record.revision, record.license, record.split) == ("org/data", commit, "cc-by-nc-4.0",
                                                                               "train")
    assert (record.num_rows, record.num_tokens) == (2, 3)
    assert record.fingerprint == dataset._fingerprint


def test_non_default_config_never_records_tokens(tmp_path):
    args = DistillationConfig(output_dir=str(tmp_path), alpha=0.5, divergence="jsd", hub_token=SECRET,
                              report_to="none")
    config = non_default_config(args)
    assert config["alpha"] == 0.5 and config["divergence"] == "jsd"
    assert "hub_token" not in config and SECRET not in json.dumps(config)
    assert "beta" not in config  # defaults are left out


@pytest.fixture(scope="module")
def saved_student(tmp_path_factory, model_factory, tokenizer):
    """A student trained for 2 steps from a local teacher folder and saved: the folder and the trainer."""
    root = tmp_path_factory.mktemp("provenance")
    teacher = model_factory.save(root / "teacher", "llama", hidden=48, seed=2)
    (root / "teacher" / "README.md").write_text("---\nlicense: apache-2.0\n---\n")
    args = DistillationConfig(output_dir=str(root / "out"), report_to="none", save_strategy="no", max_steps=2,
                              per_device_train_batch_size=4, max_length=64, alpha=0.7, hub_token=SECRET, seed=3)
    train = tiny.prompt_completion_dataset(16).map(_plant_findings, with_indices=True)
    trainer = DistillationTrainer(model=model_factory("llama", seed=1), teacher_model=teacher, args=args,
                                  train_dataset=train,
                                  eval_dataset=tiny.prompt_completion_dataset(8, seed=1), processing_class=tokenizer)
    trainer.train()
    trainer.save_model()
    return root / "out", trainer


PLANTED = {3: " mail jane.doe@example.org", 5: " key AKIAABCD1234EFGH5678"}


def _plant_findings(row, index):
    """An e-mail address in row 3 and an AWS key in row 5 of the training data, for the privacy scan to find."""
    return {"completion": row["completion"] + PLANTED.get(index, "")}


def test_trainer_writes_provenance_at_save_time(saved_student):
    folder, trainer = saved_student
    text = (folder / PROVENANCE_FILE).read_text()
    assert SECRET not in text
    provenance = Provenance.load(folder)
    assert provenance.teacher.kind == "local" and provenance.teacher.license == "apache-2.0"
    assert provenance.teacher.content_sha256 == folder_sha256(folder.parent / "teacher")
    assert provenance.base_model is None and not provenance.weight_derived  # built from a config
    assert [d.split for d in provenance.datasets] == ["train", "eval"]
    train = provenance.datasets[0]
    assert train.num_rows == 16 and train.fingerprint == trainer.train_dataset._fingerprint
    assert train.num_tokens == sum(len(ids) for ids in trainer.train_dataset["input_ids"])
    assert 0 < train.num_trained_tokens < train.num_tokens  # completion-only loss on prompt/completion data
    assert provenance.config["alpha"] == 0.7 and provenance.seed == 3
    weights = folder / "model.safetensors"
    assert provenance.weight_files == {"model.safetensors": hashlib.sha256(weights.read_bytes()).hexdigest()}
    tokenizer = trainer.processing_class
    assert provenance.tokenizer["vocab_size"] == len(tokenizer)
    assert provenance.tokenizer["chat_template_sha256"] == hashlib.sha256(tokenizer.chat_template.encode()).hexdigest()
    assert provenance.libraries["torch"] == torch.__version__
    assert provenance.hf_distill["version"] and provenance.hardware["num_cpus"]
    assert provenance.wall_clock_seconds > 0 and provenance.accelerator_hours == 0.0
    assert provenance.student["num_parameters"] == trainer.model.num_parameters()


def test_provenance_records_privacy_scan_counts_not_content(saved_student):
    folder, _ = saved_student
    text = (folder / PROVENANCE_FILE).read_text()
    assert all(finding.split()[-1] not in text for finding in PLANTED.values())  # counts only, never the text
    train, evaluation = Provenance.load(folder).datasets
    scan = train.privacy_scan
    assert (scan["num_texts"], scan["num_texts_flagged"]) == (16, 2)
    assert scan["columns"] == ["prompt", "completion"] and "flagged_rows" not in scan
    assert scan["counts"]["email"] == 1 and scan["counts"]["aws_access_key"] == 1
    assert (scan["num_secrets"], scan["num_personal"], train.num_secrets) == (1, 1, 1)
    assert evaluation.privacy_scan["num_texts"] == 8 and evaluation.privacy_scan["num_texts_flagged"] == 0


def test_dataset_record_scans_the_raw_text_and_skips_streams():
    raw = Dataset.from_dict({"text": ["ping 10.0.0.1 now", "nothing"]})
    tokenized = Dataset.from_dict({"input_ids": [[1, 2], [3]]})  # packing or pre-tokenizing drops the text
    assert dataset_record(tokenized, "train").privacy_scan["columns"] == []
    scan = dataset_record(tokenized, "train", scan_source=raw).privacy_scan
    assert scan["counts"]["ip_address"] == 1 and scan["num_texts_flagged"] == 1
    assert dataset_record(raw.to_iterable_dataset(), "train").privacy_scan is None  # never read a stream twice


def test_provenance_round_trips_and_applies_overrides(saved_student):
    folder, _ = saved_student
    provenance = Provenance.load(folder)
    assert Provenance.from_dict(json.loads(provenance.to_json())).to_dict() == provenance.to_dict()
    provenance.apply_license_overrides(teacher_license="llama3.1", dataset_licenses={"train": "cc-by-nc-4.0"})
    assert (provenance.teacher.license, provenance.teacher.license_source) == ("llama3.1", "override")
    assert [d.license for d in provenance.datasets] == ["cc-by-nc-4.0", None]
    verdict = provenance.check_license(student_name="me/tiny")
    assert verdict.duties.non_commercial and verdict.duties.attribution_lines == ["Built with Llama"]
    provenance.apply_license_overrides(dataset_licenses="mit")
    assert [d.license for d in provenance.datasets] == ["mit", "mit"]


def test_peft_student_records_its_base_checkpoint(tmp_path, model_factory, tokenizer):
    from peft import LoraConfig

    base = model_factory.save(tmp_path / "base", "llama", seed=1)
    (tmp_path / "base" / "README.md").write_text("---\nlicense: llama3.2\n---\n")
    args = DistillationConfig(output_dir=str(tmp_path / "out"), report_to="none", save_strategy="no", max_steps=1,
                              per_device_train_batch_size=4, max_length=64)
    trainer = DistillationTrainer(model=base, teacher_model=model_factory("llama", seed=2), args=args,
                                  train_dataset=tiny.prompt_completion_dataset(8), processing_class=tokenizer,
                                  peft_config=LoraConfig(r=4, target_modules="all-linear"))
    provenance = trainer.collect_provenance()
    assert provenance.base_model.kind == "local" and provenance.base_model.license == "llama3.2"
    assert provenance.teacher.kind == "in-memory"
    assert provenance.student["adapter"]["r"] == 4
    assert provenance.student["num_trainable_parameters"] < provenance.student["num_parameters"]
    assert provenance.check_license(student_name="me/x").student_license == "llama3.2"


def test_load_errors_name_the_fix(tmp_path):
    with pytest.raises(ProvenanceError, match="does not exist. Save the student with `DistillationTrainer.save_model"):
        Provenance.load(tmp_path)
    (tmp_path / PROVENANCE_FILE).write_text("{not json")
    with pytest.raises(ProvenanceError, match="is not a valid provenance file .*re-save the student"):
        Provenance.load(tmp_path)
