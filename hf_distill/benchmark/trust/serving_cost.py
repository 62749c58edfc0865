"""Cost of serving, from the benchmark's measured generation throughput and peak memory: tokens per second per GB,
dollars (or any currency) per million generated tokens at a price per hour the user gives, and the number of served
tokens after which the student's lower serving cost has paid for its training compute at the same price."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ServingCost", "break_even_tokens", "serving_cost"]


@dataclass
class ServingCost:
    """Args:
        batch_size (`int`): the timed batch size the numbers come from (the largest one measured).
        tokens_per_second (`float`): median generated tokens/s of the whole batch.
        peak_memory_gb (`float` or None): peak memory while generating, in GB (10^9 bytes).
        tokens_per_second_per_gb (`float` or None): throughput per GB of peak memory.
        price_per_hour (`float` or None): the price given, per hour of the machine.
        cost_per_million_tokens (`float` or None): `price_per_hour / 3600 / tokens_per_second * 1e6`.
    """

    batch_size: int
    tokens_per_second: float
    peak_memory_gb: float | None
    tokens_per_second_per_gb: float | None
    price_per_hour: float | None
    cost_per_million_tokens: float | None


def serving_cost(cost_metrics, price_per_hour: float | None) -> ServingCost | None:
    """From a [`CostMetrics`]: the largest batch size timed (the serving-like setting). None when nothing was timed."""
    if not cost_metrics.latency:
        return None
    latency = max(cost_metrics.latency, key=lambda r: r.batch_size)
    tps = latency.tokens_per_second.median
    memory_gb = latency.peak_memory_bytes / 1e9 if latency.peak_memory_bytes else None
    return ServingCost(
        batch_size=latency.batch_size, tokens_per_second=tps, peak_memory_gb=memory_gb,
        tokens_per_second_per_gb=tps / memory_gb if memory_gb else None, price_per_hour=price_per_hour,
        cost_per_million_tokens=price_per_hour / 3600 / tps * 1e6 if price_per_hour is not None and tps > 0 else None,
    )


def break_even_tokens(student: ServingCost, teacher: ServingCost, training_seconds: float | None) -> float | None:
    """Served tokens at which `training_seconds x price` equals the saving of serving the student instead of the
    teacher. None without a price or training time, or when the student is not cheaper per token."""
    if training_seconds is None or student.cost_per_million_tokens is None or teacher.cost_per_million_tokens is None:
        return None
    saving_per_token = (teacher.cost_per_million_tokens - student.cost_per_million_tokens) / 1e6
    if saving_per_token <= 0:
        return None
    return training_seconds / 3600 * student.price_per_hour / saving_per_token
