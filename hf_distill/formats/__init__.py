"""What rows look like, shared by the trainer, the cached teacher and offline runs: TRL-style tokenisation, checks of
training rows, truncation with a report, and the cached top-k format (columns, metadata, codec)."""

from .._lazy import lazy_namespace

_EXPORTS = {
    "CACHED_COLUMNS": ".cache",
    "CODEC_NAME": ".codec",
    "CacheInfo": ".cache",
    "CachedDatasetError": ".cache",
    "CodecError": ".codec",
    "DatasetFormatError": ".tokenization",
    "TopKCodec": ".codec",
    "TrainingDataError": ".checks",
    "TruncationReport": ".truncation",
    "decode_topk": ".codec",
    "encode_topk": ".codec",
    "tokenize_like_sft": ".tokenization",
}
# Importable here too, but internals (the trainer's own steps): not part of the public API.
_INTERNAL = {"check_training_data": ".checks"}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_namespace(__name__, {**_EXPORTS, **_INTERNAL})
