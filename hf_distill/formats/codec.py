"""Compact encoding of a teacher's top-k next-token distribution, one binary blob per dataset row.

What is stored, per position that training reads (the positions predicting a completion token):

- the k token ids, **sorted ascending** and delta-encoded: the gaps of a sorted set are small and compress, which
  saves `log2(k!)` bits per position against storing them in probability order (37 bytes at k=64);
- the k probabilities **renormalised over the top-k** and quantized on a non-uniform grid: uniform in `sqrt(p)` (the
  grid whose error costs the same KL at every probability, since KL ~= 2 * sum (sqrt(p) - sqrt(p'))^2) down to
  `sqrt(p) = 2 * step`, and uniform in `log(p)` below it, so no probability decodes to 0 (an infinite KL);
- the log of the **tail mass** (the probability outside the top-k), as float16, computed exactly from the full
  logits: it is the explicit tail bucket of the sparse loss;
- a bitmap of the covered positions.

Each stream is split into byte planes (all low bytes, then all high bytes, ...) and the row is compressed with zstd,
whose Huffman stage then codes each plane close to its entropy. See `docs/offline_teachers.md` for the byte layout.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
import zstandard

from ..errors import HfDistillError

__all__ = [
    "CODEC_NAME",
    "CodecError",
    "QuantizedTopK",
    "TopKCodec",
    "decode_topk",
    "encode_topk",
]

CODEC_NAME = "sorted-delta-sqrtlog-zstd"
_MAGIC = b"HDTK"
_VERSION = 1
# magic, version, k, num_tokens, num_covered, vocab_size, sqrt_levels, log_levels, log_step * 1000
_HEADER = struct.Struct("<4sBHIIIHHH")


class CodecError(HfDistillError, ValueError):
    """A blob is not a valid top-k encoding, or the arrays to encode are inconsistent."""


@dataclass
class QuantizedTopK:
    """The integer form of one row's top-k entries: what the blob stores, before byte planes and zstd.

    Args:
        token_ids (`np.ndarray` of shape `(positions, k)`, int32): sorted ascending within each position.
        codes (`np.ndarray` of shape `(positions, k)`, uint16): grid codes of the renormalised probabilities,
            aligned with `token_ids`.
        tail_log_probs (`np.ndarray` of shape `(positions,)`, float16): log of the mass outside the top-k.
        covered (`np.ndarray` of shape `(num_tokens,)`, bool): which token positions have entries (rows are the
            covered positions in order).
    """

    token_ids: np.ndarray
    codes: np.ndarray
    tail_log_probs: np.ndarray
    covered: np.ndarray

    def slice_tokens(self, token_slice: slice) -> QuantizedTopK:
        """The same row restricted to the token positions `token_slice` (truncation), losslessly."""
        row_of_position = np.cumsum(self.covered) - 1
        kept = np.zeros_like(self.covered)
        kept[token_slice] = True
        rows = row_of_position[kept & self.covered]
        return QuantizedTopK(
            self.token_ids[rows], self.codes[rows], self.tail_log_probs[rows], self.covered[token_slice].copy()
        )


@dataclass(frozen=True)
class TopKCodec:
    """The quantization grid and the byte layout.

    Args:
        vocab_size (`int`): size of the vocabulary the token ids index (decides the bytes per id gap).
        sqrt_levels (`int`, *optional*, defaults to `384`): levels of `sqrt(p)` in [0, 1]; the step is
            `1 / sqrt_levels`. The KL error grows as `k / (6 * sqrt_levels**2)` at worst (all k entries large).
        log_step (`float`, *optional*, defaults to `1.0`): step of `log(p)` below `sqrt(p) = 2 / sqrt_levels`
            (matches the sqrt grid's step at the boundary).
        log_levels (`int`, *optional*, defaults to `40`): levels of the log region; lower probabilities share the
            last level.
        zstd_level (`int`, *optional*, defaults to `3`): zstd compression level.

    Example:

    ```python
    >>> import numpy as np
    >>> codec = TopKCodec(vocab_size=151_936)
    >>> log_probs = np.log(np.full((5, 4), 0.2))
    >>> blob = codec.encode(np.tile(np.arange(4), (5, 1)), log_probs, np.log(np.full(5, 0.2)))
    >>> codec.decode(blob).token_ids.shape
    (5, 4)
    ```
    """

    vocab_size: int
    sqrt_levels: int = 384
    log_step: float = 1.0
    log_levels: int = 40
    zstd_level: int = 3

    # -- quantization ------------------------------------------------------------------------------------------------

    @property
    def _step(self) -> float:
        return 1.0 / self.sqrt_levels

    @property
    def _sqrt_floor(self) -> float:
        return 2.0 * self._step

    def quantize(
        self,
        token_ids: np.ndarray,
        log_probs: np.ndarray,
        tail_log_probs: np.ndarray,
        covered: np.ndarray | None = None,
    ) -> QuantizedTopK:
        """Sort each position's ids and put its renormalised probabilities on the grid.

        Args:
            token_ids (`np.ndarray` of shape `(positions, k)`): top-k ids, any order.
            log_probs (`np.ndarray` of shape `(positions, k)`): their log-probabilities over the full vocabulary.
            tail_log_probs (`np.ndarray` of shape `(positions,)`): log of the mass outside the top-k (`-inf` when
                the top-k covers the vocabulary).
            covered (`np.ndarray` of shape `(num_tokens,)`, *optional*): positions with entries; all by default.
        """
        token_ids, log_probs = np.asarray(token_ids), np.asarray(log_probs, dtype=np.float64)
        covered = np.ones(len(token_ids), dtype=bool) if covered is None else np.asarray(covered, dtype=bool)
        self._check_shapes(token_ids, log_probs, tail_log_probs, covered)
        order = np.argsort(token_ids, axis=-1, kind="stable")
        token_ids = np.take_along_axis(token_ids, order, -1).astype(np.int32)
        log_probs = np.take_along_axis(log_probs, order, -1)
        # Renormalise over the top-k in float64: the grid holds the shape, the tail holds the scale.
        shifted = log_probs - log_probs.max(-1, keepdims=True)
        log_p = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
        root = np.exp(0.5 * log_p)
        sqrt_codes = self.log_levels + np.rint((root - self._sqrt_floor) / self._step)
        log_bin = np.floor((2.0 * np.log(self._sqrt_floor) - log_p) / self.log_step)
        log_codes = self.log_levels - 1 - np.clip(log_bin, 0, self.log_levels - 1)
        codes = np.where(root >= self._sqrt_floor, sqrt_codes, log_codes).astype(np.uint16)
        tail = np.asarray(tail_log_probs, dtype=np.float64).astype(np.float16)
        return QuantizedTopK(token_ids, codes, tail, covered)

    def grid_log_probs(self) -> np.ndarray:
        """Unnormalised log-probability each code stands for, `(num_codes,)`: log-bin midpoints, then sqrt levels."""
        log_bins = np.arange(self.log_levels)[::-1]
        log_region = 2.0 * np.log(self._sqrt_floor) - (log_bins + 0.5) * self.log_step
        num_sqrt = int(round((1.0 - self._sqrt_floor) / self._step)) + 1
        sqrt_region = 2.0 * np.log(self._sqrt_floor + np.arange(num_sqrt) * self._step)
        return np.concatenate([log_region, sqrt_region])

    def dequantize(self, quantized: QuantizedTopK) -> tuple[np.ndarray, np.ndarray]:
        """Log-probabilities over the full vocabulary `(positions, k)` float32, and the tail `(positions,)` float32."""
        grid = self.grid_log_probs()
        log_p = grid[np.minimum(quantized.codes, len(grid) - 1)]
        peak = log_p.max(-1, keepdims=True)
        log_p = log_p - peak - np.log(np.exp(log_p - peak).sum(-1, keepdims=True))  # renormalise over the top-k
        tail = quantized.tail_log_probs.astype(np.float64)
        with np.errstate(divide="ignore"):
            top_mass = np.log(-np.expm1(np.minimum(tail, -1e-30)))  # log(1 - tail mass)
        return (log_p + top_mass[:, None]).astype(np.float32), tail.astype(np.float32)

    # -- bytes -------------------------------------------------------------------------------------------------------

    @property
    def _id_planes(self) -> int:
        return max(1, int(np.ceil(np.log2(max(self.vocab_size, 2)) / 8)))

    def pack(self, quantized: QuantizedTopK) -> bytes:
        """Header, then each byte plane of the coverage, gaps, codes and tail compressed on its own.

        Each plane gets its own zstd frame: zstd codes a block's literals with one Huffman table, and planes of
        different statistics mixed in one block cost ~15% more than coded apart.
        """
        ids = quantized.token_ids
        positions, k = ids.shape
        gaps = np.diff(ids, axis=-1, prepend=0).astype(np.uint32)
        planes = [
            np.packbits(quantized.covered).tobytes(),
            *_planes(gaps, self._id_planes),
            *_planes(quantized.codes, 2),
            *_planes(quantized.tail_log_probs.view(np.uint16), 2),
        ]
        compressor = zstandard.ZstdCompressor(level=self.zstd_level, write_content_size=False)
        frames = [compressor.compress(plane) for plane in planes]
        header = _HEADER.pack(
            _MAGIC, _VERSION, k, len(quantized.covered), positions, self.vocab_size, self.sqrt_levels,
            self.log_levels, int(round(self.log_step * 1000)),
        )
        lengths = np.array([len(frame) for frame in frames], dtype="<u4").tobytes()
        return header + lengths + b"".join(frames)

    @staticmethod
    def unpack(blob: bytes) -> tuple[TopKCodec, QuantizedTopK]:
        """The codec a blob was written with and its integer content; raises [`CodecError`] on a foreign blob."""
        if len(blob) < _HEADER.size or blob[:4] != _MAGIC:
            raise CodecError(
                "Not a hf_distill top-k blob (bad magic bytes). The `teacher_topk` column must come from "
                "`hf_distill.data.cache_teacher_logits`."
            )
        _, version, k, num_tokens, positions, vocab_size, sqrt_levels, log_levels, log_step = _HEADER.unpack_from(blob)
        if version != _VERSION:
            raise CodecError(f"Top-k blob version {version} is not supported (this hf_distill reads {_VERSION}).")
        codec = TopKCodec(vocab_size, sqrt_levels=sqrt_levels, log_step=log_step / 1000, log_levels=log_levels)
        id_planes, n = codec._id_planes, positions * k
        sizes = [(num_tokens + 7) // 8] + [n] * (id_planes + 2) + [positions] * 2
        planes = _read_frames(blob, sizes)
        covered = np.unpackbits(np.frombuffer(planes[0], np.uint8), count=num_tokens).astype(bool)
        gaps = _unplanes(planes[1 : 1 + id_planes], n)
        codes = _unplanes(planes[1 + id_planes : 3 + id_planes], n)
        tail = _unplanes(planes[3 + id_planes :], positions)
        if int(covered.sum()) != positions:
            raise CodecError("Corrupt top-k blob: its coverage bitmap does not match its header.")
        token_ids = np.cumsum(gaps.reshape(positions, k), axis=-1, dtype=np.int64).astype(np.int32)
        quantized = QuantizedTopK(
            token_ids, codes.reshape(positions, k).astype(np.uint16), tail.astype(np.uint16).view(np.float16), covered
        )
        return codec, quantized

    # -- one call ----------------------------------------------------------------------------------------------------

    def encode(self, token_ids, log_probs, tail_log_probs, covered=None) -> bytes:
        """`pack(quantize(...))`: see [`TopKCodec.quantize`] for the arguments."""
        return self.pack(self.quantize(token_ids, log_probs, tail_log_probs, covered))

    @staticmethod
    def decode(blob: bytes) -> DecodedTopK:
        """The covered positions' sorted ids, log-probabilities over the full vocabulary and tail log-mass."""
        codec, quantized = TopKCodec.unpack(blob)
        log_probs, tail = codec.dequantize(quantized)
        return DecodedTopK(quantized.token_ids, log_probs, tail, quantized.covered)

    def _check_shapes(self, token_ids, log_probs, tail_log_probs, covered) -> None:
        if token_ids.ndim != 2 or token_ids.shape != log_probs.shape:
            raise CodecError(
                f"`token_ids` {token_ids.shape} and `log_probs` {log_probs.shape} must both be (positions, k)."
            )
        if np.shape(tail_log_probs) != (token_ids.shape[0],) or int(covered.sum()) != token_ids.shape[0]:
            raise CodecError(
                f"{token_ids.shape[0]} positions of top-k entries, {np.shape(tail_log_probs)} tail values and "
                f"{int(covered.sum())} covered positions: all three must agree."
            )
        if token_ids.size and (token_ids.min() < 0 or token_ids.max() >= self.vocab_size):
            raise CodecError(
                f"Token ids must lie in [0, {self.vocab_size}); got {token_ids.min()}..{token_ids.max()}."
            )


@dataclass
class DecodedTopK:
    """One decoded row: `token_ids` and `log_probs` `(positions, k)`, `tail_log_probs` `(positions,)`, `covered`
    `(num_tokens,)` (the positions the rows belong to)."""

    token_ids: np.ndarray
    log_probs: np.ndarray
    tail_log_probs: np.ndarray
    covered: np.ndarray


def encode_topk(token_ids, log_probs, tail_log_probs, covered=None, *, vocab_size: int) -> bytes:
    """Encode one row with the default [`TopKCodec`] for `vocab_size`."""
    return TopKCodec(vocab_size).encode(token_ids, log_probs, tail_log_probs, covered)


def decode_topk(blob: bytes) -> DecodedTopK:
    """Decode one row written by any [`TopKCodec`] (its settings are in the blob's header)."""
    return TopKCodec.decode(blob)


def _planes(values: np.ndarray, num_planes: int) -> list[bytes]:
    """Little-endian byte planes of non-negative integers: all low bytes, then all next bytes, ..."""
    flat = values.reshape(-1).astype(np.uint32)
    return [((flat >> (8 * plane)) & 0xFF).astype(np.uint8).tobytes() for plane in range(num_planes)]


def _unplanes(planes: list[bytes], count: int) -> np.ndarray:
    values = np.zeros(count, dtype=np.uint32)
    for index, plane in enumerate(planes):
        chunk = np.frombuffer(plane, np.uint8)
        if len(chunk) != count:
            raise CodecError("Corrupt top-k blob: a byte plane is shorter than its header says.")
        values |= chunk.astype(np.uint32) << (8 * index)
    return values


def _read_frames(blob: bytes, sizes: list[int]) -> list[bytes]:
    """Split the frames after the header and decompress each to its known size."""
    num_frames = len(sizes)
    start = _HEADER.size + 4 * num_frames
    lengths = np.frombuffer(blob[_HEADER.size : start], dtype="<u4")
    if len(lengths) != num_frames or start + int(lengths.sum()) != len(blob):
        raise CodecError("Corrupt top-k blob: its frame lengths do not add up to its size.")
    decompressor = zstandard.ZstdDecompressor()
    frames, offset = [], start
    for length, size in zip(lengths.tolist(), sizes, strict=True):
        frame = decompressor.decompress(blob[offset : offset + length], max_output_size=max(size, 1))
        if len(frame) != size:
            raise CodecError("Corrupt top-k blob: a byte plane does not have the size its header says.")
        frames.append(frame)
        offset += length
    return frames
