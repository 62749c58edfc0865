"""Alignment by text between two tokenizers (`hf_distill.alignment`), on tokenizers trained on the spot: a byte-level
BPE pair with different vocabularies and a SentencePiece-style one. The references are the tokenizers' own `decode`
and byte counts of the text, never the alignment's output."""

from __future__ import annotations

import pytest
from tokenizers import processors

from hf_distill.alignment import (
    AlignmentError,
    align_text,
    predicting_positions,
    shared_vocabulary,
    tokenize_with_offsets,
)
from tests import tiny

TEXTS = [
    "the cat sat on the mat",
    "  two   spaces\tand a tab\n\nnew lines  ",
    "emoji 🤗🤗 and CJK 日本語 mixed",
    "numbers 12345 and 3.14159 and 1000000",
    "",
]


@pytest.fixture(scope="module")
def sentencepiece_tokenizer():
    return tiny.build_sentencepiece_tokenizer()


@pytest.fixture(scope="module")
def digits_tokenizer():
    """Byte-level BPE that learnt whole numbers ("12345" is one token), where the others split digits."""
    corpus = [line + " 12345 3.14159 1000000" for line in tiny.CORPUS]
    return tiny.build_tokenizer(corpus=corpus, vocab_size=420)


def check_alignment(student_tokenizer, teacher_tokenizer, text):
    """Every token of each side is in exactly one span, in order, and at every span end both sides have read the
    same text (checked with each tokenizer's own `decode` of the prefix)."""
    alignment = align_text(student_tokenizer, teacher_tokenizer, text)
    student_ids = student_tokenizer(text, add_special_tokens=False)["input_ids"]
    teacher_ids = teacher_tokenizer(text, add_special_tokens=False)["input_ids"]
    assert list(alignment.student.ids) == student_ids and list(alignment.teacher.ids) == teacher_ids
    assert [i for span in alignment.spans for i in span.student] == list(range(len(student_ids)))
    assert [i for span in alignment.spans for i in span.teacher] == list(range(len(teacher_ids)))
    data = text.encode("utf-8")
    assert (alignment.spans[0].start if alignment.spans else 0) == 0
    assert (alignment.spans[-1].end if alignment.spans else 0) == len(data)
    for span in alignment.spans:
        try:
            prefix = data[: span.end].decode("utf-8")
        except UnicodeDecodeError:  # a cut inside a character that both split there alike: nothing to decode
            continue
        assert student_tokenizer.decode(student_ids[: span.student.stop]) == prefix
        assert teacher_tokenizer.decode(teacher_ids[: span.teacher.stop]) == prefix
    return alignment


@pytest.mark.parametrize("text", TEXTS)
def test_byte_level_pair_spans_cover_the_same_text(tokenizer, other_tokenizer, text):
    check_alignment(tokenizer, other_tokenizer, text)


@pytest.mark.parametrize("text", TEXTS)
def test_byte_level_against_sentencepiece_spans_cover_the_same_text(tokenizer, sentencepiece_tokenizer, text):
    check_alignment(tokenizer, sentencepiece_tokenizer, text)
    check_alignment(sentencepiece_tokenizer, tokenizer, text)


def test_numbers_split_differently_are_one_span(tokenizer, digits_tokenizer):
    text = "the sum is 12345"
    alignment = check_alignment(digits_tokenizer, tokenizer, text)
    digits = text.encode().index(b"12345")
    covering = [span for span in alignment.spans if span.start < digits + 5 and span.end > digits]
    assert len(covering) == 1, "the differently split number is one matched span"
    span = covering[0]
    student_tokens = [digits_tokenizer.decode([alignment.student.ids[i]]) for i in span.student]
    teacher_tokens = [tokenizer.decode([alignment.teacher.ids[i]]) for i in span.teacher]
    assert "".join(student_tokens) == "".join(teacher_tokens)
    assert len(student_tokens) < len(teacher_tokens)  # e.g. [" 12345"] against [" ", "1", "2", "3", "4", "5"]


def test_emoji_split_into_bytes_are_never_cut_inside_a_character(tokenizer, sentencepiece_tokenizer):
    text = "a 🤗 b"
    alignment = check_alignment(tokenizer, sentencepiece_tokenizer, text)
    emoji = text.encode().index("🤗".encode())
    for span in alignment.spans:  # a cut inside the emoji only where both tokenizations cut at that byte
        if emoji < span.end < emoji + 4:
            assert span.end in {alignment.student.ends[i] for i in span.student}
            assert span.end in {alignment.teacher.ends[i] for i in span.teacher}


def test_trimmed_offsets_fall_back_to_token_bytes():
    """Byte-level BPE with `trim_offsets=True` reports `world` at (6, 11) in "hello world", dropping the space its
    token carries: such offsets leave gaps, so tokens are read from their vocabulary bytes instead."""
    trimmed = tiny.build_tokenizer()
    trimmed.backend_tokenizer.post_processor = processors.ByteLevel(trim_offsets=True)
    text = "the cat  sat on the mat"
    offsets = trimmed(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    assert any(offsets[i][1] < offsets[i + 1][0] for i in range(len(offsets) - 1)), "the offsets have gaps"
    pieces = tokenize_with_offsets(trimmed, text)
    assert pieces.starts[0] == 0 and pieces.ends[-1] == len(text.encode())
    assert all(pieces.ends[i] == pieces.starts[i + 1] for i in range(len(pieces.ids) - 1))
    assert [text.encode()[s:e].decode() for s, e in zip(pieces.starts, pieces.ends, strict=True)] == [
        trimmed.decode([i]) for i in pieces.ids
    ]


def test_tokens_that_do_not_spell_the_text_are_refused():
    """A normalizer that changes the text (here: lowercasing) leaves no way to place the tokens, when there are no
    offsets to place them by."""
    from tokenizers import normalizers

    lowering = tiny.build_tokenizer()
    lowering.backend_tokenizer.normalizer = normalizers.Lowercase()
    lowering.backend_tokenizer.post_processor = processors.ByteLevel(trim_offsets=True)
    with pytest.raises(AlignmentError, match="byte for byte"):
        tokenize_with_offsets(lowering, "The Cat  Sat")


def test_shared_vocabulary_pairs_the_same_bytes(tokenizer, sentencepiece_tokenizer):
    student_ids, teacher_ids = shared_vocabulary(tokenizer, sentencepiece_tokenizer)
    assert len(student_ids) == len(set(student_ids)) and len(teacher_ids) == len(set(teacher_ids))
    pairs = dict(zip(student_ids, teacher_ids, strict=True))
    # `Ġcat` and `▁cat` both spell " cat"; the special tokens pair by name
    cat = tokenizer.convert_tokens_to_ids("Ġcat")
    assert sentencepiece_tokenizer.convert_ids_to_tokens(pairs[cat]) == "\u2581cat"
    assert pairs[tokenizer.eos_token_id] == sentencepiece_tokenizer.eos_token_id
    for student, teacher in pairs.items():  # every pair decodes alike in the two tokenizers' own decoders
        assert tokenizer.decode([student]) == sentencepiece_tokenizer.decode([teacher])


def test_a_tokenizer_shares_every_id_with_itself(tokenizer, sentencepiece_tokenizer):
    for tok in (tokenizer, sentencepiece_tokenizer):
        student_ids, teacher_ids = shared_vocabulary(tok, tok)
        assert student_ids == teacher_ids == list(range(len(tok)))


def test_position_rule_pairs_the_token_before_each_span():
    """The last token before a span (the previous span's last token, or the prompt's last token) predicts the
    span's first token, in both models."""
    from hf_distill.alignment import MatchedSpan

    spans = (MatchedSpan(range(0, 2), range(0, 1), 0, 5), MatchedSpan(range(2, 3), range(1, 4), 5, 9))
    assert predicting_positions(spans, student_offset=3, teacher_offset=7) == [(2, 6), (4, 7)]
    assert predicting_positions(spans, student_offset=0, teacher_offset=0) == [(1, 0)]  # nothing before span 0


@pytest.mark.parametrize("text", TEXTS)
def test_a_tokenizer_against_itself_matches_token_by_token(tokenizer, sentencepiece_tokenizer, text):
    """Spans are as fine as the two tokenizations allow: one tokenizer against itself gives one token per span,
    except where several tokens split one character between them (byte-level BPE on an emoji)."""
    for tok in (tokenizer, sentencepiece_tokenizer):
        alignment = check_alignment(tok, tok, text)
        for span in alignment.spans:
            assert span.student == span.teacher
            ids = alignment.student.ids[span.student.start:span.student.stop]
            assert len(ids) == 1 or all("\ufffd" in tok.decode([i]) for i in ids)


def test_shared_vocabulary_pairs_ordinary_tokens_before_byte_fallback(tokenizer, sentencepiece_tokenizer):
    """A SentencePiece vocabulary spells `a` twice: `a` (the token it produces) and `<0x61>` (byte fallback, used only
    for bytes it has no token for). The byte-level `a` pairs with the ordinary one."""
    student_ids, teacher_ids = shared_vocabulary(tokenizer, sentencepiece_tokenizer)
    pairs = dict(zip(student_ids, teacher_ids, strict=True))
    for char in "aet":
        produced = sentencepiece_tokenizer(char, add_special_tokens=False)["input_ids"]
        assert len(produced) == 1 and sentencepiece_tokenizer.convert_ids_to_tokens(produced[0]) == char
        assert pairs[tokenizer.convert_tokens_to_ids(char)] == produced[0]
