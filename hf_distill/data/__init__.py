"""Offline data for distillation: teacher-generated completions (sequence-level) and cached teacher logits.

- [`generate_completions`]: the teacher writes completions for prompts; train any student on them, whatever its
  tokenizer.
- [`cache_teacher_logits`]: the teacher scores a dataset once and its top-k log-probabilities are stored in a
  `datasets` dataset; `DistillationTrainer(teacher_model=None, train_dataset=cached)` then trains without it.

Both write shards atomically, resume after an interruption, split the work across `torchrun` / `accelerate launch`
processes with the same result as one process, and write a `README.md` dataset card.
"""

from .codec import CODEC_NAME, CodecError, TopKCodec, decode_topk, encode_topk
from .format import CACHED_COLUMNS, CachedDatasetError, CacheInfo, chat_template_hash, tokenizer_hash
from .generation import GenerationSettingsError, generate_completions
from .logit_cache import CacheSettingsError, cache_teacher_logits, topk_log_probs
from .shards import CorruptShardError, ProcessGroup, ResumeError, ShardStore, run_sharded
from .tokenization import DatasetFormatError, tokenize_like_sft

__all__ = [
    "CACHED_COLUMNS",
    "CODEC_NAME",
    "CacheInfo",
    "CacheSettingsError",
    "CachedDatasetError",
    "CodecError",
    "CorruptShardError",
    "DatasetFormatError",
    "GenerationSettingsError",
    "ProcessGroup",
    "ResumeError",
    "ShardStore",
    "TopKCodec",
    "cache_teacher_logits",
    "chat_template_hash",
    "decode_topk",
    "encode_topk",
    "generate_completions",
    "run_sharded",
    "tokenize_like_sft",
    "tokenizer_hash",
    "topk_log_probs",
]
