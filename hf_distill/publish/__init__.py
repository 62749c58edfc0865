"""Publishing: licence rules (`licenses/`), provenance (`provenance/`), the student's card, and the pushes of a
student, a dataset and a Space demo (`space/`), each checked before any request and uploaded in one commit.
`repo` holds what every push needs: a checked repo id and a token."""

from .._lazy import lazy_namespace

_EXPORTS = {
    "CardError": ".card",
    "DatasetPushError": ".dataset",
    "DatasetPushResult": ".dataset",
    "HubAuthError": ".repo",
    "LicenseConflictError": ".licenses",
    "LicenseVerdict": ".licenses",
    "PLOT_PATH": ".card",
    "Provenance": ".provenance",
    "ProvenanceError": ".provenance",
    "PushError": ".repo",
    "PushPlan": ".student",
    "PushResult": ".student",
    "SpaceConfigError": ".space",
    "SpaceCreationError": ".space",
    "SpaceResult": ".space",
    "build_model_card": ".card",
    "check_license": ".licenses",
    "collect_provenance": ".provenance",
    "create_space": ".space",
    "plan_push": ".student",
    "push_dataset": ".dataset",
    "push_student": ".student",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_namespace(__name__, _EXPORTS)
