"""`generate_completions`: sequence-level distillation across tokenizers, per-sequence seeding (batching, resuming and
sharding do not change the data), output formats and provenance, and clear errors before the teacher is loaded."""

import json

import datasets
import pytest
from huggingface_hub import DatasetCard
from trl import SFTConfig, SFTTrainer

from hf_distill.data import GenerationSettingsError, generate_completions
from tests import tiny


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
        (dict(backend="vllm"), None, r"needs vLLM, which is not installed: `pip install \"hf-distill\[vllm\]\"`"),
        (dict(top_p=0.0), None, r"`top_p` is 0.0; it must be in \(0, 1\]"),
    ],
)
def test_bad_arguments_fail_before_loading_the_teacher(kwargs, dataset, message, tmp_path):
    dataset = dataset if dataset is not None else tiny.prompt_completion_dataset(2)
    with pytest.raises(GenerationSettingsError, match=message):
        generate_completions(str(tmp_path / "no-such-teacher"), dataset, output_dir=tmp_path / "out", **kwargs)
