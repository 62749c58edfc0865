"""Fail fast, with the fix, when a command needs the Hugging Face Hub and cannot reach it.

Without this, each download retries with back-off (28-51 s of doubled warnings were measured) and ends in a raw
`ConnectionError`/`OSError`. Before any model loads, a command that names Hub ids probes the endpoint once with a
short timeout; an error that still reaches the CLI from a lost connection is given the same message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from ..errors import HfDistillError

__all__ = ["HubUnreachableError", "check_hub_reachable", "hub_ids", "is_connection_failure", "unreachable_message"]

_REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
PROBE_TIMEOUT_S = 5.0


class HubUnreachableError(HfDistillError, ConnectionError):
    """The Hub endpoint does not answer; the message says how to go on without it."""


def hub_ids(values: Mapping[str, str | None]) -> dict[str, str]:
    """The `--flag: value` pairs naming a Hub repo rather than an existing local path."""
    return {
        flag: value for flag, value in values.items()
        if isinstance(value, str) and _REPO_ID.match(value) and not Path(value).expanduser().exists()
    }


def unreachable_message(endpoint: str, named: Mapping[str, str], reason: str) -> str:
    what = ", ".join(f"{flag} {value}" for flag, value in named.items()) or "this command"
    return (
        f"Cannot reach the Hugging Face Hub at {endpoint} ({reason}), which {what} needs. Check the network (and "
        "HF_ENDPOINT / proxy settings), pass a local folder instead of the Hub id, or set HF_HUB_OFFLINE=1 to use "
        "models and datasets already in the local cache."
    )


def check_hub_reachable(values: Mapping[str, str | None]) -> None:
    """Raise [`HubUnreachableError`] at once when `values` name Hub ids and the endpoint does not answer one request
    within `PROBE_TIMEOUT_S`. Offline mode (HF_HUB_OFFLINE=1) skips the probe. (Pushes need no probe: they do not
    retry, and `main()` gives their connection errors the same fix.)"""
    from huggingface_hub import constants

    named = hub_ids(values)
    if constants.HF_HUB_OFFLINE or not named:
        return
    import httpx

    try:
        httpx.get(f"{constants.ENDPOINT}/api/whoami-v2", timeout=PROBE_TIMEOUT_S)  # any HTTP answer will do
    except httpx.TransportError as error:
        reason = f"{type(error).__name__}: {error}".rstrip(": ")
        raise HubUnreachableError(unreachable_message(constants.ENDPOINT, named, reason)) from None


def is_connection_failure(error: BaseException) -> bool:
    """Whether `error`, or an error it was raised from, is a lost or refused connection."""
    import httpx

    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, (httpx.TransportError, ConnectionError)):
            return True
        error = error.__cause__ or error.__context__
    return False
