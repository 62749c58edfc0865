"""The teacher of `cache_teacher_logits` when it is served (vLLM or SGLang over HTTP): one batched top-k request per
batch of rows, encoded into the same blobs as an in-process teacher's.

A server returns each position's top-k temperature-1 log-probabilities; the tail's log-mass is `log(1 - sum(top-k))`
(computed in float64), where an in-process teacher sums the exact mass outside the top-k. The two agree up to
float32 rounding except for a teacher so confident that `1 - sum(top-k)` loses its digits (then the stored tail is
smaller than the true one); with `top_k` equal to the vocabulary there is no tail at all.
"""

from __future__ import annotations

import numpy as np
import torch

from ..formats.codec import TopKCodec
from ..losses.sparse import tail_log_probs_from_topk
from ..teachers.served import ServedTeacher

__all__ = ["ServedScorer", "as_served_teacher"]


def as_served_teacher(teacher, top_k: int) -> ServedTeacher | None:
    """`teacher` as a [`ServedTeacher`] asking for `top_k` entries (a `http(s)://` URL is a vLLM server with the
    defaults), or None when it is a model, an id or a path."""
    if isinstance(teacher, ServedTeacher):
        return teacher
    if isinstance(teacher, str) and teacher.startswith(("http://", "https://")):
        return ServedTeacher(teacher, top_k=top_k)
    return None


class ServedScorer:
    """Top-k blobs of tokenized rows from a served teacher; called like the in-process scorer of `logit_cache`."""

    def __init__(self, teacher: ServedTeacher, codec: TopKCodec):
        self.teacher, self.codec = teacher, codec

    def __call__(self, input_ids: list[list[int]], completion_masks: list[list[int]]) -> list[bytes]:
        # Position t predicts token t + 1: cache it when that token is trained on (the last position never is).
        covered = [np.asarray([*mask[1:], 0], dtype=bool) for mask in completion_masks]
        return [self.codec.encode(*scores, mask) for scores, mask in zip(self.score(input_ids, covered), covered,
                                                                          strict=True)]

    def score(self, input_ids: list[list[int]], positions: list[np.ndarray]) -> list[tuple]:
        """Per row, the top-k `(ids, log_probs, tails)` arrays at the positions where `positions[row]` is True (as
        the in-process scorer gives them; the cross-tokenizer cache writer asks for the matched teacher positions)."""
        answers = self.teacher.score_rows([list(ids) for ids in input_ids])
        scores = []
        for ids, wanted, answer in zip(input_ids, positions, answers, strict=True):
            wanted = np.asarray(wanted, dtype=bool)
            # The server answers for every position but the last, which predicts no token of the row (the callers
            # never ask for it: an internal invariant, not an input error).
            assert not wanted[len(ids) - 1:].any(), "the last position of a row has no teacher log-probs"
            keep = torch.from_numpy(wanted[: len(ids) - 1])
            log_probs = answer.log_probs[keep]
            scores.append((answer.token_ids[keep].numpy(), log_probs.float().numpy(), self._tail(log_probs).numpy()))
        return scores

    def _tail(self, log_probs: torch.Tensor) -> torch.Tensor:
        if log_probs.shape[-1] >= self.codec.vocab_size:  # the whole vocabulary: nothing outside it
            return torch.full(log_probs.shape[:-1], float("-inf"))
        return tail_log_probs_from_topk(log_probs)
