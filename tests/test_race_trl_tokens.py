"""`benchmarks/race_trl.py` makes both trainers train on the same tokens: its chats fit `max_length`, so neither
truncates. On longer rows they differ by design: TRL GKD's ChatML collator keeps the last `max_length` tokens (the
system prompt and the start of the question go), `DistillationTrainer` keeps the first (TRL `SFTTrainer`'s only
non-deprecated mode; the end of the answer goes), and with `truncation_mode="keep_end"` ours keeps GKD's tokens.
The reference is the batch TRL's own collator builds."""

import sys
import types
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
race_trl = pytest.importorskip("race_trl")

MAX_LENGTH = 96
# Rows of 85-97 tokens whose answers (73-80 tokens) fit: both truncate, and GKD's collator keeps some prompt.
LONG_ROWS_MAX_LENGTH, LONG_ANSWER_WORDS = 84, 26


def _args(tmp_path, worker: str, max_length: int):
    return types.SimpleNamespace(worker=worker, device="cpu", batch_size=4, max_length=max_length, warmup=0, steps=1,
                                 work_dir=str(tmp_path))


def _first_batch_fingerprint(tmp_path, worker, model_factory, tokenizer, rows, max_length=MAX_LENGTH):
    trainer = race_trl.build_trainer(_args(tmp_path, worker, max_length), model_factory(seed=1),
                                     model_factory(seed=2), tokenizer, rows)
    return race_trl.batch_fingerprint(next(iter(trainer.get_train_dataloader())))


def _ours_keeping_the_end(tmp_path, model_factory, tokenizer, rows, max_length):
    from datasets import Dataset

    from hf_distill import DistillationConfig, DistillationTrainer

    data = Dataset.from_dict({"prompt": [r[:1] for r in rows], "completion": [r[1:] for r in rows]})
    config = DistillationConfig(divergence="jsd", beta=0.5, truncation_mode="keep_end",
                                **race_trl._common(_args(tmp_path, "ours_keep_end", max_length)))
    trainer = DistillationTrainer(model=model_factory(seed=2), teacher_model=model_factory(seed=1), args=config,
                                  train_dataset=data, processing_class=tokenizer)
    return race_trl.batch_fingerprint(next(iter(trainer.get_train_dataloader())))


def _long_rows(tokenizer, count=8, words=LONG_ANSWER_WORDS):
    prompts = ["tell me about the cat", "why is the sky blue", "what does the dog eat", "where do birds go"]
    return [[{"role": "user", "content": prompts[i % 4]},
             {"role": "assistant", "content": race_trl._answer(prompts[i % 4], words)}] for i in range(count)]


def test_fitted_chats_are_the_longest_that_fit(tokenizer):
    chat = race_trl._fitted_chat("why is the sky blue", 200, tokenizer, MAX_LENGTH)

    def length(words):
        row = [chat[0], {"role": "assistant", "content": race_trl._answer("why is the sky blue", words)}]
        return len(tokenizer.apply_chat_template(row, tokenize=True, return_dict=False))

    words = len(chat[1]["content"].split())
    assert length(words) <= MAX_LENGTH < length(words + 1)


def test_a_prompt_longer_than_max_length_is_refused(tokenizer):
    with pytest.raises(ValueError, match="--max_length 4 is too short for the prompt"):
        race_trl._fitted_chat("why is the sky blue", 200, tokenizer, 4)


def test_the_race_rows_give_both_trainers_the_same_first_batch(tmp_path, model_factory, tokenizer):
    rows = race_trl.chat_rows(8, 200, tokenizer, MAX_LENGTH)
    ours = _first_batch_fingerprint(tmp_path, "ours", model_factory, tokenizer, rows)
    assert ours == _first_batch_fingerprint(tmp_path, "trl_gkd", model_factory, tokenizer, rows)


def test_on_longer_rows_trl_gkd_keeps_the_end_and_ours_the_start(tmp_path, model_factory, tokenizer):
    rows, length = _long_rows(tokenizer), LONG_ROWS_MAX_LENGTH
    assert all(len(tokenizer.apply_chat_template(r, tokenize=True, return_dict=False)) > length for r in rows)
    gkd = _first_batch_fingerprint(tmp_path, "trl_gkd", model_factory, tokenizer, rows, length)
    assert _first_batch_fingerprint(tmp_path, "ours", model_factory, tokenizer, rows, length) != gkd
    assert _ours_keeping_the_end(tmp_path, model_factory, tokenizer, rows, length) == gkd
