"""Canaries and their exposure (Carlini et al., "The Secret Sharer", 2019).

A canary is a sentence with a random secret, e.g. "my secret code is 4 8 2 9 1 3", inserted into the training data a
chosen number of times. After training, the secret is ranked among random candidates of the same shape by the
model's log-perplexity of the whole sentence (lower is more likely). Exposure is

    exposure = log2(num_candidates) - log2(rank)

so a secret the model ranks first among 1,024 candidates has exposure 10 and a secret ranked in the middle has about
1. The candidate space (all digit strings of the secret's length) is too large to score, so the rank is taken among
`num_candidates - 1` random other secrets plus the true one (the sampling estimate of the paper's Section 4).
Ties count against the secret (rank = 1 + candidates scoring at least as well), so a model that cannot tell
secrets apart gets exposure near 0, never a flattering one.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from ..errors import BenchmarkInputError
from ..generation import model_device, pad_token_id_of

__all__ = ["Canary", "CanaryExposure", "canary_exposure", "insert_canaries", "make_canaries", "sequence_nll"]

DEFAULT_TEMPLATE = "my secret code is {secret}"


@dataclass(frozen=True)
class Canary:
    """A secret inserted `repetitions` times: `template.format(secret=secret)` is the text trained on.

    Args:
        secret (`str`): space-separated random digits, e.g. `"4 8 2 9 1 3"` (spaces keep one digit per token in
            most tokenizers, so every secret has the same number of tokens).
        repetitions (`int`): how often the canary was inserted into the training data.
        template (`str`): the sentence around the secret; must contain `{secret}`.
    """

    secret: str
    repetitions: int
    template: str = DEFAULT_TEMPLATE

    @property
    def text(self) -> str:
        return self.template.format(secret=self.secret)

    @property
    def num_digits(self) -> int:
        return len(self.secret.split())


@dataclass
class CanaryExposure:
    """One canary's exposure under one model.

    Args:
        secret (`str`), repetitions (`int`): the canary.
        rank (`int`): 1 + candidates whose log-perplexity is at most the secret's.
        num_candidates (`int`): candidates ranked, the true secret included.
        exposure (`float`): `log2(num_candidates) - log2(rank)`, between 0 and `log2(num_candidates)`.
        secret_nll (`float`): the canary's negative log-likelihood in nats (sum over its tokens).
    """

    secret: str
    repetitions: int
    rank: int
    num_candidates: int
    exposure: float
    secret_nll: float


def _random_secret(rng: random.Random, num_digits: int) -> str:
    return " ".join(str(rng.randrange(10)) for _ in range(num_digits))


def make_canaries(
    repetitions: Sequence[int], *, num_digits: int = 6, seed: int = 0, template: str = DEFAULT_TEMPLATE
) -> list[Canary]:
    """One canary per entry of `repetitions` (e.g. `(1, 10, 100)`), each with its own random secret."""
    if "{secret}" not in template:
        raise BenchmarkInputError(f"Canary `template` {template!r} has no `{{secret}}` field: add one.")
    if num_digits < 1 or not repetitions or any(int(r) < 1 for r in repetitions):
        raise BenchmarkInputError(
            f"Canaries need num_digits >= 1 and repetitions >= 1 each, got num_digits={num_digits}, "
            f"repetitions={list(repetitions)}; e.g. make_canaries((1, 10, 100))."
        )
    rng = random.Random(seed)
    secrets: list[str] = []
    while len(secrets) < len(repetitions):
        secret = _random_secret(rng, num_digits)
        if secret not in secrets:  # a list, not a set: the order must not depend on string hashing
            secrets.append(secret)
    return [Canary(s, int(r), template) for s, r in zip(secrets, repetitions, strict=True)]


def _canary_columns(canary: Canary, column: str, prompt_column: str | None) -> dict[str, str]:
    """`{column: text}`, or with `prompt_column` the text before the secret as the prompt and the rest (the secret
    with its leading space) as `column`, so prompt/completion data trains on the secret as an answer."""
    if prompt_column is None:
        return {column: canary.text}
    prompt = canary.template.split("{secret}")[0].rstrip()
    return {prompt_column: prompt, column: canary.text[len(prompt):]}


def insert_canaries(
    rows: Sequence[Mapping[str, Any]], canaries: Sequence[Canary], *, column: str = "text",
    prompt_column: str | None = None, seed: int = 0,
) -> list[dict[str, Any]]:
    """The training rows plus `canary.repetitions` canary rows per canary, shuffled with `seed`. Other columns of the
    new rows are copied from a random existing row, so the result keeps one schema. For prompt/completion data pass
    `column="completion", prompt_column="prompt"`: the sentence is split at the secret."""
    rows = [dict(r) for r in rows]
    missing = [c for c in (column, prompt_column) if c is not None and (not rows or c not in rows[0])]
    if missing:
        raise BenchmarkInputError(
            f"insert_canaries: column {missing[0]!r} not in the rows ({sorted(rows[0]) if rows else 'no rows'}); "
            "pass `column=` (and `prompt_column=`) naming the text columns the canary goes into."
        )
    rng = random.Random(seed)
    added = [{**rng.choice(rows), **_canary_columns(c, column, prompt_column)}
             for c in canaries for _ in range(c.repetitions)]
    merged = rows + added
    rng.shuffle(merged)
    return merged


@torch.no_grad()
def sequence_nll(
    model: nn.Module, tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], *, batch_size: int = 64
) -> list[float]:
    """Negative log-likelihood in nats of each text (every token after the first, given those before), in float32
    logits' log-softmax, batched with right padding."""
    device, pad = model_device(model), pad_token_id_of(tokenizer)
    encoded = [tokenizer(t)["input_ids"] for t in texts]
    scores: list[float] = []
    for start in range(0, len(encoded), batch_size):
        chunk = encoded[start : start + batch_size]
        longest = max(len(ids) for ids in chunk)
        input_ids = torch.full((len(chunk), longest), pad, dtype=torch.long)
        mask = torch.zeros_like(input_ids)
        for row, ids in enumerate(chunk):
            input_ids[row, : len(ids)] = torch.as_tensor(ids)
            mask[row, : len(ids)] = 1
        logits = model(input_ids=input_ids.to(device), attention_mask=mask.to(device)).logits.float()
        log_probs = torch.log_softmax(logits[:, :-1], dim=-1)
        targets = input_ids[:, 1:].to(device)
        picked = log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1) * mask[:, 1:].to(device)
        scores += (-picked.sum(dim=1)).tolist()
    return scores


def _candidates(canary: Canary, num_candidates: int, seed: int) -> list[str]:
    """`num_candidates - 1` distinct random secrets of the canary's shape, never the secret itself."""
    space = 10**canary.num_digits
    if num_candidates > space:
        raise BenchmarkInputError(
            f"`num_candidates`={num_candidates} exceeds the {space} secrets of {canary.num_digits} digits: lower it "
            "or use longer secrets."
        )
    rng = random.Random(f"{seed}:{canary.secret}")
    others: set[str] = set()
    while len(others) < num_candidates - 1:
        other = _random_secret(rng, canary.num_digits)
        if other != canary.secret:
            others.add(other)
    return sorted(others)


def canary_exposure(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    canary: Canary,
    *,
    num_candidates: int = 1024,
    seed: int = 0,
    candidates: Sequence[str] | None = None,
    batch_size: int = 64,
) -> CanaryExposure:
    """Exposure of `canary` under `model`: its rank among `num_candidates` secrets (itself included).

    Args:
        candidates (`Sequence[str]`, *optional*): the other secrets to rank against; drawn with `seed` when None.
    """
    others = list(candidates) if candidates is not None else _candidates(canary, num_candidates, seed)
    texts = [canary.text] + [canary.template.format(secret=s) for s in others]
    nll = sequence_nll(model, tokenizer, texts, batch_size=batch_size)
    rank = 1 + sum(other <= nll[0] for other in nll[1:])
    total = len(texts)
    return CanaryExposure(
        secret=canary.secret, repetitions=canary.repetitions, rank=rank, num_candidates=total,
        exposure=math.log2(total) - math.log2(rank), secret_nll=nll[0],
    )
