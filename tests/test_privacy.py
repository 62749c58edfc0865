"""The privacy scan finds personal data and secrets, and blocks publishing secrets unless overridden."""

import json

import pytest
from datasets import Dataset, DatasetDict, load_dataset
from huggingface_hub import DatasetCard

from hf_distill import DistillationConfig, DistillationTrainer
from hf_distill.cli import main
from hf_distill.data import cache_teacher_logits
from hf_distill.hub import HubAuthError, PushError, push_dataset
from hf_distill.privacy import (
    PATTERNS,
    PrivacyReport,
    PrivacyScanError,
    PrivateDataError,
    check_publishable,
    scan_dataset,
    scan_generated,
    scan_texts,
)
from hf_distill.publish.dataset import DatasetPushError
from tests import tiny

FINDINGS = {
    "email": "write to jane.doe@example.org today",
    "phone": "call +44 20 7946 0958 or (555) 123-4567",
    "ip_address": "the server is at 192.168.10.254",
    "huggingface_token": "token hf_" + "a1B2" * 9,
    "openai_key": "key sk-" + "x7Y" * 9,
    "aws_access_key": "AKIA" + "ABCD1234EFGH5678",
    "github_token": "ghp_" + "Zz09" * 10,
    "slack_token": "xoxb-1234567890-abcdef",
    "google_api_key": "AIza" + "S" * 35,
    "private_key": "-----BEGIN RSA PRIVATE KEY-----",
    "assigned_secret": "password = hunter2hunter2",
}
CLEAN = ["what is 3 add 4", "the answer is 7", "on 2024-11-22 version 1.2.3 had 151936 tokens", "3.14 and 1.0e-4"]


def test_every_category_has_an_example():
    assert set(FINDINGS) == set(PATTERNS)


@pytest.mark.parametrize("category", sorted(FINDINGS))
def test_each_category_is_found(category):
    report = scan_texts([FINDINGS[category]])
    assert report.counts[category] >= 1, report.counts
    assert report.num_texts_flagged == 1


def test_clean_text_is_not_flagged():
    report = scan_texts(CLEAN)
    assert report.num_texts == len(CLEAN) and report.num_texts_flagged == 0
    assert report.num_secrets == report.num_personal == 0


def test_dataset_scan_reads_messages_and_rows():
    data = Dataset.from_dict(
        {
            "messages": [
                [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "mail me at a@b.co"}],
                [{"role": "user", "content": CLEAN[0]}, {"role": "assistant", "content": CLEAN[1]}],
                [{"role": "user", "content": FINDINGS["huggingface_token"]}, {"role": "assistant", "content": "ok"}],
            ]
        }
    )
    report = scan_dataset(data)
    assert report.counts["email"] == 1 and report.counts["huggingface_token"] == 1
    assert report.flagged_rows == [0, 2]
    assert report.to_dict()["num_secrets"] == 1
    with pytest.raises(PrivacyScanError, match=r"Columns \['text'\] are not in the dataset"):
        scan_dataset(data, columns=["text"])


def test_secrets_block_publishing_unless_allowed():
    report = scan_texts([FINDINGS["aws_access_key"], FINDINGS["email"]])
    with pytest.raises(PrivateDataError, match="found 1 secret.*allow_private_data=True"):
        check_publishable(report, what="the generated completions")
    check_publishable(report, what="the generated completions", allow_private_data=True)
    check_publishable(scan_texts([FINDINGS["email"]]), what="personal data only")  # counted, not blocked


def test_scan_counts_rows_not_strings_and_skips_non_text_columns():
    data = Dataset.from_dict({"prompt": ["a@b.co", "x"], "completion": ["c@d.org", "y"], "input_ids": [[1], [2]]})
    report = scan_dataset(data)
    assert report.columns == ["prompt", "completion"]  # token ids are not text
    assert (report.num_texts, report.num_texts_flagged, report.counts["email"]) == (2, 1, 2)
    assert "flagged_rows" not in report.to_dict() and report.to_dict(include_rows=True)["flagged_rows"] == [0]
    assert PrivacyReport.from_dict(report.to_dict(include_rows=True)) == report


def test_scan_generated_reads_only_what_the_teacher_wrote():
    conversations = Dataset.from_dict({"messages": [
        [{"role": "user", "content": "my mail is me@home.org"}, {"role": "assistant", "content": "noted"}],
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": FINDINGS["github_token"]}],
    ]})
    report = scan_generated(conversations)
    assert report.counts["email"] == 0 and report.counts["github_token"] == 1 and report.flagged_rows == [1]
    pairs = Dataset.from_dict({"prompt": ["me@home.org"], "completion": ["fine"]})
    assert scan_generated(pairs).num_texts_flagged == 0


# -- publishing datasets -------------------------------------------------------------------------------------------


def _secret_rows():
    return Dataset.from_dict({"prompt": ["what is 3 add 4", "and this"],
                              "completion": [" 7", " " + FINDINGS["aws_access_key"]]})


def test_refused_dataset_push_sends_no_request(hub_server, caplog):
    with caplog.at_level("WARNING"), pytest.raises(
        PrivateDataError, match=r"split 'train' of the dataset to 'tester/leaky' \(nothing was uploaded\).*"
        r"1 secret.*first rows \[1\].*allow_private_data=True"
    ):
        push_dataset(_secret_rows(), "tester/leaky", token=hub_server.token)
    assert hub_server.requests == []
    assert FINDINGS["aws_access_key"] not in caplog.text and hub_server.token not in caplog.text


def test_allowed_dataset_push_lands_in_one_commit(hub_server, tmp_path):
    splits = DatasetDict({"train": _secret_rows(), "test": Dataset.from_dict({"prompt": ["q"], "completion": ["a"]})})
    result = push_dataset(splits, "tester/allowed", token=hub_server.token, allow_private_data=True)
    assert hub_server.calls("POST", r"^/api/datasets/tester/allowed/commit/main$")
    commits = hub_server.commits("tester/allowed", repo_type="dataset")
    assert len(commits) == 2 and commits[0].oid == result.commit_oid  # the repo's creation, then ours
    stored = hub_server.files("tester/allowed", repo_type="dataset")
    assert sorted(stored) == [".gitattributes", "README.md", "data/test-00000-of-00001.parquet",
                              "data/train-00000-of-00001.parquet"]
    assert result.files == ["data/train-00000-of-00001.parquet", "data/test-00000-of-00001.parquet", "README.md"]
    loaded = load_dataset("tester/allowed", revision=result.commit_oid)
    assert loaded["train"].to_list() == splits["train"].to_list() and loaded["test"].num_rows == 1
    card = DatasetCard(stored["README.md"].content.decode())
    scans = card.data.to_dict()["hf_distill"]["privacy_scan_at_publication"]
    assert scans["train"]["counts"]["aws_access_key"] == 1 and scans["test"]["num_texts_flagged"] == 0
    assert "## Privacy scan at publication" in card.text and "| train split | 2 | 1 | 0 | 0 | 0 | 1 |" in card.text
    assert FINDINGS["aws_access_key"] not in str(card)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: push_dataset(_secret_rows(), "not a repo id", allow_private_data=True), PushError,
         "`repo_id` is 'not a repo id'"),
        (lambda: push_dataset(Dataset.from_dict({"input_ids": [[1, 2]]}), "tester/tokens"), DatasetPushError,
         r"Split 'train' holds token ids and no text.*pass `tokenizer=`.*allow_private_data=True"),
        (lambda: push_dataset("/no/such/folder", "tester/x"), DatasetPushError, "'/no/such/folder' is not a folder"),
        (lambda: push_dataset(_secret_rows().to_iterable_dataset(), "tester/x"), DatasetPushError,
         "streaming datasets cannot be scanned"),
        (lambda: push_dataset(_secret_rows(), "tester/x", allow_private_data=True, max_shard_bytes=0),
         DatasetPushError, "`max_shard_bytes` is 0"),
        (lambda: push_dataset(Dataset.from_dict({"text": ["clean"]}), "tester/x"), HubAuthError,
         "No Hugging Face token"),
    ],
)
def test_bad_dataset_pushes_fail_before_any_request(hub_server, call, error, message):
    with pytest.raises(error, match=message):
        call()
    assert hub_server.requests == []


# -- generated completions and cached logits ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory, model_factory):
    return model_factory.save(tmp_path_factory.mktemp("privacy") / "teacher", "llama", hidden=32, seed=2)


def _leaky_teacher(monkeypatch):
    """The teacher "writes" an e-mail address into row 1 and a Hugging Face token into row 2 (a tiny random model
    never would): the generation pipeline, its card and the push run for real on that text."""
    from hf_distill.data import generation

    def fake_call(self, prompts, seeds):
        return [f"reply {i} " + {1: FINDINGS["email"], 2: FINDINGS["huggingface_token"]}.get(i, "")
                for i in range(len(prompts))]

    monkeypatch.setattr(generation._TransformersGenerator, "__call__", fake_call)


def test_generated_completions_are_scanned_carded_and_refused(teacher_dir, tokenizer, tmp_path, hub_server,
                                                              monkeypatch, caplog, capsys):
    _leaky_teacher(monkeypatch)
    DatasetDict({"train": tiny.prompt_completion_dataset(4)}).save_to_disk(str(tmp_path / "prompts"))
    argv = ["generate", "--teacher", teacher_dir, "--dataset_name", str(tmp_path / "prompts"), "--output_dir",
            str(tmp_path / "gen"), "--batch_size", "4", "--max_new_tokens", "2", "--push_to_hub", "tester/gen"]
    monkeypatch.setenv("HF_TOKEN", hub_server.token)
    with caplog.at_level("WARNING"):
        assert main(argv) == 1  # generated and saved, then refused: nothing sent
    assert "Refusing to publish split 'train'" in capsys.readouterr().err and hub_server.requests == []
    assert "Privacy scan of the generated completions: 2 of 4 texts flagged" in caplog.text
    card = DatasetCard.load(tmp_path / "gen" / "README.md")
    scan = card.data.to_dict()["hf_distill"]["privacy_scan"]["generated completions"]
    assert (scan["num_texts"], scan["num_texts_flagged"], scan["num_secrets"], scan["num_personal"]) == (4, 2, 1, 1)
    assert "| generated completions | 4 | 2 | 1 | 0 | 0 | 1 |" in card.text

    assert main([*argv, "--allow_private_data"]) == 0  # resumes the finished run, then publishes
    assert "Pushed 2 files" in capsys.readouterr().out
    stored = hub_server.files("tester/gen", repo_type="dataset")
    published = DatasetCard(stored["README.md"].content.decode())
    assert "## Privacy scan at publication" in published.text and "## Privacy scan\n" in published.text
    assert hub_server.token not in caplog.text


def test_cli_checks_the_push_target_before_the_teacher_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    base = ["--teacher", str(tmp_path / "no-teacher"), "--dataset_name", str(tmp_path / "none"), "--output_dir",
            str(tmp_path / "out")]
    assert main(["generate", *base, "--push_to_hub", "bad id"]) == 1
    assert "`--push_to_hub` is 'bad id'" in capsys.readouterr().err
    monkeypatch.setattr("hf_distill.publish.repo.get_token", lambda: None)
    assert main(["cache-logits", *base, "--push_to_hub", "tester/logits"]) == 1
    assert "No Hugging Face token" in capsys.readouterr().err


def test_cached_logits_card_scans_the_source_and_push_decodes_token_ids(teacher_dir, tokenizer, tmp_path,
                                                                        hub_server):
    source = Dataset.from_dict({"text": ["what is 3 add 4", "write to jane.doe@example.org", "the answer is 7"]})
    cache_teacher_logits(teacher_dir, source, tokenizer=tokenizer, output_dir=tmp_path / "logits", top_k=4)
    card = DatasetCard.load(tmp_path / "logits" / "README.md")
    scan = card.data.to_dict()["hf_distill"]["privacy_scan"]["source text (cached as token ids)"]
    assert (scan["num_texts"], scan["num_texts_flagged"], scan["counts"]["email"]) == (3, 1, 1)
    with pytest.raises(DatasetPushError, match="holds token ids and no text"):
        push_dataset(tmp_path / "logits", "tester/logits", token=hub_server.token)
    assert hub_server.requests == []
    result = push_dataset(tmp_path / "logits", "tester/logits", token=hub_server.token, tokenizer=tokenizer)
    assert result.privacy["train"].columns == ["input_ids"] and result.privacy["train"].num_texts == 3
    assert "data/train-00000-of-00001.parquet" in hub_server.files("tester/logits", repo_type="dataset")


# -- the student -----------------------------------------------------------------------------------------------------


def test_student_trained_on_secrets_is_pushed_with_a_warning(hub_server, model_factory, tokenizer, teacher_dir,
                                                             tmp_path, caplog):
    train = tiny.prompt_completion_dataset(8).map(
        lambda row, i: {"completion": row["completion"] + (" " + FINDINGS["openai_key"] if i == 2 else "")},
        with_indices=True,
    )
    args = DistillationConfig(output_dir=str(tmp_path / "student"), report_to="none", save_strategy="no",
                              max_steps=1, per_device_train_batch_size=4, max_length=64, hub_token=hub_server.token)
    trainer = DistillationTrainer(model=model_factory("llama", seed=1), teacher_model=teacher_dir, args=args,
                                  train_dataset=train, processing_class=tokenizer)
    with caplog.at_level("WARNING"):
        result = trainer.push_to_hub("tester/student")
    assert "secrets in the training data of tester/student (train (train): 1)" in caplog.text
    stored = hub_server.files("tester/student")
    readme, provenance = stored["README.md"].content.decode(), stored["distillation_provenance.json"].content.decode()
    assert "**Secrets in the training data.**" in readme and result.commit_oid
    assert json.loads(provenance)["datasets"][0]["privacy_scan"]["counts"]["openai_key"] == 1
    for text in (readme, provenance, caplog.text):
        assert FINDINGS["openai_key"].split()[-1] not in text and hub_server.token not in text
