"""Creates the Space repo on the Hub and uploads the folder in one commit."""

from __future__ import annotations

from typing import TYPE_CHECKING

from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError

from ..repo import resolve_token
from .errors import SpaceCreationError, payment_required_message

if TYPE_CHECKING:
    from .create import SpaceResult


def push_space_folder(result: SpaceResult, *, private: bool | None, token: str | None) -> SpaceResult:
    """Creates `result.space_id` (a Gradio Space on `result.hardware`; kept as is when it exists) and uploads
    `result.files` from `result.folder` in a single commit; fills the URLs and commit of `result`.

    Raises:
        `SpaceCreationError`: on 402 Payment Required, with the explanation and the ZeroGPU alternative.
    """
    api = HfApi(token=resolve_token(token))
    try:
        url = api.create_repo(
            result.space_id,
            repo_type="space",
            space_sdk="gradio",
            space_hardware=result.hardware,
            private=private,
            exist_ok=True,
        )
    except HfHubHTTPError as error:
        if error.response is not None and error.response.status_code == 402:
            raise SpaceCreationError(payment_required_message(result.space_id, result.hardware)) from error
        raise
    commit = api.upload_folder(
        repo_id=result.space_id,
        repo_type="space",
        folder_path=result.folder,
        allow_patterns=result.files,  # only what create_space wrote, never other files lying in the folder
        commit_message=f"Space demo of {result.card.data.title} (hf_distill)",
    )
    result.space_url = str(url)
    result.commit_url = commit.commit_url
    result.commit_oid = commit.oid
    return result
