"""Cost: parameters, bytes on disk, memory, and generation latency, all measured on the machine that runs the
benchmark, which `describe_hardware` names.

Latency follows the usual serving benchmarks: for each batch size, `num_warmup_runs` untimed runs, then
`num_latency_runs` timed runs of greedy generation of exactly `max_new_tokens` tokens per row (stopping early is
forbidden so every run does the same work). Time to first token is the time from the call to the end of the first
decoding step (prefill included); tokens/s counts every generated token of the batch over the whole call. The
report keeps the median and the spread (min, max, standard deviation) of the runs.
"""

from __future__ import annotations

import contextlib
import copy
import glob
import os
import platform
import re
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence

import torch
import transformers
from torch import nn
from transformers import LogitsProcessor, PreTrainedTokenizerBase

from .._version import __version__
from ..heads import unwrap_model
from ..safe_loading import WEIGHT_FILE_PATTERNS
from .generation import generate_batch, model_device
from .report import CostMetrics, Hardware, LatencyResult, Measurement

__all__ = ["describe_hardware", "measure_cost", "measure_latency", "weights_on_disk"]


# -- size -----------------------------------------------------------------------------------------------------------


def count_parameters(model: nn.Module) -> int:
    """All parameters (LoRA ones included); 4-bit packed weights counted unpacked, as transformers counts them."""
    inner = unwrap_model(model)
    if hasattr(inner, "num_parameters"):
        return int(inner.num_parameters())
    return sum(p.numel() for p in inner.parameters())


def _folder_weight_bytes(folder: str) -> int:
    files = {path for pattern in WEIGHT_FILE_PATTERNS for path in glob.glob(os.path.join(folder, pattern))}
    return sum(os.path.getsize(path) for path in files)


def _hub_cache_folder(repo_id: str) -> str | None:
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(repo_id, local_files_only=True, allow_patterns=list(WEIGHT_FILE_PATTERNS))
    except Exception:  # not a repo id, or not in the local cache: the caller saves the model instead
        return None


def _saved_weight_bytes(model: nn.Module) -> int:
    with tempfile.TemporaryDirectory(prefix="hf_distill_size_") as folder:
        model.save_pretrained(folder, safe_serialization=True)
        return _folder_weight_bytes(folder)


def _located_bytes(name: str | None) -> tuple[int | None, str]:
    """Weight bytes of a local folder or of a cached Hub snapshot named `name`; None when neither exists."""
    if name and os.path.isdir(name) and _folder_weight_bytes(name):
        return _folder_weight_bytes(name), "folder"
    folder = _hub_cache_folder(name) if name and not os.path.isabs(name) else None
    if folder and _folder_weight_bytes(folder):
        return _folder_weight_bytes(folder), "hub cache"
    return None, ""


def _own_weights_on_disk(model: nn.Module, source: str | None) -> tuple[int, str]:
    size, where = _located_bytes(source)
    if size is not None:
        return size, where
    return _saved_weight_bytes(model), "saved"


def weights_on_disk(model: nn.Module, source: str | None = None) -> tuple[int, str]:
    """Bytes of the weight files needed to run `model` and where they were measured: its folder, its Hub cache
    snapshot, or a `save_pretrained` (safetensors) into a temporary folder when it exists only in memory. A PEFT
    model counts its adapter plus its base model (the merged weights when the base exists only in memory)."""
    if not (hasattr(model, "peft_config") and hasattr(model, "merge_and_unload")):
        return _own_weights_on_disk(model, source)
    adapter_bytes, adapter_where = _own_weights_on_disk(model, source)
    base_name = getattr(next(iter(model.peft_config.values()), None), "base_model_name_or_path", None)
    base_bytes, base_where = _located_bytes(base_name)
    if base_bytes is None:
        base_bytes, base_where = _saved_weight_bytes(copy.deepcopy(model).merge_and_unload()), "saved merged"
    return adapter_bytes + base_bytes, f"adapter {adapter_where} + base {base_where}"


# -- memory ---------------------------------------------------------------------------------------------------------


def _rss_bytes(field: str) -> int:
    with open("/proc/self/status") as status:
        return int(re.search(rf"{field}:\s+(\d+) kB", status.read()).group(1)) * 1024


@contextlib.contextmanager
def peak_memory_increase(device: torch.device) -> Iterator[dict]:
    """Yields a dict that holds, after the block, `bytes`: the highest memory increase during the block, and
    `source`: what was measured (the CUDA caching allocator, or the process's peak resident set on CPU, reset through
    `/proc/self/clear_refs`, or sampled with `psutil` where that file is missing)."""
    result: dict = {"bytes": None, "source": None}
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        yield result
        torch.cuda.synchronize(device)
        result.update(bytes=torch.cuda.max_memory_allocated(device) - before, source="cuda allocator")
        return
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")  # resets VmHWM, the peak resident set, to the current one
        before = _rss_bytes("VmRSS")
    except OSError:
        with _sampled_peak_rss() as sampled:
            yield result
        result.update(sampled)
        return
    yield result
    result.update(bytes=max(_rss_bytes("VmHWM") - before, 0), source="process peak RSS")


@contextlib.contextmanager
def _sampled_peak_rss(interval_s: float = 0.005) -> Iterator[dict]:
    result: dict = {"bytes": None, "source": None}
    try:
        import psutil
    except ImportError:  # nothing can measure it here: the report says None rather than a guess
        yield result
        return
    process, peak, done = psutil.Process(), [0], threading.Event()
    before = process.memory_info().rss

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            done.wait(interval_s)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield result
    finally:
        done.set()
        thread.join()
    result.update(bytes=max(peak[0] - before, 0), source="process RSS (sampled)")


# -- latency --------------------------------------------------------------------------------------------------------


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _StepClock(LogitsProcessor):
    """Stamps the time at which each decoding step's logits are ready."""

    def __init__(self, device: torch.device):
        self.device = device
        self.times: list[float] = []

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        _synchronize(self.device)
        self.times.append(time.perf_counter())
        return scores


def _timed_generation(model, tokenizer, prompts, max_new_tokens: int) -> tuple[float, float]:
    """One greedy call: (time to first token in s, generated tokens per second)."""
    device = model_device(model)
    clock = _StepClock(device)
    _synchronize(device)
    start = time.perf_counter()
    completions = generate_batch(
        model, tokenizer, prompts, max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens,
        logits_processor=[clock],
    )
    _synchronize(device)
    elapsed = time.perf_counter() - start
    num_tokens = sum(len(ids) for ids in completions)
    return clock.times[0] - start, num_tokens / elapsed


def measure_latency(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[Sequence[int]],
    *,
    batch_size: int,
    max_new_tokens: int,
    num_runs: int,
    num_warmup_runs: int = 1,
) -> LatencyResult:
    """Time greedy generation of the first `batch_size` prompts (repeated when there are fewer)."""
    batch = [prompts[i % len(prompts)] for i in range(batch_size)]
    for _ in range(num_warmup_runs):
        _timed_generation(model, tokenizer, batch, max_new_tokens)
    with peak_memory_increase(model_device(model)) as memory:
        runs = [_timed_generation(model, tokenizer, batch, max_new_tokens) for _ in range(num_runs)]
    footprint = memory_footprint(model)
    return LatencyResult(
        batch_size=batch_size,
        num_new_tokens=max_new_tokens,
        time_to_first_token_s=Measurement.from_samples([ttft for ttft, _ in runs]),
        tokens_per_second=Measurement.from_samples([speed for _, speed in runs]),
        peak_memory_bytes=None if memory["bytes"] is None else footprint + memory["bytes"],
        peak_memory_source=memory["source"],
    )


def memory_footprint(model: nn.Module) -> int:
    """Bytes of the model's parameters and buffers in memory."""
    inner = unwrap_model(model)
    if hasattr(inner, "get_memory_footprint"):
        return int(inner.get_memory_footprint())
    return sum(t.numel() * t.element_size() for t in [*inner.parameters(), *inner.buffers()])


def measure_cost(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[Sequence[int]],
    *,
    source: str | None,
    batch_sizes: Sequence[int],
    max_new_tokens: int,
    num_runs: int,
    num_warmup_runs: int,
) -> CostMetrics:
    """Every cost number of one model: size, memory and latency at each batch size."""
    disk_bytes, disk_source = weights_on_disk(model, source)
    latency = [
        measure_latency(
            model, tokenizer, prompts, batch_size=size, max_new_tokens=max_new_tokens, num_runs=num_runs,
            num_warmup_runs=num_warmup_runs,
        )
        for size in batch_sizes
    ]
    return CostMetrics(
        num_parameters=count_parameters(model),
        disk_bytes=disk_bytes,
        disk_source=disk_source,
        memory_footprint_bytes=memory_footprint(model),
        dtype=str(next(unwrap_model(model).parameters()).dtype).removeprefix("torch."),
        device=str(model_device(model)),
        latency=latency,
    )


# -- hardware -------------------------------------------------------------------------------------------------------


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            match = re.search(r"model name\s*:\s*(.+)", info.read())
        if match:
            return match.group(1).strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def describe_hardware(devices: Sequence[torch.device | str]) -> Hardware:
    """The machine the numbers were measured on: CPU, cores, threads, memory, and each accelerator used."""
    accelerators = []
    for device in sorted({str(d) for d in devices}):
        if device.startswith("cuda"):
            props = torch.cuda.get_device_properties(torch.device(device))
            accelerators.append(f"{props.name} ({props.total_memory / 2**30:.1f} GiB)")
    return Hardware(
        cpu=_cpu_name(),
        num_cpu_cores=os.cpu_count() or 0,
        num_threads=torch.get_num_threads(),
        memory_bytes=_memory_bytes(),
        accelerators=accelerators,
        platform=platform.platform(),
        versions={
            "python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "hf_distill": __version__,
        },
    )
