"""The Hub's low-level needs of every push: a checked repo id and a token, both before any request."""

from __future__ import annotations

from huggingface_hub import get_token
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id as _hf_validate_repo_id

from ..errors import HfDistillError

__all__ = ["HubAuthError", "PushError", "require_token", "resolve_token", "validate_repo_id"]


class PushError(HfDistillError, ValueError):
    """The folder, repo id or mode given to `push_student` cannot be pushed as asked."""


class HubAuthError(PushError):
    """No Hugging Face token was found."""


def validate_repo_id(repo_id: str, *, argument: str = "repo_id") -> str:
    """Check a Hub repo id is `namespace/name` with allowed characters; returns it stripped."""
    value = repo_id.strip() if isinstance(repo_id, str) else repo_id
    problem = None
    if not isinstance(value, str) or value.count("/") != 1 or value.startswith("/") or value.endswith("/"):
        problem = "it must be `namespace/name`, e.g. `my-user/Llama-3.2-1B-distilled`"
    else:
        try:
            _hf_validate_repo_id(value)
        except HFValidationError as error:
            problem = str(error).split("\n")[0]
    if problem:
        raise PushError(f"`{argument}` is {repo_id!r}: {problem}.")
    return value


def resolve_token(token: str | None = None) -> str | None:
    """The token to push with: `token`, else `HF_TOKEN`, else the one stored by `hf auth login`. Never logged."""
    return token or get_token()


def require_token(token: str | None = None) -> str:
    """[`resolve_token`], raising [`HubAuthError`] (before any request) when no token is found."""
    token = resolve_token(token)
    if not token:
        raise HubAuthError("No Hugging Face token: pass `token=`, set the HF_TOKEN environment variable, or run "
                           "`hf auth login`. Nothing was uploaded.")
    return token
