"""Verbatim extraction: give the model the start of a training row and check whether its greedy continuation
reproduces the row's next `num_tokens` tokens exactly (the "discoverable memorisation" test of Carlini et al., 2023,
"Quantifying Memorization Across Neural Language Models")."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import nn
from transformers import PreTrainedTokenizerBase

from ..errors import BenchmarkInputError
from ..generation import generate_batch

__all__ = ["ExtractionResult", "verbatim_extraction"]


@dataclass
class ExtractionResult:
    """Args:
        prefix_tokens (`int`), num_tokens (`int`): prompt length and continuation length, in tokens.
        num_rows (`int`): rows given; `num_tested` of them were long enough (prefix + continuation tokens).
        num_extracted (`int`): greedy continuations equal to the next `num_tokens` tokens.
        extracted_share (`float` or None): `num_extracted / num_tested` (None when no row was long enough).
    """

    prefix_tokens: int
    num_tokens: int
    num_rows: int
    num_tested: int
    num_extracted: int
    extracted_share: float | None


def verbatim_extraction(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    *,
    prefix_tokens: int = 32,
    num_tokens: int = 50,
    batch_size: int = 8,
) -> tuple[ExtractionResult, list[str]]:
    """Share of `texts` (training rows) whose first `prefix_tokens` tokens make the model write the next
    `num_tokens` tokens exactly, greedily; returns the result and the decoded continuations (for the PII scan,
    never written to records). Rows shorter than `prefix_tokens + num_tokens` tokens are not tested."""
    if prefix_tokens < 1 or num_tokens < 1:
        raise BenchmarkInputError(
            f"Verbatim extraction needs prefix_tokens >= 1 and num_tokens >= 1, got {prefix_tokens} and "
            f"{num_tokens}; e.g. prefix_tokens=32, num_tokens=50."
        )
    encoded = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    long_enough = [ids for ids in encoded if len(ids) >= prefix_tokens + num_tokens]
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    extracted, continuations = 0, []
    for start in range(0, len(long_enough), batch_size):
        chunk = long_enough[start : start + batch_size]
        prompts = [bos + ids[:prefix_tokens] for ids in chunk]
        outputs = generate_batch(model, tokenizer, prompts, max_new_tokens=num_tokens)
        for ids, output in zip(chunk, outputs, strict=True):
            extracted += output[:num_tokens] == ids[prefix_tokens : prefix_tokens + num_tokens]
            continuations.append(tokenizer.decode(output, skip_special_tokens=True))
    tested = len(long_enough)
    result = ExtractionResult(
        prefix_tokens=prefix_tokens, num_tokens=num_tokens, num_rows=len(texts), num_tested=tested,
        num_extracted=int(extracted), extracted_share=extracted / tested if tested else None,
    )
    return result, continuations
