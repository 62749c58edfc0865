"""Third-party log lines a user cannot act on, demoted to one debug record each.

bitsandbytes is imported by peft (so by every command, `--help` included) and logs at import that it could not load
an optional CPU kernel; its 8-bit matmul logs a dtype cast on every call (thousands of lines per run). Neither asks
anything of the user. Their first occurrence is kept at DEBUG level (`--debug` shows it); the rest are dropped.
"""

from __future__ import annotations

import logging
import re
import warnings

__all__ = ["UNACTIONABLE_LOG_LINES", "UNACTIONABLE_WARNINGS", "silence_unactionable_logs"]

logger = logging.getLogger(__name__)

# logger name -> start of the messages it emits that the user cannot act on
UNACTIONABLE_LOG_LINES: dict[str, tuple[str, ...]] = {
    "bitsandbytes.backends.cpu.ops": ("Failed to load CPU gemm_4bit_forward",),
    "bitsandbytes.autograd._functions": ("MatMul8bitLt: inputs will be cast",),
    "kernels._internals.hf_hub": ("Skipping publisher trust check",),
}


# (category, start of the message) of Python warnings raised inside third-party code, not by anything the user wrote:
# peft reads `model.is_gradient_checkpointing`, which transformers 5 deprecates, on every PEFT model it wraps; TRL's
# `unwrap_model_for_generation` (on-policy sampling) also calls the deprecated disable/enable around `generate`.
UNACTIONABLE_WARNINGS: tuple[tuple[type[Warning], str], ...] = (
    (FutureWarning, "`is_gradient_checkpointing` is deprecated"),
    (FutureWarning, "`gradient_checkpointing_disable` is deprecated"),
    (FutureWarning, "`gradient_checkpointing_enable` is deprecated"),
)


class _DemoteToDebugOnce(logging.Filter):
    """Drops the records whose message starts with one of `prefixes`, after logging the first of each at DEBUG."""

    def __init__(self, prefixes: tuple[str, ...]):
        super().__init__()
        self.prefixes = prefixes
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        prefix = next((p for p in self.prefixes if message.startswith(p)), None)
        if prefix is None:
            return True
        if prefix not in self.seen:
            self.seen.add(prefix)
            logger.debug("%s (from %s; shown once, further ones dropped)", message, record.name)
        return False


def silence_unactionable_logs() -> None:
    """Install the filters (idempotent). Must run before bitsandbytes is imported to catch its import-time line."""
    for category, prefix in UNACTIONABLE_WARNINGS:
        warnings.filterwarnings("ignore", message=re.escape(prefix), category=category)
    for name, prefixes in UNACTIONABLE_LOG_LINES.items():
        target = logging.getLogger(name)
        if not any(isinstance(f, _DemoteToDebugOnce) for f in target.filters):
            target.addFilter(_DemoteToDebugOnce(prefixes))
