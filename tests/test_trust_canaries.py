"""Canary exposure (Carlini et al.): pinned against an independent float64 scoring, and shown to separate a model
that memorised the canary from one that never saw it."""

from __future__ import annotations

import math
import random

import pytest
import torch

from hf_distill.benchmark import BenchmarkInputError
from hf_distill.benchmark.trust.canaries import Canary, canary_exposure, insert_canaries, make_canaries
from tests.tiny import CORPUS, ModelFactory, build_tokenizer

DIGITS = [" ".join(str(d) for d in range(10))] * 5 + ["my secret code is 0 1 2 3 4 5 6 7 8 9"]


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer(seed_words=DIGITS)


def _nll_float64(model, tokenizer, text: str) -> float:
    """-sum log p(token_i | tokens_<i) from plain `model(...).logits`, one unpadded sequence, in float64."""
    ids = torch.tensor([tokenizer(text)["input_ids"]])
    with torch.no_grad():
        logits = model(input_ids=ids).logits.double()
    log_probs = torch.log_softmax(logits[0, :-1], dim=-1)
    return -float(log_probs.gather(-1, ids[0, 1:, None]).sum())


def test_exposure_equals_an_independent_computation(tokenizer):
    model = ModelFactory(tokenizer)("llama", seed=3).eval()
    canary = Canary(secret="4 0 7 1 9", repetitions=1)
    rng = random.Random(11)
    others = sorted({" ".join(str(rng.randrange(10)) for _ in range(5)) for _ in range(80)} - {canary.secret})
    result = canary_exposure(model, tokenizer, canary, candidates=others, batch_size=7)  # padding across batches

    secret = _nll_float64(model, tokenizer, canary.text)
    scores = [_nll_float64(model, tokenizer, canary.template.format(secret=s)) for s in others]
    rank = 1 + sum(score <= secret for score in scores)
    assert result.num_candidates == len(others) + 1
    assert result.secret_nll == pytest.approx(secret, rel=1e-5)
    assert result.rank == rank
    assert result.exposure == pytest.approx(math.log2(len(others) + 1) - math.log2(rank))


def _memorise(model, tokenizer, text: str, steps: int = 80) -> None:
    """Train on the canary among ordinary rows until the model has seen it `steps` times."""
    rows = [text] + CORPUS[:7]
    batch = tokenizer(rows, return_tensors="pt", padding=True)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        loss = model(**batch, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()


def test_memorised_canary_has_high_exposure_and_unseen_one_does_not(tokenizer):
    canary = make_canaries((100,), num_digits=6, seed=5)[0]
    untrained = ModelFactory(tokenizer)("llama", hidden=32, seed=0)
    before = canary_exposure(untrained, tokenizer, canary, num_candidates=512, seed=1)
    trained = ModelFactory(tokenizer)("llama", hidden=32, seed=0)
    _memorise(trained, tokenizer, canary.text)
    after = canary_exposure(trained, tokenizer, canary, num_candidates=512, seed=1)
    assert after.rank == 1 and after.exposure == pytest.approx(9.0)  # log2(512): ranked first of all candidates
    assert before.exposure < 4.0  # a model that never saw the secret ranks it like any other


def test_make_and_insert_canaries_are_seeded_and_counted():
    canaries = make_canaries((1, 10, 100), seed=2)
    assert canaries == make_canaries((1, 10, 100), seed=2)
    assert len({c.secret for c in canaries}) == 3 and [c.repetitions for c in canaries] == [1, 10, 100]
    rows = [{"text": t, "source": "corpus"} for t in CORPUS[:20]]
    merged = insert_canaries(rows, canaries, seed=0)
    assert len(merged) == 20 + 111
    for canary in canaries:
        assert sum(r["text"] == canary.text for r in merged) == canary.repetitions
    assert merged == insert_canaries(rows, canaries, seed=0)
    assert all(set(r) == {"text", "source"} for r in merged)
    pairs = insert_canaries([{"prompt": "Q: hi\nA:", "completion": " yo"}], canaries[:1], column="completion",
                            prompt_column="prompt")
    assert {"prompt": "my secret code is", "completion": " " + canaries[0].secret} in pairs


def test_canary_errors_name_the_field():
    with pytest.raises(BenchmarkInputError, match=r"no `\{secret\}` field"):
        make_canaries((1,), template="my code")
    with pytest.raises(BenchmarkInputError, match="column 'completion' not in the rows"):
        insert_canaries([{"text": "a"}], make_canaries((1,)), column="completion")
