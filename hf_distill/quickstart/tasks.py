"""The quickstart's task dataset: short instructions with checkable answers, generated deterministically.

Every word and rule below is written for this project (no third-party data, so the dataset is `cc0-1.0`). Most
prompts accept several answers ("name a fruit other than apple"); the dataset keeps ONE sampled answer per row, drawn
from a fixed, uneven popularity. A teacher trained on many rows learns the whole answer distribution; a student
trained on the rows alone sees one label at a time. That gap is what logit distillation closes.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from datasets import Dataset, DatasetDict

from .errors import QuickstartError

__all__ = ["TASKS", "TaskExample", "answer_is_valid", "build_task_dataset", "extract_answer"]

DATASET_LICENSE = "cc0-1.0"

# Members are listed from most to least popular: answers are drawn with weights 1/(rank+1).
CATEGORIES = {
    "fruit": ("apple", "banana", "pear", "grape", "plum", "cherry", "lemon", "peach"),
    "animal": ("dog", "cat", "horse", "cow", "sheep", "goat", "duck", "mouse"),
    "colour": ("red", "blue", "green", "yellow", "black", "white", "pink", "brown"),
    "tool": ("hammer", "saw", "drill", "wrench", "shovel", "rake", "axe", "chisel"),
    "vehicle": ("car", "bus", "bike", "train", "truck", "boat", "plane", "tram"),
    "drink": ("water", "tea", "coffee", "milk", "juice", "soda", "cocoa", "cider"),
}
_ASK = ("name", "give me", "say", "tell me")
_WORDS = tuple(sorted({word for members in CATEGORIES.values() for word in members}))


@dataclass(frozen=True)
class TaskExample:
    """One generated row: the task name, the prompt, every valid answer, and the answer sampled for the dataset."""

    task: str
    prompt: str
    valid_answers: tuple[str, ...]
    answer: str


def _popular(rng: random.Random, options: tuple[str, ...]) -> str:
    return rng.choices(options, weights=[1.0 / (rank + 1) for rank in range(len(options))])[0]


def _category_other_than(rng: random.Random) -> tuple[str, tuple[str, ...], str]:
    category = rng.choice(sorted(CATEGORIES))
    excluded = rng.choice(CATEGORIES[category])
    valid = tuple(m for m in CATEGORIES[category] if m != excluded)
    article = "an" if category[0] in "aeiou" else "a"
    return f"{rng.choice(_ASK)} {article} {category} other than {excluded}", valid, _popular(rng, valid)


def _number_between(rng: random.Random) -> tuple[str, tuple[str, ...], str]:
    low = rng.randint(0, 40)
    high = low + rng.randint(3, 6)
    kind, parity = rng.choice((("a number", None), ("an even number", 0), ("an odd number", 1)))
    # A gap of 3 or more always holds at least one even and one odd number.
    valid = tuple(str(n) for n in range(low + 1, high) if parity is None or n % 2 == parity)
    return f"name {kind} between {low} and {high}", valid, rng.choice(valid)


def _letter_of(rng: random.Random) -> tuple[str, tuple[str, ...], str]:
    word = rng.choice(_WORDS)
    valid = tuple(sorted(set(word)))
    return f"name a letter of {word}", valid, rng.choice(valid)


def _addition(rng: random.Random) -> tuple[str, tuple[str, ...], str]:
    a, b = rng.randint(0, 20), rng.randint(0, 20)
    return f"what is {a} plus {b}", (str(a + b),), str(a + b)


def _first_letter(rng: random.Random) -> tuple[str, tuple[str, ...], str]:
    word = rng.choice(_WORDS)
    return f"what is the first letter of {word}", (word[0],), word[0]


def _category_of(rng: random.Random) -> tuple[str, tuple[str, ...], str]:
    category = rng.choice(sorted(CATEGORIES))
    word = rng.choice(CATEGORIES[category])
    return f"what kind of thing is {word}", (category,), category


#: task name -> generator of (prompt, valid answers, sampled answer); multi-answer tasks first.
TASKS: dict[str, Callable[[random.Random], tuple[str, tuple[str, ...], str]]] = {
    "category_other_than": _category_other_than,
    "number_between": _number_between,
    "letter_of": _letter_of,
    "addition": _addition,
    "first_letter": _first_letter,
    "category_of": _category_of,
}
_TASK_WEIGHTS = (3, 3, 2, 2, 1, 1)


def format_prompt(instruction: str) -> str:
    """The prompt text the models see: `Q: <instruction>\\nA:`; the completion is ` <answer>`."""
    return f"Q: {instruction}\nA:"


def _held_out(prompt: str, test_fraction: float) -> bool:
    # A stable hash of the prompt decides its split, so no held-out prompt is ever trained on.
    return zlib.crc32(prompt.encode()) % 1000 < test_fraction * 1000


def _sample(rng: random.Random, *, test: bool, test_fraction: float) -> TaskExample:
    while True:
        task = rng.choices(list(TASKS), weights=_TASK_WEIGHTS)[0]
        instruction, valid, answer = TASKS[task](rng)
        prompt = format_prompt(instruction)
        if _held_out(prompt, test_fraction) == test:
            return TaskExample(task=task, prompt=prompt, valid_answers=valid, answer=answer)


def build_task_dataset(
    num_train: int = 6000, num_test: int = 300, *, seed: int = 0, test_fraction: float = 0.1
) -> DatasetDict:
    """The quickstart dataset in TRL prompt/completion format, with `train` and held-out `test` splits.

    Args:
        num_train (`int`, defaults to `6000`): rows of the train split (prompts repeat, answers vary).
        num_test (`int`, defaults to `300`): rows of the test split; its prompts never occur in train.
        seed (`int`, defaults to `0`): the same seed gives the same dataset, byte for byte.
        test_fraction (`float`, defaults to `0.1`): share of all possible prompts reserved for the test split.

    Returns:
        `datasets.DatasetDict` with columns `prompt`, `completion` (` <answer>`), `valid_answers` (list of str) and
        `task`.

    Example:

    ```python
    >>> from hf_distill.quickstart.tasks import build_task_dataset
    >>> data = build_task_dataset(num_train=100, num_test=10)
    >>> sorted(data["train"].column_names)
    ['completion', 'prompt', 'task', 'valid_answers']
    ```
    """
    if num_train < 1 or num_test < 1:
        raise QuickstartError(f"num_train ({num_train}) and num_test ({num_test}) must both be >= 1.")
    if not 0.0 < test_fraction < 1.0:
        raise QuickstartError(f"test_fraction is {test_fraction}; it must be in (0, 1), e.g. 0.1.")
    rng = random.Random(seed)
    splits = {}
    for split, size in (("train", num_train), ("test", num_test)):
        rows = [_sample(rng, test=split == "test", test_fraction=test_fraction) for _ in range(size)]
        splits[split] = Dataset.from_dict(
            {
                "prompt": [row.prompt for row in rows],
                "completion": [f" {row.answer}" for row in rows],
                "valid_answers": [list(row.valid_answers) for row in rows],
                "task": [row.task for row in rows],
            }
        )
    return DatasetDict(splits)


def extract_answer(generated: str) -> str:
    """The answer in a generated completion: its first line, stripped of spaces and a final full stop."""
    return generated.strip().split("\n")[0].strip().rstrip(".").strip()


def answer_is_valid(generated: str, valid_answers: list[str] | tuple[str, ...]) -> bool:
    """Whether a generated completion answers the prompt with one of its valid answers."""
    return extract_answer(generated) in set(valid_answers)
