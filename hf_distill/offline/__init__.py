"""Teacher runs done before training, written as `datasets` datasets with a dataset card:

- [`generate_completions`]: the teacher writes completions for prompts (sequence-level distillation, any tokenizer).
- [`cache_teacher_logits`]: the teacher scores a dataset once and its top-k log-probabilities are stored
  (`hf_distill.formats` holds the format); `DistillationTrainer(teacher_model=None, train_dataset=cached)` then
  trains without it.

Both write shards atomically, resume after an interruption and split the work across `torchrun` / `accelerate
launch` processes with the same result as one process.
"""

from .._lazy import lazy_namespace

_EXPORTS = {
    "CacheSettingsError": ".logit_cache",
    "CorruptShardError": ".shards",
    "GenerationSettingsError": ".generation",
    "ResumeError": ".shards",
    "cache_teacher_logits": ".logit_cache",
    "generate_completions": ".generation",
    "topk_log_probs": ".logit_cache",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_namespace(__name__, _EXPORTS)
