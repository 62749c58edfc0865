"""The one vocabulary rule: which teacher's logits line up with the student's, over which rows, and where a model's
tokenizer is found.

Logit distillation compares the two models' distributions token id by token id, so it needs more than equal sizes:
the teacher must read the student's token sequences as its own (the same tokenization) and every id must mean the
same string. The rule, used by training, the offline logit cache and the benchmark alike:

- both tokenizers known: the same tokenizer definition (model with its vocabulary and merges, normalizer and
  pre-tokenizer; added tokens may only be extra on the teacher's side), or identical ids on the training text;
- the teacher's tokenizer unknown: its embedding rows are the student's tokenizer length rounded up to a multiple of
  64 or 128 (how checkpoints pad), and every special-token id its config declares is a special token of the student;
- either way the loss runs over exactly the tokenizer's length: padded rows that no token id reaches are dropped
  from both models.

Depends on transformers only, so every layer above can use it.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping
from typing import Any

from transformers import AutoConfig, AutoTokenizer, PreTrainedTokenizerBase

from .errors import HfDistillError

logger = logging.getLogger(__name__)

__all__ = [
    "HUB_KWARGS",
    "MissingTokenizerError",
    "VocabularyMismatchError",
    "check_shared_vocabulary",
    "find_tokenizer",
    "hub_kwargs",
    "padded_sizes",
    "same_tokenization",
    "shares_vocabulary",
    "tokenizer_rows",
    "untrusted_reason",
]

#: `from_pretrained` arguments that say where a checkpoint's files come from: the tokenizer is fetched with the same.
HUB_KWARGS = (
    "revision", "token", "cache_dir", "local_files_only", "force_download", "proxies", "trust_remote_code",
    "gguf_file",  # a GGUF checkpoint holds its tokenizer and chat template in the same file
)
#: Multiples checkpoints round their embedding rows up to (Qwen, Llama, Gemma, Phi use 64 or 128).
PADDING_MULTIPLES = (64, 128)
_CROSS_TOKENIZER_FIX = (
    "distil logits across tokenizers with `DistillationConfig(cross_tokenizer=\"span\")` or `\"uld\"` "
    "(--cross_tokenizer span), which matches the two models' positions by text, "
)
_SEQUENCE_LEVEL_FIX = (
    "or distil at sequence level instead (`hf_distill.data.generate_completions` / `hf-distill generate`, then train "
    "on the generated completions), which works across tokenizers."
)


class MissingTokenizerError(HfDistillError, ValueError):
    """No tokenizer was given for a model and none is stored with it; the message names the argument to pass."""


class VocabularyMismatchError(HfDistillError, ValueError):
    """The teacher's vocabulary does not line up with the student's; the message says what differs and the fix."""


# -- finding a model's tokenizer ----------------------------------------------------------------------------------


def hub_kwargs(init_kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    """The part of a model's `from_pretrained` kwargs that locates its files (revision, token, cache, offline)."""
    return {key: value for key, value in (init_kwargs or {}).items() if key in HUB_KWARGS and value is not None}


def _source_of(model_or_source: Any) -> tuple[str, dict[str, Any]]:
    """Id or folder a model came from, and the revision it was loaded at (a Hub commit) when known."""
    if isinstance(model_or_source, (str, os.PathLike)):
        return os.fspath(model_or_source), {}
    inner = model_or_source
    while hasattr(inner, "module") and not hasattr(inner, "config"):  # DDP / DataParallel
        inner = inner.module
    if hasattr(inner, "get_base_model"):  # PeftModel
        inner = inner.get_base_model()
    config = getattr(inner, "config", None)
    source = str(getattr(inner, "name_or_path", "") or getattr(config, "_name_or_path", "") or "")
    commit = getattr(config, "_commit_hash", None)
    return source, ({"revision": commit} if commit and source and not os.path.isdir(source) else {})


def _special_ids(config) -> set[int]:
    """bos/eos/pad ids a model's config declares (eos may be a list)."""
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    ids: set[int] = set()
    for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
        value = getattr(text_config, name, None)
        values = value if isinstance(value, (list, tuple)) else [value]
        ids.update(int(v) for v in values if isinstance(v, int) and v >= 0)
    return ids


def _config_rows(config) -> int | None:
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    rows = getattr(text_config, "vocab_size", None)
    return rows if isinstance(rows, int) and rows > 0 else None


def untrusted_reason(tokenizer: PreTrainedTokenizerBase, config=None) -> str | None:
    """Why `tokenizer` cannot be the tokenizer of the model configured by `config`, or None when it can be.

    transformers 5 builds an almost empty tokenizer from a config alone when a folder or cache entry holds no
    tokenizer files (a Qwen2 one with 1 token, a Gemma one with 5): such a tokenizer has fewer tokens than the
    special-token ids the model declares, or far fewer than its embedding rows.
    """
    num_tokens = len(tokenizer)
    own_ids = [i for i in tokenizer.all_special_ids if i is not None]
    declared = sorted(_special_ids(config)) if config is not None else []
    beyond = [i for i in [*own_ids, *declared] if i >= num_tokens]
    if beyond:
        return f"it has {num_tokens} tokens but the special-token id {max(beyond)} is declared"
    rows = _config_rows(config) if config is not None else None
    if rows is not None and num_tokens * 2 < rows:
        return f"it has {num_tokens} tokens for a model with {rows} embedding rows"
    return None


def _load_config(source: str, kwargs: dict[str, Any]):
    try:
        return AutoConfig.from_pretrained(source, **kwargs)
    except (OSError, ValueError):  # no config there (a tokenizer-only folder): check the tokenizer alone
        return None


def find_tokenizer(model_or_source: Any, *, config=None, **kwargs) -> PreTrainedTokenizerBase | None:
    """The tokenizer saved with a model, fetched like the model itself, or None when there is none to trust.

    Args:
        model_or_source: a Hub id, a local folder, or a loaded model (its `name_or_path`, and the Hub commit it was
            loaded at).
        config (*optional*): the model's config, to check the tokenizer against; read from the source when None.
        kwargs: where the files come from, as for the model (`revision`, `token`, `cache_dir`, `local_files_only`,
            `trust_remote_code`; see [`hub_kwargs`]).
    """
    source, located = _source_of(model_or_source)
    if not source:
        return None
    located = {**located, **hub_kwargs(kwargs)}
    if config is None and not isinstance(model_or_source, (str, os.PathLike)):
        config = getattr(model_or_source, "config", None)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **located)
    except (OSError, ValueError, TypeError, KeyError) as error:  # no tokenizer files: the caller decides
        logger.info("No tokenizer found with %s (%s).", source, type(error).__name__)
        return None
    reason = untrusted_reason(tokenizer, config if config is not None else _load_config(source, located))
    if reason is not None:
        logger.info("The tokenizer loaded from %s cannot be the model's (%s): ignored.", source, reason)
        return None
    return tokenizer


# -- the same tokenization --------------------------------------------------------------------------------------


def _definition(tokenizer: PreTrainedTokenizerBase) -> Any:
    """What decides how text becomes ids, added tokens left out: the backend's model (vocabulary, merges),
    normalizer and pre-tokenizer; for a tokenizer without a `tokenizers` backend, its class and base vocabulary."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        serialized = json.loads(backend.to_str())
        return {key: serialized.get(key) for key in ("model", "normalizer", "pre_tokenizer")}
    added = set(tokenizer.get_added_vocab())
    return type(tokenizer).__name__, {t: i for t, i in tokenizer.get_vocab().items() if t not in added}


def _added_tokens_kept(tokenizer: PreTrainedTokenizerBase, teacher_tokenizer: PreTrainedTokenizerBase) -> bool:
    """Every token added to the student's tokenizer has the same id in the teacher's (which may add more)."""
    teacher_vocab = teacher_tokenizer.get_vocab()
    return all(teacher_vocab.get(token) == index for token, index in tokenizer.get_added_vocab().items())


def _same_ids_on(tokenizer, teacher_tokenizer, texts: Iterable[str]) -> bool:
    texts = [text for text in texts if text]
    if not texts:
        return False
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return ids == teacher_tokenizer(texts, add_special_tokens=False)["input_ids"]


def same_tokenization(
    tokenizer: PreTrainedTokenizerBase, teacher_tokenizer: PreTrainedTokenizerBase, texts: Iterable[str] = ()
) -> bool:
    """Whether the teacher's tokenizer turns text into the student's ids: the same definition (see module doc), or
    identical ids on `texts` (the training text), with any added tokens of the student at the same ids."""
    if tokenizer is teacher_tokenizer:
        return True
    if not _added_tokens_kept(tokenizer, teacher_tokenizer):
        return False
    same_definition = _definition(tokenizer) == _definition(teacher_tokenizer)
    return same_definition or _same_ids_on(tokenizer, teacher_tokenizer, texts)


# -- rows -------------------------------------------------------------------------------------------------------


def padded_sizes(num_tokens: int) -> set[int]:
    """Embedding sizes a checkpoint pads `num_tokens` to: itself, or rounded up to a multiple of 64 or 128."""
    return {num_tokens} | {-(-num_tokens // multiple) * multiple for multiple in PADDING_MULTIPLES}


def tokenizer_rows(tokenizer: PreTrainedTokenizerBase, num_rows: int, *, who: str = "student") -> int:
    """The rows a loss counts: the tokenizer's length. Raises when the model has fewer rows than tokens."""
    num_tokens = len(tokenizer)
    if num_rows < num_tokens:
        raise VocabularyMismatchError(
            f"The {who}'s vocabulary ({num_rows} embedding rows) is smaller than the tokenizer the data is read with "
            f"({num_tokens} tokens): token ids {num_rows}..{num_tokens - 1} have no logit. Use the tokenizer the "
            f"{who} was trained with, or a {who} whose embeddings cover it (`resize_token_embeddings`)."
        )
    return num_tokens


def _unknown_teacher_problem(tokenizer, teacher_rows: int, teacher_config) -> str | None:
    """What the teacher's config and rows say against sharing the student's tokenizer, when its own is unknown."""
    num_tokens = len(tokenizer)
    if teacher_rows not in padded_sizes(num_tokens):
        sizes = ", ".join(str(size) for size in sorted(padded_sizes(num_tokens)))
        return (f"{teacher_rows} embedding rows, where the student's tokenizer of {num_tokens} tokens pads to "
                f"{sizes}")
    student_special = set(tokenizer.all_special_ids) | {
        index for index, token in tokenizer.added_tokens_decoder.items() if token.special
    }
    foreign = sorted(_special_ids(teacher_config) - student_special) if teacher_config is not None else []
    if foreign:
        return f"special-token ids {foreign} that are no special tokens of the student's tokenizer"
    return None


def check_shared_vocabulary(
    tokenizer: PreTrainedTokenizerBase,
    *,
    student_rows: int,
    teacher_rows: int,
    teacher_tokenizer: PreTrainedTokenizerBase | None = None,
    teacher_config=None,
    texts: Iterable[str] = (),
    argument: str = "teacher_processing_class",
    cross_tokenizer_fix: bool = False,
) -> int:
    """The rows both models' logits are compared over (the student tokenizer's length), or raise
    [`VocabularyMismatchError`] when the teacher cannot read the student's token ids as its own.

    Args:
        tokenizer: the student's tokenizer (it tokenizes the data both models read).
        student_rows, teacher_rows (`int`): output embedding rows of each model.
        teacher_tokenizer (*optional*): the teacher's own tokenizer; None when it could not be found.
        teacher_config (*optional*): the teacher's config, checked when its tokenizer is unknown.
        texts (*optional*): training text, on which identical ids also prove the same tokenization.
        argument (`str`): how the caller passes the teacher's tokenizer, named in the error.
        cross_tokenizer_fix (`bool`): name `DistillationConfig.cross_tokenizer` as a fix (training can use it).
    """
    num_tokens = tokenizer_rows(tokenizer, student_rows)
    tokenizer_rows(tokenizer, teacher_rows, who="teacher")
    if teacher_tokenizer is None:
        problem = _unknown_teacher_problem(tokenizer, teacher_rows, teacher_config)
        if problem is not None:
            raise VocabularyMismatchError(
                f"The teacher's tokenizer could not be found, and what can be checked does not match the student's: "
                f"the teacher has {problem}. Pass the teacher's tokenizer (`{argument}=AutoTokenizer."
                f"from_pretrained(teacher_id)`) so it can be compared, " + _SEQUENCE_LEVEL_FIX
            )
        logger.info("The teacher's tokenizer is unknown; its size (%d rows) and special tokens match the student's. "
                    "Pass `%s=` to compare the tokenizers themselves.", teacher_rows, argument)
    elif not same_tokenization(tokenizer, teacher_tokenizer, texts):
        raise VocabularyMismatchError(
            f"The teacher's tokenizer ({type(teacher_tokenizer).__name__}, {len(teacher_tokenizer)} tokens; "
            f"{teacher_rows} embedding rows) does not match the student's ({type(tokenizer).__name__}, "
            f"{num_tokens} tokens; {student_rows} embedding rows): it splits text into other token ids. Logit "
            "distillation needs the same tokenizer (vocabulary, merges, pre-tokenizer and normalizer; the teacher may "
            "add tokens). "
            f"Choose a teacher of the student's family, check `{argument}=` names the teacher's own tokenizer, "
            + (_CROSS_TOKENIZER_FIX if cross_tokenizer_fix else "") + _SEQUENCE_LEVEL_FIX
        )
    return num_tokens


def shares_vocabulary(tokenizer: PreTrainedTokenizerBase, **kwargs) -> bool:
    """[`check_shared_vocabulary`] as a yes/no, for callers that fall back instead of failing (the benchmark)."""
    try:
        check_shared_vocabulary(tokenizer, **kwargs)
    except VocabularyMismatchError:
        return False
    return True
