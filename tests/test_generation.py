"""`generate_completions`: sequence-level distillation across tokenizers, per-sequence seeding (batching, resuming and
sharding do not change the data), output formats and provenance, and clear errors before the teacher is loaded."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
from huggingface_hub import DatasetCard
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer

from hf_distill.data import CorruptShardError, GenerationSettingsError, generate_completions
from tests import tiny
from tests.distributed import sigkill_once_written

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def other_teacher_dir(other_tokenizer, tmp_path_factory):
    """A teacher whose tokenizer differs from the student's, saved with its tokenizer like a Hub checkpoint."""
    return tiny.ModelFactory(other_tokenizer).save(tmp_path_factory.mktemp("teacher"), "qwen2", hidden=32, seed=5)


def test_cross_tokenizer_sequence_level_distillation(other_teacher_dir, tokenizer, other_tokenizer, model_factory,
                                                     tmp_path):
    prompts = tiny.prompt_completion_dataset(6).remove_columns("completion")
    generated = generate_completions(other_teacher_dir, prompts, output_dir=tmp_path / "gen", max_new_tokens=6,
                                     num_samples=2, batch_size=4)
    assert len(generated) == 12
    assert generated["prompt"][:2] == [prompts[0]["prompt"]] * 2 and generated["sample_index"][:2] == [0, 1]
    assert all(isinstance(text, str) for text in generated["completion"])
    assert generated["teacher"][0] == other_teacher_dir and generated["teacher_revision"][0].startswith("sha256:")
    assert json.loads(generated["generation_settings"][0])["num_samples"] == 2
    assert tokenizer.get_vocab() != other_tokenizer.get_vocab()
    card = DatasetCard.load(tmp_path / "gen" / "README.md").data.to_dict()["hf_distill"]
    assert card["teacher"] == other_teacher_dir and card["max_new_tokens"] == 6

    # The student, with its own tokenizer, trains on the teacher's text.
    args = SFTConfig(output_dir=str(tmp_path / "student"), report_to="none", save_strategy="no", max_steps=2,
                     per_device_train_batch_size=4, bf16=False)
    trainer = SFTTrainer(model=model_factory("llama", hidden=16, layers=1), args=args, train_dataset=generated,
                         processing_class=tokenizer)
    trainer.train()
    assert trainer.state.global_step == 2


def test_seeding_is_per_sequence_and_resume_is_exact(other_teacher_dir, tmp_path):
    prompts = tiny.messages_dataset(7)
    common = dict(max_new_tokens=5, num_samples=2, temperature=1.0, top_p=0.9, seed=3)
    one_run = generate_completions(other_teacher_dir, prompts, output_dir=tmp_path / "a", batch_size=14, **common)
    # Other batches and shards: each sequence still draws from its own generator.
    other_layout = generate_completions(other_teacher_dir, prompts, output_dir=tmp_path / "b", batch_size=3,
                                        shard_size=2, **common)
    assert other_layout["messages"] == one_run["messages"]
    completions = [row[-1]["content"] for row in one_run["messages"]]
    assert len(set(completions)) > 1  # sampling, not a constant
    other_seed = generate_completions(other_teacher_dir, prompts, output_dir=tmp_path / "c", batch_size=14,
                                      **{**common, "seed": 4})
    assert other_seed["messages"] != one_run["messages"]


def test_messages_rows_regenerate_the_last_assistant_turn(other_teacher_dir, tmp_path):
    prompts = tiny.messages_dataset(2)
    generated = generate_completions(other_teacher_dir, prompts, output_dir=tmp_path, max_new_tokens=4,
                                     temperature=0.0)
    for source, row in zip(prompts, generated, strict=True):
        assert row["messages"][:-1] == source["messages"][:-1]
        assert row["messages"][-1]["role"] == "assistant"
    assert generated.column_names[:1] == ["messages"] and "source_row" in generated.column_names


def test_conversational_prompts_give_conversational_completions(other_teacher_dir, tmp_path):
    prompts = tiny.conversational_prompt_completion_dataset(2).remove_columns("completion")
    generated = generate_completions(other_teacher_dir, prompts, output_dir=tmp_path, max_new_tokens=3)
    assert generated["completion"][0][0]["role"] == "assistant"


@pytest.mark.parametrize(
    "kwargs, dataset, message",
    [
        (dict(num_samples=0), None, r"`num_samples` is 0; it must be >= 1"),
        (dict(), datasets.Dataset.from_dict({"text": ["a b c"]}), "the dataset has no prompts"),
        (dict(backend="vllm"), None, r"needs vLLM, which is not installed: `pip install vllm`"),
        (dict(top_p=0.0), None, r"`top_p` is 0.0; it must be in \(0, 1\]"),
    ],
)
def test_bad_arguments_fail_before_loading_the_teacher(kwargs, dataset, message, tmp_path):
    dataset = dataset if dataset is not None else tiny.prompt_completion_dataset(2)
    with pytest.raises(GenerationSettingsError, match=message):
        generate_completions(str(tmp_path / "no-such-teacher"), dataset, output_dir=tmp_path / "out", **kwargs)


# -- against the teacher's own `generate`; resuming after SIGKILL, checksums, several processes ----------------------


def test_greedy_completions_are_the_teachers_own_greedy_generate(other_teacher_dir, tmp_path):
    rows = tiny.prompt_completion_dataset(7, seed=2)
    prompts = datasets.Dataset.from_dict(  # prompts of different lengths
        {"prompt": [row["prompt"] + row["completion"] * (index % 3) for index, row in enumerate(rows)]}
    )
    tokenizer = AutoTokenizer.from_pretrained(other_teacher_dir)
    lengths = {len(tokenizer(prompt)["input_ids"]) for prompt in prompts["prompt"]}
    assert len(lengths) > 1  # batches mix prompt lengths: the left padding is exercised
    generated = generate_completions(other_teacher_dir, prompts, output_dir=tmp_path, max_new_tokens=6,
                                     temperature=0.0, batch_size=4)
    teacher = AutoModelForCausalLM.from_pretrained(other_teacher_dir)
    expected = []
    for prompt in prompts["prompt"]:  # one unpadded prompt at a time, the teacher's own greedy decoding
        ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
        output = teacher.generate(ids, max_new_tokens=6, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        expected.append(tokenizer.decode(output[0, ids.shape[1]:], skip_special_tokens=True))
    assert generated["completion"] == expected
    assert len(set(expected)) > 1


def _worker(teacher_dir, data_dir, output_dir, *extra, nproc=None, wait=True):
    script = ["-m", "tests.scripts.generate_worker", str(teacher_dir), str(data_dir), str(output_dir), *extra]
    launcher = [] if nproc is None else ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    command = [sys.executable, *launcher, *script]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    if not wait:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


@pytest.fixture()
def prompts_on_disk(tmp_path):
    """8 prompts: shards of 3 rows (3, 3, 2), 2 samples each, batches of 2: 3 + 3 + 2 `generate` batches."""
    tiny.prompt_completion_dataset(8, seed=6).remove_columns("completion").save_to_disk(str(tmp_path / "data"))
    return tmp_path / "data"


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_equals_an_uninterrupted_run(other_teacher_dir, prompts_on_disk, tmp_path):
    from tests.scripts.generate_worker import SETTINGS

    reference = generate_completions(other_teacher_dir, datasets.load_from_disk(str(prompts_on_disk)),
                                     output_dir=tmp_path / "reference", **SETTINGS)
    process = _worker(other_teacher_dir, prompts_on_disk, tmp_path / "run", "--batch-delay", "0.5", wait=False)
    shards = tmp_path / "run" / "shards"
    sigkill_once_written(process, shards / "shard-00000.json", "first shard")
    finished = len(list(shards.glob("shard-*.json")))
    assert 1 <= finished <= 2 and not (shards / "shard-00002.json").exists(), "killed too late"

    output = _worker(other_teacher_dir, prompts_on_disk, tmp_path / "run")
    assert f"generated {8 - 3 * finished} batches; 16 rows" in output  # finished shards are not generated again
    assert datasets.load_from_disk(str(tmp_path / "run")).to_dict() == reference.to_dict()


def test_corrupt_shard_is_named_before_any_generation_and_recomputed_once_deleted(other_teacher_dir, tmp_path,
                                                                                  monkeypatch):
    from hf_distill.data import generation as generation_module

    prompts = tiny.prompt_completion_dataset(6, seed=7).remove_columns("completion")
    settings = dict(max_new_tokens=4, temperature=1.0, seed=2, batch_size=3, shard_size=3)
    reference = generate_completions(other_teacher_dir, prompts, output_dir=tmp_path / "reference", **settings)
    calls = []
    generate = generation_module._TransformersGenerator.__call__

    def counting(self, batch, seeds):
        calls.append(len(batch))
        if len(calls) == fail_at[0]:
            raise KeyboardInterrupt("simulated kill")
        return generate(self, batch, seeds)

    fail_at = [2]  # shard 0 is one batch; the run dies in shard 1
    monkeypatch.setattr(generation_module._TransformersGenerator, "__call__", counting)
    with pytest.raises(KeyboardInterrupt):
        generate_completions(other_teacher_dir, prompts, output_dir=tmp_path / "run", **settings)
    shard = tmp_path / "run" / "shards" / "shard-00000"
    arrow = next(shard.glob("*.arrow"))
    arrow.write_bytes(arrow.read_bytes()[:-10] + b"0123456789")  # bit rot in a finished shard
    calls.clear()
    fail_at[0] = 0
    with pytest.raises(CorruptShardError, match=rf"Shard 0 \(rows 0-2\) at {shard} is corrupt: {arrow.name} does not "
                       r"match its sha256 recorded at write time.*Delete"):
        generate_completions(other_teacher_dir, prompts, output_dir=tmp_path / "run", **settings)
    assert calls == []  # detected before any generation

    shutil.rmtree(shard)
    (shard.parent / "shard-00000.json").unlink()
    result = generate_completions(other_teacher_dir, prompts, output_dir=tmp_path / "run", **settings)
    assert calls == [3, 3] and result.to_dict() == reference.to_dict()

    finished = next((tmp_path / "run").glob("data-*.arrow"))
    finished.write_bytes(finished.read_bytes()[:-4] + b"\x00\x01\x02\x03")
    with pytest.raises(CorruptShardError, match=rf"teacher-completions dataset in {tmp_path / 'run'} is corrupt"):
        generate_completions(other_teacher_dir, prompts, output_dir=tmp_path / "run", **settings)


@pytest.mark.slow
def test_two_processes_write_the_same_dataset_as_one(other_teacher_dir, prompts_on_disk, tmp_path):
    single = _worker(other_teacher_dir, prompts_on_disk, tmp_path / "one", nproc=1)
    double = _worker(other_teacher_dir, prompts_on_disk, tmp_path / "two", nproc=2)
    one = datasets.load_from_disk(str(tmp_path / "one"))
    two = datasets.load_from_disk(str(tmp_path / "two"))
    assert len(one) == 16 and one.to_dict() == two.to_dict()
    # Rank 0 takes shards 0 and 2 (3 + 2 batches), rank 1 shard 1 (3 batches).
    assert dict(re.findall(r"rank (\d) of 2 generated (\d+) batches", double)) == {"0": "5", "1": "3"}, double
    assert "rank 0 of 1 generated 8 batches" in single
