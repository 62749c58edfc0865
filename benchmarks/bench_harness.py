"""Shared helpers of the benchmarks: run each measured implementation in its own process, time it, read its memory.

One process per implementation keeps peak-memory readings honest: the peak resident set size of a process only ever
grows, so two implementations measured in one process would share a high-water mark.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Timing", "current_rss_bytes", "machine_info", "peak_rss_bytes", "run_worker", "time_call", "worker_reply"]

_REPLY_PREFIX = "BENCH-RESULT "


def current_rss_bytes() -> int:
    """Resident set size of this process now (Linux `/proc/self/statm`)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    """Highest resident set size this process has had (`ru_maxrss` is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@dataclass
class Timing:
    """Wall-clock and process CPU seconds of each timed repeat, their medians, and the last call's result. CPU time
    (all threads) is steadier than wall-clock on a machine shared with other work."""

    seconds: list[float]
    cpu_seconds: list[float]
    result: object = None

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu_seconds)

    def as_dict(self) -> dict:
        return {"seconds": self.median, "all_seconds": self.seconds, "cpu_seconds": self.cpu_median,
                "all_cpu_seconds": self.cpu_seconds}


def time_call(fn: Callable[[], object], *, repeats: int, warmup: int = 1, sync: Callable[[], None] = lambda: None):
    """Run `fn` `warmup` times unmeasured, then `repeats` times measured; returns a [`Timing`]."""
    result = None
    for _ in range(warmup):
        result = fn()
        sync()
    timing = Timing([], [])
    for _ in range(repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        result = fn()
        sync()
        timing.seconds.append(time.perf_counter() - start)
        timing.cpu_seconds.append(time.process_time() - cpu_start)
    timing.result = result
    return timing


def worker_reply(payload: dict) -> None:
    """Print a worker's result as the one line `run_worker` reads back."""
    print(_REPLY_PREFIX + json.dumps(payload), flush=True)


def run_worker(script: str, args: list[str], *, timeout: float | None = None) -> dict:
    """Run `python script *args` in a fresh process and return the dict it printed with `worker_reply`, or
    `{"error": ...}` when it failed (killed for memory, timed out, raised)."""
    try:
        proc = subprocess.run(
            [sys.executable, script, *args], capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(_REPLY_PREFIX):
            return json.loads(line[len(_REPLY_PREFIX):])
    reason = "killed (out of memory?)" if proc.returncode in (-9, 137) else f"exit code {proc.returncode}"
    return {"error": f"{reason}: {proc.stderr.strip()[-600:]}"}


def machine_info() -> dict:
    """Where the numbers were taken: CPU, cores, load, library versions."""
    import torch

    info = {
        "platform": platform.platform(),
        "processor": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_1_5_15": list(os.getloadavg()),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    try:
        import trl

        info["trl"] = trl.__version__
    except ImportError:
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()
