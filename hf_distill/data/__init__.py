"""`hf_distill.data`: offline teacher data under its public path. The code lives in `hf_distill.offline` (teacher
runs) and `hf_distill.formats` (the cached top-k format and its codec).

- [`generate_completions`]: the teacher writes completions for prompts; train any student on them, whatever its
  tokenizer.
- [`cache_teacher_logits`]: the teacher scores a dataset once and its top-k log-probabilities are stored in a
  `datasets` dataset; `DistillationTrainer(teacher_model=None, train_dataset=cached)` then trains without it.
"""

from .._lazy import lazy_namespace

_EXPORTS = {
    "CACHED_COLUMNS": "..formats.cache",
    "CODEC_NAME": "..formats.codec",
    "CacheInfo": "..formats.cache",
    "CacheSettingsError": "..offline.logit_cache",
    "CachedDatasetError": "..formats.cache",
    "CodecError": "..formats.codec",
    "CorruptShardError": "..offline.shards",
    "DatasetFormatError": "..formats.tokenization",
    "GenerationSettingsError": "..offline.generation",
    "ResumeError": "..offline.shards",
    "TopKCodec": "..formats.codec",
    "cache_teacher_logits": "..offline.logit_cache",
    "chat_template_hash": "..fingerprints",
    "decode_topk": "..formats.codec",
    "encode_topk": "..formats.codec",
    "generate_completions": "..offline.generation",
    "tokenize_like_sft": "..formats.tokenization",
    "tokenizer_hash": "..fingerprints",
    "topk_log_probs": "..offline.logit_cache",
}
# Importable as before, but internals: not part of the public API.
_INTERNAL = {"ProcessGroup": "..offline.shards", "ShardStore": "..offline.shards", "run_sharded": "..offline.shards"}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_namespace(__name__, {**_EXPORTS, **_INTERNAL})
