"""`DistillationConfig`: `trl.SFTConfig` plus the teacher and the distillation loss."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trl import SFTConfig

from ..errors import HfDistillError
from ..losses import CROSS_TOKENIZER_METHODS, DIVERGENCES

__all__ = [
    "ConfigFieldPassedToTrainerError",
    "DistillationConfig",
    "DistillationConfigError",
    "HardwareSFTConfig",
    "NotADistillationConfigError",
    "reject_config_fields_in_trainer_kwargs",
]


def _cuda_bf16_available() -> bool:
    import torch

    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def _accelerator_available() -> bool:
    import torch

    return torch.cuda.is_available() or (hasattr(torch, "accelerator") and torch.accelerator.is_available())


def follow_hardware(config: SFTConfig) -> None:
    """Defaults that depend on the machine, set before `SFTConfig.__post_init__` runs:

    - bf16: TRL turns it on everywhere, which fails without a bf16 GPU; on only where the GPU supports it.
    - pinned memory: useless without an accelerator (torch warns on every run); off there.
    - TRL's `gradient_checkpointing=True` default moves to its new name `activation_checkpointing`, so transformers'
      deprecation warning only fires when the user wrote the old name themselves (with a non-default value).
    """
    if config.bf16 is None and not config.fp16:
        config.bf16 = _cuda_bf16_available()
    if config.dataloader_pin_memory and not _accelerator_available():
        config.dataloader_pin_memory = False
    if getattr(config, "activation_checkpointing", False) is None and config.gradient_checkpointing is True:
        config.activation_checkpointing, config.gradient_checkpointing = True, None


class DistillationConfigError(HfDistillError, ValueError):
    """One or more `DistillationConfig` fields are invalid; the message lists every problem and its fix."""


class ConfigFieldPassedToTrainerError(DistillationConfigError, TypeError):
    """A `DistillationConfig` field was given to `DistillationTrainer(...)` as a keyword argument."""


class NotADistillationConfigError(DistillationConfigError, TypeError):
    """`DistillationTrainer(args=...)` got something other than a `DistillationConfig` (e.g. a plain `SFTConfig`)."""


def reject_config_fields_in_trainer_kwargs(kwargs: dict[str, Any]) -> None:
    """Raise [`ConfigFieldPassedToTrainerError`] for keys of `kwargs` (the extra keyword arguments of
    `DistillationTrainer`) that `trl.SFTTrainer` does not take but that are `DistillationConfig` fields, saying where
    they go instead of Python's bare `TypeError: ... got an unexpected keyword argument`."""
    import inspect
    from dataclasses import fields

    from trl import SFTTrainer

    accepted = set(inspect.signature(SFTTrainer.__init__).parameters)
    config_fields = {f.name for f in fields(DistillationConfig)}
    misplaced = sorted(key for key in kwargs if key not in accepted and key in config_fields)
    if misplaced:
        settings = ", ".join(f"{key}=..." for key in misplaced)
        flags = " ".join(f"--{key} ..." for key in misplaced)
        raise ConfigFieldPassedToTrainerError(
            f"{', '.join(repr(k) for k in misplaced)} {'is a field' if len(misplaced) == 1 else 'are fields'} of "
            f"DistillationConfig, not {'an argument' if len(misplaced) == 1 else 'arguments'} of DistillationTrainer: "
            f"pass `args=DistillationConfig(..., {settings})` (on the command line: `hf-distill train {flags}`, or "
            "the same keys in a --config recipe)."
        )


def _json_object(text: str, name: str) -> Any:
    """`text` parsed as JSON; a syntax error names the field and its flag and shows a valid value."""
    import json

    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise DistillationConfigError(
            f"`{name}` (--{name}) is not valid JSON ({error.msg} at character {error.pos} of {text!r}): write a JSON "
            f"object with double-quoted keys, e.g. --{name} '{{\"dtype\": \"bfloat16\"}}'."
        ) from None


@dataclass
class HardwareSFTConfig(SFTConfig):
    """`trl.SFTConfig` whose bf16, pinned-memory and checkpointing defaults follow the machine (see
    `follow_hardware`): the configuration of plain SFT steps (sequence-level distillation) that also run on a CPU."""

    def __post_init__(self):
        follow_hardware(self)
        super().__post_init__()


@dataclass
class DistillationConfig(SFTConfig):
    r"""
    Configuration of [`DistillationTrainer`]: every [`trl.SFTConfig`] field, plus the teacher and the loss.

    The training loss is `alpha * KD + (1 - alpha) * CE`, where KD is the chosen divergence between the student's and
    the teacher's next-token distributions and CE is SFT's cross-entropy on the dataset's labels (its flavour set by
    `loss_type`, `"nll"` or `"dft"`, exactly as in `SFTConfig`). Both terms count the same tokens: the ones SFT trains
    on (completion-only for prompt/completion and messages data, every token for plain text).

    Example:

    ```python
    >>> from hf_distill import DistillationConfig
    >>> args = DistillationConfig(output_dir="student", divergence="jsd", beta=0.5, alpha=0.9)
    >>> args.divergence
    'jsd'
    ```
    """

    # Teacher
    teacher_model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Hub id or local path of the teacher, used when the trainer gets no `teacher_model`. Leave unset "
            "when the training data carries cached teacher logits (`hf-distill cache-logits`)."
        },
    )
    teacher_model_init_kwargs: dict[str, Any] | str | None = field(
        default=None,
        metadata={
            "help": "Keyword arguments for `AutoModelForCausalLM.from_pretrained` when the teacher is loaded from an "
            "id or path, e.g. `{'dtype': 'bfloat16'}` or a `quantization_config` for an 8-bit/4-bit teacher."
        },
    )

    # Loss
    divergence: str = field(
        default="forward_kl",
        metadata={
            "help": "Divergence between student and teacher distributions.",
            "choices": list(DIVERGENCES),
        },
    )
    alpha: float = field(
        default=0.9,
        metadata={
            "help": "Weight of the distillation term; `1 - alpha` weighs cross-entropy on the labels. Hinton et al. "
            "put most of the weight on the soft targets. `alpha=0` is plain SFT."
        },
    )
    beta: float = field(
        default=0.5,
        metadata={
            "help": "Teacher weight in the `jsd` mixture m = (1 - beta) p_student + beta p_teacher, as in TRL's GKD; "
            "0 is forward KL, 1 reverse KL."
        },
    )
    skew: float = field(
        default=0.1,
        metadata={"help": "Mixing weight of `skew_forward_kl` / `skew_reverse_kl` (DistiLLM uses 0.1), in [0, 1)."},
    )
    temperature: float = field(
        default=1.0,
        metadata={
            "help": "Softmax temperature applied to both models' logits. As in TRL, the loss is not multiplied by "
            "temperature**2."
        },
    )
    use_fused_kd_loss: bool = field(
        default=True,
        metadata={
            "help": "Compute the distillation loss from hidden states in token chunks, never holding both models' "
            "full logits (memory-lean at 150k+ vocabularies). Set False to use the dense reference loss."
        },
    )
    kd_chunk_size: int | None = field(
        default=None,
        metadata={"help": "Tokens per chunk of the fused loss; chosen from a memory budget when unset."},
    )
    cross_tokenizer: str | None = field(
        default=None,
        metadata={
            "help": "Logit distillation from a teacher with another tokenizer: both models read the same completion "
            "text (each prompt rendered with its own chat template), positions are matched by text, and the loss is "
            "`uld` (Universal Logit Distillation: sorted probabilities, Wasserstein-1) or `span` (the `divergence` "
            "over the tokens both vocabularies share, plus ULD on the rest). Unset: the tokenizers must match.",
            "choices": list(CROSS_TOKENIZER_METHODS),
        },
    )

    # On-policy (GKD): which completions a batch trains on
    lmbda: float = field(
        default=0.0,
        metadata={
            "help": "Probability that a training batch's completions are sampled from the student (on-policy, as "
            "`lmbda` in TRL's GKD); the teacher scores them. Drawn once per micro-batch from `seed`. 0 trains on the "
            "dataset's completions only (off-policy), 1 on student samples only."
        },
    )
    seq_kd: bool = field(
        default=False,
        metadata={
            "help": "Train the batches that are not student-sampled on completions sampled from the teacher "
            "(sequence-level KD, as `seq_kd` in TRL's GKD) instead of the dataset's. Needs an in-process teacher."
        },
    )
    max_new_tokens: int = field(
        default=128,
        metadata={"help": "Most tokens sampled per completion when `lmbda` > 0 or `seq_kd` (TRL's GKD default)."},
    )
    generation_temperature: float = field(
        default=1.0,
        metadata={
            "help": "Sampling temperature of on-policy (and `seq_kd`) completions; 0 decodes greedily. Separate from "
            "`temperature`, which only softens the loss's distributions."
        },
    )
    generation_top_p: float = field(
        default=1.0,
        metadata={"help": "Nucleus (top-p) sampling of on-policy completions, in (0, 1]; 1 disables it."},
    )
    generation_top_k: int = field(
        default=0,
        metadata={"help": "Top-k sampling of on-policy completions; 0 disables it (as TRL's DistillationConfig)."},
    )

    def __post_init__(self):
        follow_hardware(self)
        super().__post_init__()
        if isinstance(self.teacher_model_init_kwargs, str):
            self.teacher_model_init_kwargs = _json_object(self.teacher_model_init_kwargs, "teacher_model_init_kwargs")
        problems = self.distillation_problems()
        if problems:
            raise DistillationConfigError(
                "Invalid DistillationConfig:\n" + "\n".join(f"- {problem}" for problem in problems)
            )

    def distillation_problems(self) -> list[str]:
        """Every invalid distillation field, each with its value, the valid range and the CLI flag."""
        problems = []
        if self.divergence not in DIVERGENCES:
            problems.append(
                f"`divergence` (--divergence) is {self.divergence!r}; choose one of: {', '.join(DIVERGENCES)}."
            )
        if not 0.0 <= self.alpha <= 1.0:
            problems.append(f"`alpha` (--alpha) is {self.alpha}; it must be in [0, 1] (1 = distillation only).")
        if not 0.0 <= self.beta <= 1.0:
            problems.append(f"`beta` (--beta) is {self.beta}; it must be in [0, 1] (0.5 is the symmetric JSD).")
        if not 0.0 <= self.skew < 1.0:
            problems.append(f"`skew` (--skew) is {self.skew}; it must be in [0, 1) (DistiLLM uses 0.1).")
        if not self.temperature > 0.0:
            problems.append(f"`temperature` (--temperature) is {self.temperature}; it must be > 0 (1.0 = unchanged).")
        if self.kd_chunk_size is not None and self.kd_chunk_size < 1:
            problems.append(f"`kd_chunk_size` (--kd_chunk_size) is {self.kd_chunk_size}; it must be >= 1 or unset.")
        problems += self._on_policy_problems()
        problems += self._cross_tokenizer_problems()
        if self.teacher_model_init_kwargs is not None and not isinstance(self.teacher_model_init_kwargs, dict):
            problems.append(
                "`teacher_model_init_kwargs` (--teacher_model_init_kwargs) must be a dict or a JSON object string, "
                f"got {type(self.teacher_model_init_kwargs).__name__}."
            )
        return problems

    def _on_policy_problems(self) -> list[str]:
        problems = []
        if not 0.0 <= self.lmbda <= 1.0:
            problems.append(f"`lmbda` (--lmbda) is {self.lmbda}; it must be in [0, 1] (the probability that a batch's "
                            "completions are sampled from the student; 0 = off-policy).")
        if self.max_new_tokens < 1:
            problems.append(f"`max_new_tokens` (--max_new_tokens) is {self.max_new_tokens}; it must be >= 1.")
        if not self.generation_temperature >= 0.0:
            problems.append(f"`generation_temperature` (--generation_temperature) is {self.generation_temperature}; "
                            "it must be >= 0 (0 = greedy decoding, 1 = the model's own distribution).")
        if not 0.0 < self.generation_top_p <= 1.0:
            problems.append(f"`generation_top_p` (--generation_top_p) is {self.generation_top_p}; it must be in "
                            "(0, 1] (1 = no nucleus filtering).")
        if self.generation_top_k < 0:
            problems.append(f"`generation_top_k` (--generation_top_k) is {self.generation_top_k}; it must be >= 0 "
                            "(0 = no top-k filtering).")
        if (self.lmbda > 0 or self.seq_kd) and (self.packing or self.padding_free):
            flag = "packing" if self.packing else "padding_free"
            problems.append(f"`{flag}` (--{flag}) is True with `lmbda` {self.lmbda} / `seq_kd` {self.seq_kd}: sampled "
                            f"completions replace each row's completion, so rows cannot be packed. Set {flag}=False, "
                            "or lmbda=0 and seq_kd=False.")
        return problems

    def _cross_tokenizer_problems(self) -> list[str]:
        if self.cross_tokenizer is None:
            return []
        if self.cross_tokenizer not in CROSS_TOKENIZER_METHODS:
            return [f"`cross_tokenizer` (--cross_tokenizer) is {self.cross_tokenizer!r}; choose one of: "
                    f"{', '.join(CROSS_TOKENIZER_METHODS)}, or leave it unset when teacher and student share a "
                    "tokenizer."]
        problems = []
        for name in ("packing", "padding_free"):
            if getattr(self, name):
                problems.append(f"`{name}` (--{name}) is True, but `cross_tokenizer={self.cross_tokenizer!r}` pairs "
                                "each row's student tokens with the teacher's own tokens of the same row: set "
                                f"`{name}=False`.")
        if self.max_length is not None and self.truncation_mode != "keep_start":
            problems.append(f"`truncation_mode` (--truncation_mode) is {self.truncation_mode!r}, but "
                            f"`cross_tokenizer={self.cross_tokenizer!r}` truncates both models' rows from the end: "
                            "use `truncation_mode='keep_start'`.")
        if self.lmbda > 0 or self.seq_kd:
            problems.append(f"`lmbda` (--lmbda) is {self.lmbda} and `seq_kd` (--seq_kd) is {self.seq_kd}, but "
                            f"`cross_tokenizer={self.cross_tokenizer!r}` aligns the two tokenizations of the "
                            "dataset's own completions (sampled completions are not aligned yet): set lmbda=0 and "
                            "seq_kd=False.")
        return problems
