"""What the trainer counts and logs, as token sums: the positions its loss trains on, the per-micro-batch sums of
loss, KD, CE, agreement and accuracy, and the examples accelerate repeats to even out the last eval batch.

Logged metrics are these sums over a whole logging window (or eval set) divided by its trained positions, so they do
not depend on the batch size, gradient accumulation, packing or the number of processes."""

from __future__ import annotations

from typing import Any

import torch

__all__ = [
    "STATS", "TokenStatsMixin", "batch_stats", "batch_tokens", "mask_repeated_examples", "trained_positions",
    "window_means",
]

#: the entries of a stats vector; the first five are divided by `positions` when logged, except `teacher_agreement`,
#: divided by `kd_positions` (the positions with a teacher prediction: all of them unless across tokenizers).
STATS = ("loss", "kd_loss", "ce_loss", "teacher_agreement", "mean_token_accuracy", "positions", "kd_positions",
         "tokens")


def trained_positions(labels: torch.Tensor) -> torch.Tensor:
    """`(batch, seq - 1)` mask of the next-token positions the loss counts: those whose label is not -100."""
    return labels[:, 1:] != -100


def batch_tokens(inputs: dict) -> torch.Tensor:
    """Tokens the student read (TRL's `num_tokens`): the attention mask's ones, or every position when padding-free."""
    if "attention_mask" in inputs:
        return inputs["attention_mask"].sum()
    return torch.tensor(inputs["input_ids"].numel(), device=inputs["input_ids"].device)


def batch_stats(objective: torch.Tensor, terms, tokens: torch.Tensor | int) -> torch.Tensor:
    """The float64 stats vector (ordered as [`STATS`]) of one micro-batch; `objective` is
    `alpha * kd_sum + (1 - alpha) * ce_sum` with the alpha the loss used."""
    device = terms.kd_sum.device
    values = [objective, terms.kd_sum, terms.ce_sum, terms.num_teacher_agree, terms.num_label_correct]
    values = [torch.as_tensor(v, device=device).detach().double() for v in values]
    kd_positions = terms.num_positions if terms.num_kd_positions is None else terms.num_kd_positions
    extra = torch.tensor([float(terms.num_positions), float(kd_positions), 0.0], dtype=torch.float64, device=device)
    extra[2] = torch.as_tensor(tokens, device=device).double()
    return torch.cat([torch.stack(values), extra])


def window_means(sums: torch.Tensor) -> dict[str, float] | None:
    """Token-weighted means of a window's summed stats (None when it trained no position), plus its `tokens`."""
    values = dict(zip(STATS, sums.tolist(), strict=True))
    positions = values["positions"]
    if positions <= 0:
        return None
    means = {name: values[name] / positions for name in STATS[:5]}
    if values["kd_positions"] > 0:
        means["teacher_agreement"] = values["teacher_agreement"] / values["kd_positions"]
    means["tokens"] = values["tokens"]
    return means


def _example_ends(inputs: dict) -> list[int]:
    """Where each example of a padding-free batch ends along its one row (exclusive token offsets)."""
    if "example_lengths" in inputs:  # `DistillationCollator` records them: packed rows hold several documents
        return torch.cumsum(inputs["example_lengths"], 0).tolist()
    starts = (inputs["position_ids"][0] == 0).nonzero().flatten().tolist()  # one document per example
    return starts[1:] + [inputs["position_ids"].shape[1]]


def mask_repeated_examples(labels: torch.Tensor, inputs: dict, gradient_state, process_index: int) -> torch.Tensor:
    """`labels` with the examples accelerate repeated at the end of the dataloader set to -100.

    On several processes, accelerate completes the last batch of each process with examples from the start of the
    dataset so that all batches are full; `gradient_state.remainder` says how many examples of that last global
    batch are real, in process order. Summing stats over processes would count the repeats twice.
    """
    remainder = gradient_state.remainder
    if not gradient_state.end_of_dataloader or remainder is None or remainder <= 0:
        return labels
    padding_free = "attention_mask" not in inputs and "position_ids" in inputs and labels.shape[0] == 1
    ends = _example_ends(inputs) if padding_free else list(range(1, labels.shape[0] + 1))
    real = min(max(remainder - process_index * len(ends), 0), len(ends))
    if real == len(ends):
        return labels
    labels = labels.clone()
    if padding_free:
        labels[:, ends[real - 1] if real else 0:] = -100
    else:
        labels[real:] = -100
    return labels


class TokenStatsMixin:
    """The `Trainer` methods that count tokens for [`DistillationTrainer`]: the accumulated batch's trained positions
    (the loss's denominator) and the token sums behind the logged metrics. Put before `SFTTrainer` in the bases;
    `compute_loss` calls `_record_stats` once per micro-batch and the instance sets `_stat_sums = {}`."""

    # `compute_loss` divides by the trained positions of the whole accumulated batch (`_get_num_items_in_batch`),
    # whatever the model class's `accepts_loss_kwargs` says about its own loss.
    loss_is_scaled_for_ga = True

    def _get_num_items_in_batch(self, batch_samples: list, device: torch.device):
        """The positions `compute_loss` trains on in the accumulated batch, summed over processes when
        `average_tokens_across_devices`; counted here rather than by `Trainer`, which counts only for model classes
        whose `accepts_loss_kwargs` is true."""
        if not batch_samples or "labels" not in batch_samples[0]:
            return None
        count = sum(trained_positions(batch["labels"]).sum().to(device) for batch in batch_samples)
        if self.args.average_tokens_across_devices and self.args.world_size > 1:
            count = self.accelerator.reduce(count, reduction="sum")
        return count // self._tp_size

    def _record_stats(self, mode: str, objective: torch.Tensor, terms, inputs: dict[str, Any]) -> None:
        """Add this micro-batch's sums, over every process (a plain all-reduce: each process's rows count once), to the
        mode's logging window; `log` turns them into token-weighted means."""
        tokens = batch_tokens(inputs) if mode == "train" else 0
        stats = self.accelerator.reduce(batch_stats(objective, terms, tokens), reduction="sum")
        if mode == "train":
            self._total_train_tokens += int(stats[-1].item()) // self._tp_size
        self._stat_sums[mode] = stats + self._stat_sums[mode] if mode in self._stat_sums else stats

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """TRL's log, with `kd_loss`, `ce_loss`, `teacher_agreement`, `mean_token_accuracy` (and the training `loss`)
        as token-weighted means over the logging window or the whole eval set."""
        mode = "train" if self.model.training else "eval"
        sums = self._stat_sums.pop(mode, None)
        means = None if sums is None else window_means(sums)
        if means is not None:
            for name in ("kd_loss", "ce_loss", "teacher_agreement", "mean_token_accuracy"):
                self._metrics[mode][name] = [means[name]]
            if mode == "train" and "loss" in logs:
                logs["loss"] = means["loss"]
        self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
        super().log(logs, start_time)

    def evaluation_loop(self, dataloader, description, prediction_loss_only=None, ignore_keys=None,
                        metric_key_prefix: str = "eval"):
        """`Trainer.evaluation_loop`, with `<prefix>_loss` the token-weighted mean over the whole eval set rather than
        a mean of per-batch means."""
        self._stat_sums.pop("eval", None)
        output = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys,
                                         metric_key_prefix)
        means = window_means(self._stat_sums["eval"]) if "eval" in self._stat_sums else None
        if means is not None and f"{metric_key_prefix}_loss" in output.metrics:
            output.metrics[f"{metric_key_prefix}_loss"] = means["loss"]
        return output
