"""Greedy generation from token ids, batched with left padding: the one code path that both the task metrics
(what the models write) and the latency measurements (how fast they write it) go through."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from transformers import GenerationConfig, LogitsProcessor, PreTrainedTokenizerBase

__all__ = ["generate_batch", "left_pad", "model_device", "pad_token_id_of", "stop_token_ids"]


def model_device(model: nn.Module) -> torch.device:
    """Where the model's inputs go: the device of its input embeddings (first shard of a `device_map` model)."""
    try:
        return model.get_input_embeddings().weight.device
    except (AttributeError, NotImplementedError):
        return next(model.parameters()).device


def stop_token_ids(model: nn.Module, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """End-of-sequence ids: the model's generation config (chat models list their end-of-turn token there) plus the
    tokenizer's EOS."""
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = [configured] if isinstance(configured, int) else list(configured or [])
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


def pad_token_id_of(tokenizer: PreTrainedTokenizerBase) -> int:
    if tokenizer.pad_token_id is not None:
        return tokenizer.pad_token_id
    if tokenizer.eos_token_id is not None:
        return tokenizer.eos_token_id
    return 0  # any id works: padded positions are masked out


def left_pad(sequences: Sequence[Sequence[int]], pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`(input_ids, attention_mask)`, both `(batch, longest)`, padded on the left as decoder-only generation needs."""
    longest = max(len(ids) for ids in sequences)
    input_ids = torch.full((len(sequences), longest), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), longest), dtype=torch.long)
    for row, ids in enumerate(sequences):
        if ids:
            input_ids[row, longest - len(ids) :] = torch.as_tensor(ids, dtype=torch.long)
            attention_mask[row, longest - len(ids) :] = 1
    return input_ids, attention_mask


@torch.no_grad()
def generate_batch(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    min_new_tokens: int = 0,
    logits_processor: Sequence[LogitsProcessor] = (),
) -> list[list[int]]:
    """Greedy completions of `prompts` (token ids), one list of new token ids per prompt, cut at the first stop token.

    Args:
        min_new_tokens (`int`, *optional*, defaults to `0`): forbid stopping before this many tokens; latency runs set
            it to `max_new_tokens` so every run writes the same number of tokens.
        logits_processor (*optional*): extra processors, e.g. a clock that stamps the time of each decoding step.
    """
    pad_token_id = pad_token_id_of(tokenizer)
    input_ids, attention_mask = left_pad(prompts, pad_token_id)
    device = model_device(model)
    stop_ids = stop_token_ids(model, tokenizer)
    config = GenerationConfig(
        max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens, do_sample=False, num_beams=1,
        pad_token_id=pad_token_id, eos_token_id=stop_ids or None, use_cache=True,
    )
    output = model.generate(
        input_ids=input_ids.to(device), attention_mask=attention_mask.to(device), generation_config=config,
        logits_processor=list(logits_processor),
    )
    completions = []
    for row in output[:, input_ids.shape[1] :].tolist():
        cut = next((i for i, token in enumerate(row) if token in stop_ids), len(row))
        completions.append(row[:cut])
    return completions
