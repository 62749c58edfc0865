"""`cache_teacher_logits`: tokenization identical to SFTTrainer, stored top-k equal to the teacher's, the card, resume
after an interruption, parquet round trip, and clear errors raised before the teacher is loaded."""

import json
import os
import shutil

import datasets
import numpy as np
import pytest
import torch
from huggingface_hub import DatasetCard
from trl import SFTConfig, SFTTrainer

from hf_distill.data import (
    CacheSettingsError,
    CorruptShardError,
    ResumeError,
    cache_teacher_logits,
    chat_template_hash,
    decode_topk,
    tokenize_like_sft,
    tokenizer_hash,
)
from hf_distill.formats.tokenization import DatasetFormatError
from tests import tiny


@pytest.fixture(scope="module")
def teacher(model_factory):
    return model_factory("llama", hidden=32, layers=2, seed=7)


class _CountForwards:
    """Counts teacher forwards; raises on the call numbered `fail_at` to simulate a killed run."""

    def __init__(self, model, fail_at=None):
        self.calls, self.fail_at = 0, fail_at
        self.handle = model.model.register_forward_pre_hook(self)  # the backbone: the cache never projects prompts

    def __call__(self, module, args):
        self.calls += 1
        if self.fail_at is not None and self.calls == self.fail_at:
            raise KeyboardInterrupt("simulated kill")

    def remove(self):
        self.handle.remove()


@pytest.mark.parametrize("name", ["prompt_completion", "messages", "text", "conversational_prompt_completion"])
def test_tokenization_matches_sft_trainer(name, tokenizer, model_factory, tmp_path):
    dataset = tiny.DATASETS[name](6)
    ours = tokenize_like_sft(dataset, tokenizer)
    args = SFTConfig(output_dir=str(tmp_path), report_to="none", bf16=False, max_length=None)
    trainer = SFTTrainer(model=model_factory("llama", hidden=16, layers=1), args=args, train_dataset=dataset,
                         processing_class=tokenizer)
    sft = trainer.train_dataset
    assert ours["input_ids"] == sft["input_ids"]
    completion_only = "prompt" in dataset.column_names
    expected_labels = [
        [token if (keep or not completion_only) else -100 for token, keep in zip(ids, mask, strict=True)]
        for ids, mask in zip(ours["input_ids"], ours["completion_mask"], strict=True)
    ]
    assert expected_labels == sft["labels"]


def test_cached_topk_equals_the_teachers(teacher, tokenizer, tmp_path):
    dataset = tiny.prompt_completion_dataset(5)
    cached = cache_teacher_logits(teacher, dataset, tokenizer=tokenizer, output_dir=tmp_path / "cache", top_k=8,
                                  batch_size=2)
    assert cached.column_names == ["input_ids", "completion_mask", "teacher_topk", "tokenizer_hash"]
    row = cached[2]
    with torch.no_grad():
        logits = teacher(torch.tensor([row["input_ids"]])).logits[0].float()
    log_probs = torch.log_softmax(logits, -1)
    decoded = decode_topk(row["teacher_topk"])
    # Covered: exactly the positions whose next token is a completion token.
    assert decoded.covered.tolist() == [bool(m) for m in row["completion_mask"][1:]] + [False]
    exact = log_probs[torch.from_numpy(decoded.covered)]
    values, ids = exact.topk(8, -1)
    assert np.array_equal(decoded.token_ids, np.sort(ids.numpy(), -1))
    np.testing.assert_allclose(
        decoded.log_probs, exact.gather(-1, torch.from_numpy(decoded.token_ids).long()).numpy(), atol=0.02
    )
    tail = torch.logsumexp(exact.scatter(-1, ids, float("-inf")), -1)
    np.testing.assert_allclose(decoded.tail_log_probs, tail.numpy(), rtol=2e-3)


def test_output_folder_card_and_reload(teacher, tokenizer, tmp_path):
    out = tmp_path / "cache"
    cached = cache_teacher_logits(teacher, tiny.messages_dataset(4), tokenizer=tokenizer, output_dir=out, top_k=4)
    assert not (out / "shards").exists()
    reloaded = datasets.load_from_disk(str(out))
    assert reloaded["teacher_topk"] == cached["teacher_topk"]
    card = DatasetCard.load(out / "README.md").data.to_dict()["hf_distill"]
    assert card["tokenizer_hash"] == tokenizer_hash(tokenizer) and card["chat_template_hash"] == chat_template_hash(
        tokenizer)
    assert card["top_k"] == 4 and card["vocab_size"] == len(tokenizer)
    assert card["teacher_revision"].startswith("sha256:") and card["encoding"]["name"] == "sorted-delta-sqrtlog-zstd"
    assert card["num_rows"] == 4 and card["num_topk_bytes"] == sum(len(b) for b in cached["teacher_topk"])
    assert json.loads(reloaded.info.description)["tokenizer_hash"] == tokenizer_hash(tokenizer)
    # Hub form: parquet keeps every column byte for byte.
    cached.to_parquet(str(tmp_path / "train.parquet"))
    from_parquet = datasets.Dataset.from_parquet(str(tmp_path / "train.parquet"))
    assert from_parquet["teacher_topk"] == cached["teacher_topk"]


def test_interrupted_run_resumes_and_equals_an_uninterrupted_one(teacher, tokenizer, tmp_path):
    dataset = tiny.prompt_completion_dataset(10)
    kwargs = dict(tokenizer=tokenizer, top_k=6, batch_size=2, shard_size=4)
    reference = cache_teacher_logits(teacher, dataset, output_dir=tmp_path / "ref", **kwargs)

    counter = _CountForwards(teacher, fail_at=4)  # shard 0 = 2 batches; dies in shard 1
    with pytest.raises(KeyboardInterrupt):
        cache_teacher_logits(teacher, dataset, output_dir=tmp_path / "run", **kwargs)
    counter.remove()
    shards = tmp_path / "run" / "shards"
    assert (shards / "shard-00000.json").exists() and not (shards / "shard-00001.json").exists()

    counter = _CountForwards(teacher)
    resumed = cache_teacher_logits(teacher, dataset, output_dir=tmp_path / "run", **kwargs)
    assert counter.calls == 3  # shard 0 is kept; shard 1 (2 batches) and shard 2 (1 batch) run
    assert resumed.to_dict() == reference.to_dict()

    cache_teacher_logits(teacher, dataset, output_dir=tmp_path / "run", **kwargs)  # finished: nothing recomputed
    assert counter.calls == 3
    counter.remove()


def test_corrupt_shard_is_named_and_recomputed_once_deleted(teacher, tokenizer, tmp_path):
    dataset = tiny.text_dataset(6)
    kwargs = dict(tokenizer=tokenizer, top_k=4, batch_size=3, shard_size=3)
    counter = _CountForwards(teacher, fail_at=2)
    with pytest.raises(KeyboardInterrupt):
        cache_teacher_logits(teacher, dataset, output_dir=tmp_path / "run", **kwargs)
    counter.remove()
    shard = tmp_path / "run" / "shards" / "shard-00000"
    arrow = next(shard.glob("*.arrow"))
    arrow.write_bytes(arrow.read_bytes()[:-10] + b"0123456789")  # bit rot in a finished shard
    counter = _CountForwards(teacher)
    with pytest.raises(CorruptShardError, match=rf"Shard 0 \(rows 0-2\) at {shard} is corrupt: {arrow.name} does not "
                       r"match its sha256 recorded at write time.*Delete"):
        cache_teacher_logits(teacher, dataset, output_dir=tmp_path / "run", **kwargs)
    assert counter.calls == 0  # detected before any teacher work

    shutil.rmtree(shard)
    (shard.parent / "shard-00000.json").unlink()
    result = cache_teacher_logits(teacher, dataset, output_dir=tmp_path / "run", **kwargs)
    counter.remove()
    assert counter.calls == 2 and len(result) == 6  # only the deleted shard is recomputed
    assert result.to_dict() == cache_teacher_logits(teacher, dataset, output_dir=tmp_path / "ref", **kwargs).to_dict()


def test_corrupt_finished_dataset_is_named(teacher, tokenizer, tmp_path):
    kwargs = dict(tokenizer=tokenizer, top_k=4, output_dir=tmp_path)
    cache_teacher_logits(teacher, tiny.text_dataset(3), **kwargs)
    arrow = next(tmp_path.glob("data-*.arrow"))
    arrow.write_bytes(arrow.read_bytes()[:-4] + b"\x00\x01\x02\x03")
    with pytest.raises(CorruptShardError, match=rf"teacher-logits dataset in {tmp_path} is corrupt: {arrow.name}"):
        cache_teacher_logits(teacher, tiny.text_dataset(3), **kwargs)


def test_resume_with_other_settings_is_refused(teacher, tokenizer, tmp_path):
    dataset = tiny.text_dataset(4)
    cache_teacher_logits(teacher, dataset, tokenizer=tokenizer, output_dir=tmp_path, top_k=4)
    with pytest.raises(ResumeError, match="finished teacher-logits dataset made with other settings"):
        cache_teacher_logits(teacher, dataset, tokenizer=tokenizer, output_dir=tmp_path, top_k=5)


def test_bad_arguments_fail_before_loading_the_teacher(tokenizer, tmp_path):
    missing_teacher = str(tmp_path / "no-such-teacher")  # loading it would fail differently
    dataset = tiny.text_dataset(2)
    with pytest.raises(CacheSettingsError, match=r"`top_k` is 1000 but the vocabulary has 384 tokens"):
        cache_teacher_logits(missing_teacher, dataset, tokenizer=tokenizer, output_dir=tmp_path, top_k=1000)
    with pytest.raises(CacheSettingsError, match=r"`batch_size` is 0"):
        cache_teacher_logits(missing_teacher, dataset, tokenizer=tokenizer, output_dir=tmp_path, batch_size=0)
    with pytest.raises(DatasetFormatError, match="none of the TRL formats"):
        tokenize_like_sft(datasets.Dataset.from_dict({"question": ["hi"]}), tokenizer)


def test_max_length_truncates_like_sft(teacher, tokenizer, tmp_path):
    cached = cache_teacher_logits(teacher, tiny.prompt_completion_dataset(3), tokenizer=tokenizer,
                                  output_dir=tmp_path, top_k=4, max_length=9)
    assert all(len(ids) <= 9 for ids in cached["input_ids"])
    assert all(len(decode_topk(blob).covered) == len(ids) for blob, ids in zip(cached["teacher_topk"],
                                                                                cached["input_ids"], strict=True))
    assert os.path.exists(tmp_path / "README.md")
