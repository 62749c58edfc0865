"""Tokenize a dataset exactly as `trl.SFTTrainer` does, so cached teacher logits line up with training.

This follows `SFTTrainer._prepare_dataset` (TRL 1.16) step by step, with TRL's own helpers: ShareGPT rows are
converted to ChatML, an EOS token is appended to non-conversational text and completions, prompt/completion rows are
tokenized as prompt + completion with the completion starting where the tokenized prompt stops being a prefix
(`completion_mask`), and conversations go through the chat template. `tests/test_logit_cache.py` pins the result to
a real `SFTTrainer` for every TRL dataset format.
"""

from __future__ import annotations

import json

from datasets import Dataset
from trl.data_utils import (
    _tokenize,
    common_prefix_length,
    is_conversational,
    is_conversational_from_value,
    maybe_convert_to_chatml,
)

from ..errors import HfDistillError

__all__ = ["DatasetFormatError", "tokenize_like_sft"]


class DatasetFormatError(HfDistillError, ValueError):
    """The dataset is in none of the formats the operation accepts."""


def tokenize_like_sft(
    dataset: Dataset,
    tokenizer,
    *,
    max_length: int | None = None,
    dataset_text_field: str = "text",
    num_proc: int | None = None,
) -> Dataset:
    """`input_ids` and `completion_mask` for every row, as `SFTTrainer` builds them (other columns are dropped).

    Args:
        dataset (`Dataset`): in a TRL format: `text`, `prompt`/`completion` (plain or conversational) or `messages`.
        tokenizer: the tokenizer (its chat template is used for conversational rows).
        max_length (`int`, *optional*): keep the first `max_length` tokens (TRL's `truncation_mode="keep_start"`).
        dataset_text_field (`str`, *optional*, defaults to `"text"`): the text column of language-modelling data.

    Returns:
        `Dataset` with `input_ids` `(seq,)` and `completion_mask` `(seq,)`: 1 on completion tokens, and on every
        token of text and messages rows (which `SFTTrainer` trains on whole by default).
    """
    columns = dataset.column_names
    names = set(columns)
    if not ({"prompt", "completion"} <= names or {"messages", "conversations", dataset_text_field} & names):
        raise DatasetFormatError(
            f"The dataset has columns {columns}, none of the TRL formats: `{dataset_text_field}`, `prompt` + "
            "`completion`, or `messages`. Rename its columns (`dataset.rename_column(...)`)."
        )
    if is_conversational_from_value(dataset[0]):
        dataset = dataset.map(
            maybe_convert_to_chatml, remove_columns="conversations" if "conversations" in columns else None
        )
    return dataset.map(
        _tokenize_row,
        fn_kwargs={"tokenizer": tokenizer, "text_field": dataset_text_field, "max_length": max_length},
        remove_columns=dataset.column_names,
        num_proc=num_proc,
        desc="Tokenizing as SFTTrainer",
    )


def _tokenize_row(example: dict, tokenizer, text_field: str, max_length: int | None) -> dict:
    tools = example.get("tools")
    template_kwargs = {
        "tools": json.loads(tools) if isinstance(tools, str) else tools,
        **(example.get("chat_template_kwargs") or {}),
    }
    if "prompt" in example:
        input_ids, completion_mask = _prompt_completion_ids(example, tokenizer, template_kwargs)
    elif is_conversational(example):
        input_ids = _tokenize(tokenizer, example["messages"], **template_kwargs)["input_ids"]
        completion_mask = [1] * len(input_ids)
    else:
        input_ids = _tokenize(tokenizer, _with_eos(example[text_field], tokenizer))["input_ids"]
        completion_mask = [1] * len(input_ids)
    if max_length is not None:
        input_ids, completion_mask = input_ids[:max_length], completion_mask[:max_length]
    return {"input_ids": input_ids, "completion_mask": completion_mask}


def _prompt_completion_ids(example: dict, tokenizer, template_kwargs: dict) -> tuple[list[int], list[int]]:
    if is_conversational(example):
        prompt_ids = _tokenize(tokenizer, example["prompt"], add_generation_prompt=True, **template_kwargs)
        full_ids = _tokenize(tokenizer, example["prompt"] + example["completion"], **template_kwargs)
    else:
        prompt_ids = _tokenize(tokenizer, example["prompt"])
        full_ids = _tokenize(tokenizer, example["prompt"] + _with_eos(example["completion"], tokenizer))
    prompt_len = common_prefix_length(prompt_ids["input_ids"], full_ids["input_ids"])
    full = full_ids["input_ids"]
    return full, [0] * prompt_len + [1] * (len(full) - prompt_len)


def _with_eos(text: str, tokenizer) -> str:
    return text if text.endswith(tokenizer.eos_token) else text + tokenizer.eos_token
