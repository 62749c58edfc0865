"""Held-out examples: read a TRL prompt/completion or messages dataset, check it before any model is loaded, and
tokenize it the way `trl.SFTTrainer` does (so the cross-entropy here is the one training reported).

Formats (TRL's):
- prompt/completion, standard: `{"prompt": str, "completion": str}`; EOS is appended to the completion.
- prompt/completion, conversational: `{"prompt": [messages], "completion": [messages]}`.
- messages: `{"messages": [...]}`; the last message must be the assistant's: it is the completion, the conversation
  before it the prompt (rendered with the chat template and `add_generation_prompt=True`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from transformers import PreTrainedTokenizerBase
from trl.data_utils import common_prefix_length

from .errors import BenchmarkInputError

__all__ = [
    "EncodedExample", "EvalExample", "check_chat_template", "dataset_format", "encode_examples", "read_examples",
]

_FIX = (
    "Pass a held-out dataset in a TRL format: columns `prompt` and `completion` (strings or message lists), "
    "or a `messages` column whose last message is the assistant's."
)


@dataclass(frozen=True)
class EvalExample:
    """One held-out example.

    Args:
        prompt (`str` or `list[dict]`): the prompt text, or the conversation before the answer.
        completion (`str` or `list[dict]`): the reference completion text, or the assistant message(s).
        reference (`str`): the text generated completions are scored against (the assistant's content for
            conversations).
    """

    prompt: str | list[dict[str, Any]]
    completion: str | list[dict[str, Any]]
    reference: str

    @property
    def is_conversational(self) -> bool:
        return isinstance(self.prompt, list)


@dataclass(frozen=True)
class EncodedExample:
    """An example tokenized for one tokenizer.

    Args:
        prompt_ids (`list[int]`): what generation starts from (with the generation prompt for conversations).
        input_ids (`list[int]`): prompt and completion, as teacher-forced scoring reads them.
        completion_start (`int`): index in `input_ids` of the first completion token.
    """

    prompt_ids: list[int]
    input_ids: list[int]
    completion_start: int


def _columns(dataset: Any) -> list[str]:
    names = getattr(dataset, "column_names", None)
    if names is None and isinstance(dataset, Sequence) and dataset and isinstance(dataset[0], Mapping):
        names = list(dataset[0].keys())
    if isinstance(names, Mapping):
        raise BenchmarkInputError(
            f"`dataset` is a DatasetDict with splits {list(names)}: pass one split, e.g. `dataset['test']`."
        )
    return list(names or [])


def _content(messages: list[dict[str, Any]]) -> str:
    return "".join(str(m.get("content") or "") for m in messages).strip()


def _from_row(row: Mapping[str, Any], index: int) -> EvalExample:
    if "messages" in row and not ("prompt" in row and "completion" in row):  # TRL prefers prompt/completion too
        messages = row["messages"]
        if not messages or messages[-1].get("role") != "assistant":
            last = messages[-1].get("role") if messages else None
            raise BenchmarkInputError(
                f"Row {index} of `dataset`: the last message has role {last!r}; benchmarking needs the assistant's "
                "answer last (it is the reference the generated completion is scored against)."
            )
        return EvalExample(prompt=list(messages[:-1]), completion=[messages[-1]], reference=_content([messages[-1]]))
    prompt, completion = row["prompt"], row["completion"]
    if isinstance(prompt, str) and isinstance(completion, str):
        return EvalExample(prompt=prompt, completion=completion, reference=completion.strip())
    if isinstance(prompt, list) and isinstance(completion, list):
        return EvalExample(prompt=list(prompt), completion=list(completion), reference=_content(completion))
    raise BenchmarkInputError(
        f"Row {index} of `dataset` mixes formats: prompt is {type(prompt).__name__}, completion is "
        f"{type(completion).__name__}. Both must be strings, or both lists of messages."
    )


def read_examples(dataset: Iterable[Mapping[str, Any]] | None, *, max_samples: int | None = None) -> list[EvalExample]:
    """Check `dataset` (a `datasets.Dataset` or a list of dicts) and return its first `max_samples` examples.

    Raises:
        [`BenchmarkInputError`]: no dataset, no rows, or neither `prompt`/`completion` nor `messages` columns.
    """
    if dataset is None:
        raise BenchmarkInputError(f"`dataset` is None: the benchmark needs held-out examples. {_FIX}")
    columns = _columns(dataset)
    if not {"prompt", "completion"} <= set(columns) and "messages" not in columns:
        hint = " (a `text` dataset has no reference completions to score)" if "text" in columns else ""
        raise BenchmarkInputError(f"`dataset` has columns {columns}{hint}. {_FIX}")
    if max_samples is not None and max_samples < 1:
        raise BenchmarkInputError(f"`max_samples` must be at least 1 (or None for every row), got {max_samples}.")
    examples = []
    for index, row in enumerate(dataset):
        if max_samples is not None and index >= max_samples:
            break
        examples.append(_from_row(row, index))
    if not examples:
        raise BenchmarkInputError(f"`dataset` has no rows. {_FIX}")
    return examples


def dataset_format(dataset: Any, examples: Sequence[EvalExample]) -> str:
    """TRL's name of the format `read_examples` found: `messages`, `conversational_prompt_completion` or
    `prompt_completion`."""
    if "messages" in _columns(dataset) and not {"prompt", "completion"} <= set(_columns(dataset)):
        return "messages"
    return "conversational_prompt_completion" if examples[0].is_conversational else "prompt_completion"


def _chat_ids(tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, Any]], **kwargs) -> list[int]:
    encoded = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True, **kwargs)
    return list(encoded["input_ids"])


def check_chat_template(examples: Sequence[EvalExample], tokenizer: PreTrainedTokenizerBase, role: str) -> None:
    """Conversations need a chat template: say so before any model is loaded."""
    if any(e.is_conversational for e in examples) and tokenizer.chat_template is None:
        raise BenchmarkInputError(
            f"The {role}'s tokenizer has no chat template, but `dataset` is conversational. Set "
            "`tokenizer.chat_template`, pass a tokenizer that has one, or use a standard prompt/completion dataset."
        )


def encode_examples(examples: Sequence[EvalExample], tokenizer: PreTrainedTokenizerBase) -> list[EncodedExample]:
    """Tokenize like `trl.SFTTrainer`: the completion starts where the tokenized prompt and prompt + completion
    diverge; a standard completion gets EOS appended."""
    encoded = []
    for example in examples:
        if example.is_conversational:
            prompt_ids = _chat_ids(tokenizer, example.prompt, add_generation_prompt=True)
            input_ids = _chat_ids(tokenizer, example.prompt + example.completion)
        else:
            completion = example.completion
            if tokenizer.eos_token and not completion.endswith(tokenizer.eos_token):
                completion = completion + tokenizer.eos_token
            prompt_ids = list(tokenizer(example.prompt)["input_ids"])
            input_ids = list(tokenizer(example.prompt + completion)["input_ids"])
        start = common_prefix_length(prompt_ids, input_ids)
        encoded.append(EncodedExample(prompt_ids=prompt_ids, input_ids=input_ids, completion_start=start))
    return encoded
