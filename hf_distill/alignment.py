"""Alignment by text between two tokenizers: which student tokens and which teacher tokens cover the same bytes.

Logit distillation across tokenizers compares the two models where both have read exactly the same text. Each model
tokenizes the same completion text; a *boundary* is a byte position where a token of that tokenization ends cleanly
(the next token starts at or after it; byte-level BPE splits an emoji or a CJK character over several tokens that all
report the same character, and no boundary lies inside them). The byte positions that are boundaries of both
tokenizations cut the text into matched spans: `k` student tokens and `j` teacher tokens covering the same bytes.

Token positions come from the tokenizer's character offsets (`return_offsets_mapping`), turned into UTF-8 byte
positions. A tokenizer without offsets (a slow or SentencePiece one), or whose offsets leave gaps (byte-level BPE
with `trim_offsets=True` drops the space a token carries), is read token by token instead: each token's bytes from
its vocabulary string (byte-level `Ġ` alphabet, SentencePiece `▁` and `<0xNN>` byte fallback).

The same byte strings give the shared vocabulary: the token ids of both tokenizers that stand for the same bytes
(`Ġworld` and `▁world` are both ` world`), which the `"span"` loss compares one to one.

Depends on transformers only, so every layer above can use it.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from .errors import HfDistillError

__all__ = [
    "AlignmentError",
    "MatchedSpan",
    "TextAlignment",
    "TokenPieces",
    "align_text",
    "match_spans",
    "predicting_positions",
    "shared_vocabulary",
    "token_bytes",
    "tokenize_with_offsets",
]

_BYTE_FALLBACK = re.compile(r"<0x([0-9A-Fa-f]{2})>")
_SPACE_MARK = "\u2581"  # SentencePiece's "▁"


class AlignmentError(HfDistillError, ValueError):
    """A text cannot be aligned between the two tokenizers; the message names the tokenizer and the text."""


@dataclass(frozen=True)
class TokenPieces:
    """A text's tokens and the UTF-8 byte range each covers: `starts[i]`, `ends[i]` for token `ids[i]`."""

    ids: tuple[int, ...]
    starts: tuple[int, ...]
    ends: tuple[int, ...]
    num_bytes: int

    def boundaries(self) -> dict[int, int]:
        """Byte position -> number of tokens read when the text up to it is read: the clean token ends."""
        found = {0: 0}
        for i, end in enumerate(self.ends):
            if i + 1 == len(self.ends) or end <= self.starts[i + 1]:
                found[end] = i + 1
        return found


@dataclass(frozen=True)
class MatchedSpan:
    """Student tokens `student` and teacher tokens `teacher` (ranges into each tokenization) covering bytes
    `[start, end)` of the text."""

    student: range
    teacher: range
    start: int
    end: int


@dataclass(frozen=True)
class TextAlignment:
    student: TokenPieces
    teacher: TokenPieces
    spans: tuple[MatchedSpan, ...]


# -- token bytes --------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _byte_level_decoder() -> dict[str, int]:
    """GPT-2's printable alphabet for the 256 bytes, reversed (the alphabet every byte-level BPE uses)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    codes, extra = list(printable), 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return {chr(code): byte for byte, code in zip(printable, codes, strict=True)}


def _is_byte_level(tokenizer: PreTrainedTokenizerBase) -> bool:
    if hasattr(tokenizer, "byte_decoder"):  # slow GPT-2 style tokenizers
        return True
    backend = getattr(tokenizer, "backend_tokenizer", None)
    decoder = getattr(backend, "decoder", None)
    return type(decoder).__name__ == "ByteLevel"


def _piece_bytes(piece: str, byte_level: bool) -> bytes | None:
    if byte_level:
        decoder = _byte_level_decoder()
        if any(char not in decoder for char in piece):
            return None
        return bytes(decoder[char] for char in piece)
    fallback = _BYTE_FALLBACK.fullmatch(piece)
    if fallback:
        return bytes([int(fallback.group(1), 16)])
    return piece.replace(_SPACE_MARK, " ").encode("utf-8")


def token_bytes(tokenizer: PreTrainedTokenizerBase) -> list[bytes | str | None]:
    """What each token id of `tokenizer` stands for (index = id): its bytes, or for a special or added token its
    string (special tokens spell no text; they pair only with a token of the same name)."""
    added = {index: token for token, index in tokenizer.get_added_vocab().items()}
    special = set(tokenizer.all_special_ids)
    byte_level = _is_byte_level(tokenizer)
    pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    values: list[bytes | str | None] = []
    for index, piece in enumerate(pieces):
        if piece is None:
            values.append(None)
        elif (index in added or index in special) and not (not byte_level and _BYTE_FALLBACK.fullmatch(piece)):
            values.append(added.get(index, piece))  # `<0xNN>` byte tokens registered as added ones still spell a byte
        else:
            values.append(_piece_bytes(piece, byte_level))
    return values


def _ids_by_value(tokenizer: PreTrainedTokenizerBase) -> dict[bytes | str, list[int]]:
    """Token ids grouped by what they spell; within a group, ordinary tokens come before `<0xNN>` byte-fallback
    ones (a SentencePiece vocabulary spells `a` both as `a`, the token it uses, and as `<0x61>`), then by id."""
    grouped: dict[bytes | str, list[int]] = {}
    for index, value in enumerate(token_bytes(tokenizer)):
        if value:
            grouped.setdefault(value, []).append(index)
    fallback = {index for index, piece in enumerate(tokenizer.convert_ids_to_tokens(list(range(len(tokenizer)))))
                if piece is not None and _BYTE_FALLBACK.fullmatch(piece)} if not _is_byte_level(tokenizer) else set()
    return {value: sorted(ids, key=lambda i: (i in fallback, i)) for value, ids in grouped.items()}


def shared_vocabulary(
    tokenizer: PreTrainedTokenizerBase, teacher_tokenizer: PreTrainedTokenizerBase
) -> tuple[list[int], list[int]]:
    """Student and teacher ids (two equal-length lists, one pair per entry, sorted by student id) of the tokens both
    vocabularies hold with the same bytes (`Ġworld` and `▁world` are both ` world`), plus special and added tokens of
    the same name. Where a vocabulary has several ids for the same bytes (a SentencePiece `<0x61>` beside `a`), the
    ordinary token pairs first and the byte-fallback one after it (with the other side's next id of those bytes, if
    any), so a tokenizer shares every id with itself."""
    teacher_groups = _ids_by_value(teacher_tokenizer)
    pairs = []
    for value, student_group in _ids_by_value(tokenizer).items():
        pairs.extend(zip(student_group, teacher_groups.get(value, ()), strict=False))
    pairs.sort()
    return [student for student, _ in pairs], [teacher for _, teacher in pairs]


# -- offsets ------------------------------------------------------------------------------------------------------


def _byte_positions(text: str) -> list[int]:
    """UTF-8 byte position of every character position of `text` (one more entry than characters)."""
    positions = [0]
    for char in text:
        positions.append(positions[-1] + len(char.encode("utf-8")))
    return positions


def _from_offsets(ids, offsets, text: str) -> TokenPieces | None:
    """Pieces from character offsets, or None when they do not tile the text (gaps, or not reaching its end)."""
    if not ids:
        return TokenPieces((), (), (), len(text.encode("utf-8")))
    starts, ends = [start for start, _ in offsets], [end for _, end in offsets]
    tiles = starts[0] == 0 and ends[-1] == len(text) and all(
        starts[i + 1] <= ends[i] and ends[i] <= ends[i + 1] for i in range(len(ids) - 1)
    )
    if not tiles:
        return None
    to_byte = _byte_positions(text)
    return TokenPieces(tuple(ids), tuple(to_byte[s] for s in starts), tuple(to_byte[e] for e in ends), to_byte[-1])


def _from_token_bytes(tokenizer: PreTrainedTokenizerBase, ids: list[int], text: str) -> TokenPieces:
    """Pieces read token by token from the vocabulary's byte strings (tokenizers without usable offsets)."""
    byte_level = _is_byte_level(tokenizer)
    pieces = [_piece_bytes(piece, byte_level) for piece in tokenizer.convert_ids_to_tokens(ids)]
    target = text.encode("utf-8")
    joined = b"".join(piece or b"" for piece in pieces)
    shift = 0
    if joined != target and joined == b" " + target:  # SentencePiece's prefix space before the first word
        shift = 1
    elif joined != target or any(piece is None for piece in pieces):
        raise AlignmentError(
            f"The tokens of {type(tokenizer).__name__} ({getattr(tokenizer, 'name_or_path', '')!r}) do not spell the "
            f"text {text[:60]!r} byte for byte (a normalizer changed it, or a token is special), and the tokenizer "
            "gives no character offsets: use its fast version (`AutoTokenizer.from_pretrained(..., use_fast=True)`)."
        )
    starts, ends, position = [], [], -shift
    for piece in pieces:
        starts.append(max(position, 0))
        position += len(piece)
        ends.append(max(position, 0))
    return TokenPieces(tuple(ids), tuple(starts), tuple(ends), len(target))


def tokenize_with_offsets(tokenizer: PreTrainedTokenizerBase, text: str) -> TokenPieces:
    """`text` tokenized without special tokens, with the byte range of every token (see the module doc)."""
    if getattr(tokenizer, "is_fast", False):
        encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        pieces = _from_offsets(list(encoded["input_ids"]), list(encoded["offset_mapping"]), text)
        if pieces is not None:
            return pieces
        return _from_token_bytes(tokenizer, list(encoded["input_ids"]), text)
    return _from_token_bytes(tokenizer, tokenizer(text, add_special_tokens=False)["input_ids"], text)


# -- spans --------------------------------------------------------------------------------------------------------


def match_spans(student: TokenPieces, teacher: TokenPieces) -> tuple[MatchedSpan, ...]:
    """Cut the text at every byte position that ends a token cleanly in both tokenizations; each piece between two
    such cuts is a [`MatchedSpan`]. Every token of either side is in exactly one span."""
    if student.num_bytes != teacher.num_bytes:
        raise AlignmentError(
            f"The two tokenizations cover {student.num_bytes} and {teacher.num_bytes} bytes: they are not of the "
            "same text."
        )
    student_cuts, teacher_cuts = student.boundaries(), teacher.boundaries()
    common = sorted(set(student_cuts) & set(teacher_cuts))
    spans, previous = [], 0
    for cut in common[1:]:
        student_range = range(student_cuts[previous], student_cuts[cut])
        teacher_range = range(teacher_cuts[previous], teacher_cuts[cut])
        if len(student_range) or len(teacher_range):
            spans.append(MatchedSpan(student_range, teacher_range, previous, cut))
        previous = cut
    return tuple(spans)


def align_text(
    tokenizer: PreTrainedTokenizerBase, teacher_tokenizer: PreTrainedTokenizerBase, text: str
) -> TextAlignment:
    """Tokenize `text` with both tokenizers and match their tokens by the bytes they cover.

    Example:

    ```python
    >>> alignment = align_text(student_tokenizer, teacher_tokenizer, " 12345 apples")
    >>> [(len(span.student), len(span.teacher)) for span in alignment.spans]  # e.g. digits split differently
    ```
    """
    student = tokenize_with_offsets(tokenizer, text)
    teacher = tokenize_with_offsets(teacher_tokenizer, text)
    return TextAlignment(student, teacher, match_spans(student, teacher))


def predicting_positions(
    spans: tuple[MatchedSpan, ...] | list[MatchedSpan], *, student_offset: int, teacher_offset: int
) -> list[tuple[int, int]]:
    """The position rule: the token just before each matched span (the last token of the previous span, or the last
    prompt token for the first span) predicts the span's first token, in both models; those two positions, each in
    its model's full sequence where the aligned text starts at `*_offset`, are paired. Spans that start a sequence
    (nothing before them) or that hold no token on one side are skipped."""
    pairs = []
    for span in spans:
        if not len(span.student) or not len(span.teacher):
            continue
        student_position = student_offset + span.student.start - 1
        teacher_position = teacher_offset + span.teacher.start - 1
        if student_position >= 0 and teacher_position >= 0:
            pairs.append((student_position, teacher_position))
    return pairs
