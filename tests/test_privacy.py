"""The privacy scan finds personal data and secrets, and blocks publishing secrets unless overridden."""

import pytest
from datasets import Dataset

from hf_distill.privacy import PATTERNS, PrivateDataError, check_publishable, scan_dataset, scan_texts

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
    with pytest.raises(ValueError, match=r"Columns \['text'\] are not in the dataset"):
        scan_dataset(data, columns=["text"])


def test_secrets_block_publishing_unless_allowed():
    report = scan_texts([FINDINGS["aws_access_key"], FINDINGS["email"]])
    with pytest.raises(PrivateDataError, match="found 1 secret.*allow_private_data=True"):
        check_publishable(report, what="the generated completions")
    check_publishable(report, what="the generated completions", allow_private_data=True)
    check_publishable(scan_texts([FINDINGS["email"]]), what="personal data only")  # counted, not blocked
