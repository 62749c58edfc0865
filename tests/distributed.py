"""Launching several processes in tests: `torch.distributed.run` from this interpreter (never a `torchrun` from
PATH), gloo on CPU, at a free loopback port; and killing a running process once it has written a file."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (closed again once found)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def two_process_launcher() -> list[str]:
    """The command prefix that runs a script or `-m module` in 2 processes on this machine."""
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
            "--master_port", str(free_port())]


# DeepSpeed comes with the `dev` and `deepspeed` extras; an install without them skips the ZeRO-3 tests.
DEEPSPEED_SKIP_REASON = 'DeepSpeed is not installed: python -m pip install -e ".[deepspeed]" (the dev extra has it)'


def deepspeed_missing() -> bool:
    try:
        import deepspeed  # noqa: F401
    except ImportError:
        return True
    return False


def sigkill_once_written(process: subprocess.Popen, path: Path, what: str, timeout: float = 300) -> None:
    """Wait until `process` has written `path` (`what` names it in the failure messages), then SIGKILL it."""
    deadline = time.time() + timeout
    while not path.exists():
        assert process.poll() is None, f"the run ended before its {what}"
        assert time.time() < deadline, f"no {what} within {timeout:.0f} s"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
