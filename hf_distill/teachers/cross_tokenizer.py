"""A live teacher with another tokenizer (`DistillationConfig.cross_tokenizer="uld"` or `"span"`).

Each row is tokenized for both models before training: the prompt rendered with each model's own chat template (or
tokenized as plain text), then the completion text tokenized on its own by each tokenizer, then each model's EOS.
[`hf_distill.alignment`] matches the two completions' tokens by the bytes they cover, and the position rule pairs
the token before each matched span in both sequences (it predicts the span's first token), and the last completion
token of both (it predicts each model's EOS, which are paired as one shared token). The collator pads the
teacher's ids and the paired positions of each row; the loss ([`hf_distill.losses.cross_tokenizer`]) compares the two
next-token distributions at the paired positions, while cross-entropy still counts every completion token.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ..alignment import align_text, predicting_positions, shared_vocabulary
from ..errors import HfDistillError
from ..heads import OutputHead, final_hidden_states, live_head
from ..losses.cross_tokenizer import VocabularyPairs, cross_tokenizer_kd_terms
from ..losses.terms import KDTerms, LossSettings
from ..nonfinite import check_teacher_finite
from ..vocabulary import find_tokenizer, hub_kwargs, tokenizer_rows
from .local_model import TEACHER_DTYPE_FIX, LocalModelTeacher
from .served import ServedTeacher

if TYPE_CHECKING:
    from ..training.trainer import DistillationTrainer

logger = logging.getLogger(__name__)

__all__ = [
    "CrossTokenizerError", "CrossTokenizerTargets", "CrossTokenizerTeacher", "tokenize_pair", "vocabulary_pairs",
]

#: Columns the rows carry for the teacher, with the collator's padding values.
TEACHER_IDS, TEACHER_MASK = "teacher_input_ids", "teacher_attention_mask"
STUDENT_POSITIONS, TEACHER_POSITIONS = "aligned_student_positions", "aligned_teacher_positions"


class CrossTokenizerError(HfDistillError, ValueError):
    """`cross_tokenizer=` cannot serve this teacher or data; the message names the setting, the value and the fix."""


@dataclass
class CrossTokenizerTargets:
    """The teacher's final hidden states at the matched positions `(matched, hidden)`, its head, the row of the
    student's trained positions each is paired with `(matched,)`, the method and the shared vocabulary."""

    hidden: torch.Tensor
    head: OutputHead
    student_index: torch.Tensor
    method: str
    pairs: VocabularyPairs

    def kd_terms(
        self, student_hidden: torch.Tensor, student_head: OutputHead, labels: torch.Tensor, settings: LossSettings
    ) -> KDTerms:
        return cross_tokenizer_kd_terms(student_hidden, student_head, labels, self.hidden, self.head,
                                        self.student_index, settings, method=self.method, pairs=self.pairs)


def _render_prompt(tokenizer, prompt, who: str) -> list[int]:
    """The prompt's ids as the model sees it: its chat template with the generation prompt, or plain text (with the
    tokenizer's special tokens, as SFT tokenizes it)."""
    if isinstance(prompt, str):
        return list(tokenizer(prompt)["input_ids"])
    if not tokenizer.chat_template:
        raise CrossTokenizerError(
            f"The {who}'s tokenizer has no chat template, and the data is conversational: each model renders the "
            f"prompt with its own template under `cross_tokenizer=`. Set one (`{who}_tokenizer.chat_template = ...`) "
            "or pass the data as plain-text prompt/completion columns."
        )
    return list(tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True, return_dict=False))


def _completion_text(completion) -> str:
    if isinstance(completion, str):
        return completion
    return "".join(message["content"] for message in completion)  # the assistant turn(s) of conversational data


def tokenize_pair(row, *, tokenizer, teacher_tokenizer, max_length: int | None) -> dict[str, list[int]]:
    """One prompt/completion row tokenized for both models, with the matched positions (see the module doc)."""
    student_prompt = _render_prompt(tokenizer, row["prompt"], "student")
    teacher_prompt = _render_prompt(teacher_tokenizer, row["prompt"], "teacher")
    alignment = align_text(tokenizer, teacher_tokenizer, _completion_text(row["completion"]))
    student_ids = student_prompt + list(alignment.student.ids) + [tokenizer.eos_token_id]
    teacher_ids = teacher_prompt + list(alignment.teacher.ids) + [teacher_tokenizer.eos_token_id]
    completion_mask = [0] * len(student_prompt) + [1] * (len(student_ids) - len(student_prompt))
    if max_length is not None:  # keep_start, on both sides; a pair survives only if both predicted tokens do
        student_ids, teacher_ids, completion_mask = (
            student_ids[:max_length], teacher_ids[:max_length], completion_mask[:max_length]
        )
    positions = predicting_positions(alignment.spans, student_offset=len(student_prompt),
                                     teacher_offset=len(teacher_prompt))
    # the end of the text is a boundary of both: the last completion (or prompt) token predicts each model's EOS
    positions.append((len(student_prompt) + len(alignment.student.ids) - 1,
                      len(teacher_prompt) + len(alignment.teacher.ids) - 1))
    positions = [(s, t) for s, t in positions if 0 <= s < len(student_ids) - 1 and 0 <= t < len(teacher_ids) - 1]
    return {
        "input_ids": student_ids, "completion_mask": completion_mask,
        TEACHER_IDS: teacher_ids, TEACHER_MASK: [1] * len(teacher_ids),
        STUDENT_POSITIONS: [s for s, _ in positions], TEACHER_POSITIONS: [t for _, t in positions],
    }


def vocabulary_pairs(tokenizer, teacher_tokenizer, *, student_vocab: int, teacher_vocab: int) -> VocabularyPairs:
    """The shared vocabulary of the two tokenizers, plus the two EOS tokens paired (both end the text)."""
    student_ids, teacher_ids = shared_vocabulary(tokenizer, teacher_tokenizer)
    student_eos, teacher_eos = tokenizer.eos_token_id, teacher_tokenizer.eos_token_id
    if student_eos is not None and student_eos not in student_ids and teacher_eos not in teacher_ids:
        student_ids, teacher_ids = [*student_ids, student_eos], [*teacher_ids, teacher_eos]
    return VocabularyPairs.from_lists(student_ids, teacher_ids, student_vocab=student_vocab,
                                      teacher_vocab=teacher_vocab)


class CrossTokenizerTeacher(LocalModelTeacher):
    """A frozen causal LM whose tokenizer differs from the student's, distilled at positions matched by text.

    Args:
        teacher (`str`, `os.PathLike` or `nn.Module`): Hub id, local path or model.
        init_kwargs (`dict`, *optional*): `from_pretrained` keyword arguments when `teacher` is an id or path.
        teacher_tokenizer (*optional*): the teacher's own tokenizer; found beside the teacher when None (required).

    Example:

    ```python
    >>> args = DistillationConfig(output_dir="out", cross_tokenizer="span")
    >>> trainer = DistillationTrainer(model="HuggingFaceTB/SmolLM2-135M-Instruct", teacher_model="Qwen/Qwen2.5-1.5B",
    ...                               args=args, train_dataset=prompt_completion_rows)
    ```
    """

    dataset_columns = (TEACHER_IDS, TEACHER_MASK, STUDENT_POSITIONS, TEACHER_POSITIONS)
    scores_new_sequences = False  # its targets are aligned to the dataset's own completions

    def __init__(self, teacher, init_kwargs=None, *, teacher_tokenizer=None, trust_remote_code=False):
        if teacher_tokenizer is None:  # before loading the weights: without it nothing can be aligned
            located = hub_kwargs({**(init_kwargs or {}), "trust_remote_code": trust_remote_code})
            teacher_tokenizer = find_tokenizer(teacher, **located)
        if teacher_tokenizer is None or teacher_tokenizer.eos_token_id is None:
            missing = "has no EOS token" if teacher_tokenizer is not None else "could not be found"
            raise CrossTokenizerError(
                f"`cross_tokenizer=` needs the teacher's own tokenizer, and it {missing} (teacher {teacher!r}): pass "
                "`teacher_processing_class=AutoTokenizer.from_pretrained(teacher_id)` to DistillationTrainer."
            )
        super().__init__(teacher, init_kwargs, teacher_tokenizer=teacher_tokenizer,
                         trust_remote_code=trust_remote_code)
        pad = teacher_tokenizer.pad_token_id
        self.collator_sequence_columns = {TEACHER_IDS: teacher_tokenizer.eos_token_id if pad is None else pad,
                                          TEACHER_MASK: 0, STUDENT_POSITIONS: -1, TEACHER_POSITIONS: -1}
        self.pairs: VocabularyPairs | None = None
        self._args = None

    def prepare_dataset(self, dataset, processing_class, args, dataset_name: str):
        tokenizer = getattr(processing_class, "tokenizer", processing_class)
        kwargs = {"desc": f"Tokenizing the {dataset_name} dataset for both tokenizers"} if hasattr(dataset,
                                                                                                  "__len__") else {}
        return dataset.map(
            tokenize_pair, remove_columns=list(dataset.column_names or []),
            fn_kwargs={"tokenizer": tokenizer, "teacher_tokenizer": self.teacher_tokenizer,
                       "max_length": args.max_length},
            **kwargs,
        )

    def setup(self, trainer: DistillationTrainer) -> None:
        self._args = trainer.args
        self.head = OutputHead.from_model(self.model)
        student_tokens = tokenizer_rows(trainer.tokenizer, trainer.student_head.num_rows)
        teacher_tokens = tokenizer_rows(self.teacher_tokenizer, self.head.num_rows, who="teacher")
        trainer.student_head.vocab_size, self.head.vocab_size = student_tokens, teacher_tokens
        self.pairs = vocabulary_pairs(trainer.tokenizer, self.teacher_tokenizer, student_vocab=student_tokens,
                                      teacher_vocab=teacher_tokens).to(trainer.accelerator.device)
        logger.info("Distilling across tokenizers (%s): %d of the student's %d tokens and of the teacher's %d share "
                    "their text.", trainer.args.cross_tokenizer, len(self.pairs.student_ids), student_tokens,
                    teacher_tokens)
        self.model = self._place(trainer)
        self.head = OutputHead.from_model(self.model, vocab_size=teacher_tokens)

    @torch.no_grad()
    def targets(self, inputs: dict[str, torch.Tensor], position_mask: torch.Tensor) -> CrossTokenizerTargets:
        hidden = final_hidden_states(self.model, input_ids=inputs[TEACHER_IDS], attention_mask=inputs[TEACHER_MASK])
        student_positions, teacher_positions = inputs[STUDENT_POSITIONS], inputs[TEACHER_POSITIONS]
        matched = student_positions >= 0
        rows = torch.arange(matched.shape[0], device=matched.device).unsqueeze(1).expand_as(matched)[matched]
        # Row of each trained student position in `student_hidden` (row-major, as the trainer selects them).
        trained_row = torch.full(position_mask.shape, -1, dtype=torch.long, device=position_mask.device)
        trained_row[position_mask] = torch.arange(int(position_mask.sum()), device=position_mask.device)
        student_index = trained_row[rows, student_positions[matched]]
        kept = student_index >= 0  # a position TRL's preparation left untrained has no student row
        teacher_hidden = hidden[rows[kept], teacher_positions[matched][kept]]
        check_teacher_finite(teacher_hidden, dtype=teacher_hidden.dtype, what="final hidden states",
                             fix_flag=TEACHER_DTYPE_FIX)
        return CrossTokenizerTargets(
            hidden=teacher_hidden, head=live_head(self.model, vocab_size=self.head.vocab_size),
            student_index=student_index[kept], method=self._args.cross_tokenizer, pairs=self.pairs,
        )

    @classmethod
    def from_trainer_inputs(cls, teacher_model, args, dataset_columns, **kwargs) -> CrossTokenizerTeacher | None:
        """The registry entry: applies when `args.cross_tokenizer` is set; refuses what it cannot serve before any
        model is loaded."""
        if getattr(args, "cross_tokenizer", None) is None:
            return None
        teacher = teacher_model if teacher_model is not None else args.teacher_model_name_or_path
        problems = []
        served = isinstance(teacher, ServedTeacher) or (isinstance(teacher, str) and "://" in teacher)
        if kwargs.get("teacher_server") is not None or served:
            problems.append("a served teacher (vLLM/SGLang) returns top-k log-probabilities over its own tokens for "
                            "the student's token ids, which it cannot read; give the teacher as a model, id or path, "
                            "or let the server write a cache across tokenizers first (`cache_teacher_logits("
                            "ServedTeacher(url, top_k=k), rows, tokenizer=teacher_tokenizer, "
                            "student_tokenizer=student_tokenizer, ...)`) and train on it")
        if teacher is None:
            problems.append("there is no live teacher (`teacher_model=`, --teacher_model_name_or_path) and no "
                            "cached cross-tokenizer teacher (`cache_teacher_logits(..., student_tokenizer=)`)")
        if dataset_columns and not {"prompt", "completion"} <= set(dataset_columns):
            problems.append(f"the training data has columns {sorted(dataset_columns)}; matching positions by text "
                            "needs `prompt` and `completion` columns (plain text or conversational)")
        if problems:
            raise CrossTokenizerError(f"`cross_tokenizer={args.cross_tokenizer!r}` (--cross_tokenizer) cannot be "
                                      "used here: " + "; ".join(problems) + ".")
        return cls(teacher, args.teacher_model_init_kwargs, teacher_tokenizer=kwargs.get("teacher_processing_class"),
                   trust_remote_code=args.trust_remote_code)

