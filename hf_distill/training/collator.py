"""`DistillationCollator`: TRL's language-modelling collator plus the per-token teacher columns of cached datasets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

from ..formats.cache import CachedDatasetError

__all__ = ["DistillationCollator"]


@dataclass
class DistillationCollator(DataCollatorForLanguageModeling):
    """Pads `input_ids`, `labels` and the attention mask exactly as TRL's `DataCollatorForLanguageModeling`, and pads
    each per-token teacher column along the sequence axis. Padding-free batches also get `example_lengths`
    `(num_examples,)`, the tokens of each example in their one row.

    Args:
        pad_token_id (`int`): token id used for padding.
        teacher_columns (`dict[str, float | int]`, *optional*):
            Per-token columns to carry (e.g. cached top-k teacher ids and log-probabilities), mapped to their padding
            value. Row `i` of a column holds one entry (a scalar or a list, such as the k ids) per token of
            `input_ids`; the batch tensor is `(batch, seq, ...)`.
        sequence_columns (`dict[str, int]`, *optional*):
            Columns of their own length per row (a cross-tokenizer teacher's token ids, its matched positions), mapped
            to their padding value; each is padded to its longest row in the batch, `(batch, longest)`.

    Example:

    ```python
    >>> collator = DistillationCollator(pad_token_id=0, teacher_columns={"teacher_topk_ids": 0})
    >>> batch = collator([
    ...     {"input_ids": [1, 2, 3], "teacher_topk_ids": [[1, 2], [2, 3], [3, 4]]},
    ...     {"input_ids": [4, 5], "teacher_topk_ids": [[4, 5], [5, 6]]},
    ... ])
    >>> batch["teacher_topk_ids"].shape
    torch.Size([2, 3, 2])
    ```
    """

    teacher_columns: dict[str, float | int] = field(default_factory=dict)
    sequence_columns: dict[str, int] = field(default_factory=dict)

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        if self.teacher_columns and self.padding_free:
            raise CachedDatasetError(
                "Cached teacher columns cannot be collated padding-free. Set `padding_free=False` in the "
                "DistillationConfig (--padding_free false)."
            )
        output = super().torch_call(examples)
        if self.padding_free:  # one row holds every example: keep where each ends (packed ones hold several documents)
            output["example_lengths"] = torch.tensor([len(example["input_ids"]) for example in examples])
        seq_len = output["input_ids"].shape[1]
        for column, pad_value in self.teacher_columns.items():
            output[column] = self._pad_column(examples, column, pad_value, seq_len)
        for column, pad_value in self.sequence_columns.items():
            rows = [torch.as_tensor(example[column], dtype=torch.long) for example in examples]
            output[column] = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=pad_value)
        return output

    @staticmethod
    def _pad_column(examples, column: str, pad_value, seq_len: int) -> torch.Tensor:
        rows = []
        for index, example in enumerate(examples):
            value = torch.as_tensor(example[column])
            if value.shape[0] != len(example["input_ids"]):
                raise CachedDatasetError(
                    f"Column {column!r} of batch row {index} has {value.shape[0]} entries but `input_ids` has "
                    f"{len(example['input_ids'])}: cached teacher columns need one entry per token. Re-create the "
                    "cache with the same tokenizer and `max_length` as training."
                )
            rows.append(value)
        padded = torch.full((len(rows), seq_len, *rows[0].shape[1:]), pad_value, dtype=rows[0].dtype)
        for i, value in enumerate(rows):
            padded[i, : value.shape[0]] = value
        return padded
