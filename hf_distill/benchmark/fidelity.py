"""Fidelity: how closely a model follows the teacher on the held-out completions, teacher-forced.

One pass over the data runs every model that shares the student's vocabulary on the same tokens and reuses the
training loss code (`hf_distill.losses.dense_kd_terms` over each model's `OutputHead`): per completion token, the
cross-entropy of the reference token (quality), and against the teacher the forward KL(p_teacher || p_model) and
whether both pick the same top-1 token (fidelity). Positions are projected to the vocabulary in chunks, so the full
`(tokens, vocab)` logits of the whole set are never held.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from ..heads import OutputHead, backbone_hidden_states, unwrap_model
from ..losses.terms import dense_kd_terms
from ..vocabulary import check_shared_vocabulary, tokenizer_rows
from .examples import EncodedExample
from .generation import model_device

__all__ = ["TokenScores", "aligned_heads", "teacher_forced_scores"]


@dataclass
class TokenScores:
    """Sums over the completion tokens of the held-out set, for one model.

    Args:
        ce_sum (`float`): summed cross-entropy (nats) of the reference tokens.
        num_label_correct (`int`): tokens where the model's top-1 is the reference token.
        num_positions (`int`): completion tokens scored.
        kl_sum (`float`, *optional*): summed forward KL(p_teacher || p_model) (nats); None without a teacher.
        num_teacher_agree (`int`, *optional*): tokens where the model's and the teacher's top-1 agree.
    """

    ce_sum: float = 0.0
    num_label_correct: int = 0
    num_positions: int = 0
    kl_sum: float | None = None
    num_teacher_agree: int | None = None

    @property
    def cross_entropy(self) -> float:
        return self.ce_sum / max(self.num_positions, 1)

    @property
    def perplexity(self) -> float:
        try:
            return math.exp(self.cross_entropy)
        except OverflowError:
            return math.inf

    @property
    def token_accuracy(self) -> float:
        return self.num_label_correct / max(self.num_positions, 1)


def aligned_heads(
    models: Mapping[str, nn.Module],
    tokenizer: PreTrainedTokenizerBase,
    *,
    teacher: str | None,
    teacher_tokenizer: PreTrainedTokenizerBase | None = None,
    texts: Iterable[str] = (),
) -> dict[str, OutputHead]:
    """Output heads of `models`, each counting exactly the tokenizer's rows (padded embeddings are cut, as in
    training). With a teacher, each other model must share its vocabulary by the training rule
    ([`hf_distill.vocabulary.check_shared_vocabulary`]; `teacher_tokenizer` None when the teacher's own tokenizer
    is unknown); raises [`VocabularyMismatchError`] otherwise."""
    heads = {name: OutputHead.from_model(model) for name, model in models.items()}
    for name, head in heads.items():
        if teacher is not None and name != teacher:
            check_shared_vocabulary(
                tokenizer, student_rows=head.num_rows, teacher_rows=heads[teacher].num_rows,
                teacher_tokenizer=teacher_tokenizer, teacher_config=unwrap_model(models[teacher]).config, texts=texts,
                argument="teacher_tokenizer",
            )
        head.vocab_size = tokenizer_rows(tokenizer, head.num_rows, who=name)
    return heads


def _right_pad(batch: Sequence[EncodedExample], pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`input_ids`, `attention_mask` `(batch, longest)` and the mask `(batch, longest - 1)` of positions whose next
    token is a completion token."""
    longest = max(len(e.input_ids) for e in batch)
    input_ids = torch.full((len(batch), longest), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    positions = torch.zeros((len(batch), longest - 1), dtype=torch.bool)
    for row, example in enumerate(batch):
        length = len(example.input_ids)
        input_ids[row, :length] = torch.as_tensor(example.input_ids)
        attention_mask[row, :length] = 1
        positions[row, max(example.completion_start - 1, 0) : length - 1] = True
    return input_ids, attention_mask, positions


def _accumulate(scores: TokenScores, terms, *, with_teacher: bool) -> None:
    scores.ce_sum += float(terms.ce_sum)
    scores.num_label_correct += int(terms.num_label_correct)
    scores.num_positions += int(terms.num_positions)
    if with_teacher:
        scores.kl_sum = (scores.kl_sum or 0.0) + float(terms.kd_sum)
        scores.num_teacher_agree = (scores.num_teacher_agree or 0) + int(terms.num_teacher_agree)


@torch.no_grad()
def teacher_forced_scores(
    models: Mapping[str, nn.Module],
    heads: Mapping[str, OutputHead],
    encoded: Sequence[EncodedExample],
    *,
    teacher: str | None,
    pad_token_id: int,
    batch_size: int = 8,
    chunk_size: int = 512,
) -> dict[str, TokenScores]:
    """[`TokenScores`] of every model on the completions of `encoded` (all models read the same token ids).

    Args:
        models (`Mapping[str, nn.Module]`): causal LMs sharing one vocabulary, by name.
        heads (`Mapping[str, OutputHead]`): their output heads, aligned by [`aligned_heads`].
        teacher (`str`, *optional*): the name in `models` the others are compared with; None scores quality only.
        chunk_size (`int`, *optional*, defaults to `512`): positions projected to the vocabulary at once.
    """
    scores = {name: TokenScores() for name in models}
    for start in range(0, len(encoded), batch_size):
        input_ids, attention_mask, positions = _right_pad(encoded[start : start + batch_size], pad_token_id)
        labels = input_ids[:, 1:][positions]
        hidden = {}
        for name, model in models.items():
            device = model_device(model)
            states = backbone_hidden_states(
                model, input_ids=input_ids.to(device), attention_mask=attention_mask.to(device)
            )
            hidden[name] = states[:, :-1][positions.to(device)]
        for name, states in hidden.items():
            reference = teacher if teacher is not None else name  # against itself: quality terms only
            model_labels = labels.to(states.device)
            for chunk in range(0, len(model_labels), chunk_size):
                window = slice(chunk, chunk + chunk_size)
                terms = dense_kd_terms(
                    states[window], hidden[reference][window].to(states.device), heads[name], heads[reference],
                    model_labels[window], divergence="forward_kl",
                )
                _accumulate(scores[name], terms, with_teacher=teacher is not None and name != teacher)
    return scores

