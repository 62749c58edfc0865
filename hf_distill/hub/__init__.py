"""`hf_distill.hub`: the Hub pushes under their public path. The code lives in `hf_distill.publish`."""

from .._lazy import lazy_namespace

_EXPORTS = {
    "DatasetPushError": "..publish.dataset",
    "DatasetPushResult": "..publish.dataset",
    "HubAuthError": "..publish.repo",
    "PUSH_MODES": "..publish.student",
    "PushError": "..publish.repo",
    "PushPlan": "..publish.student",
    "PushResult": "..publish.student",
    "SpaceConfigError": "..publish.space",
    "SpaceCreationError": "..publish.space",
    "SpaceResult": "..publish.space",
    "create_space": "..publish.space",
    "merge_adapter": "..publish.student",
    "plan_push": "..publish.student",
    "push_dataset": "..publish.dataset",
    "push_student": "..publish.student",
    "require_token": "..publish.repo",
    "resolve_token": "..publish.repo",
    "validate_repo_id": "..publish.repo",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_namespace(__name__, _EXPORTS)
