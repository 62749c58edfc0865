"""Errors of the Space generator: bad arguments, and a Hub that refuses to create the Space."""

from __future__ import annotations

from ...errors import HfDistillError


class SpaceConfigError(HfDistillError, ValueError):
    """An argument of `create_space` is wrong; the message names the argument, its value and the fix."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("Cannot create the Space:\n- " + "\n- ".join(self.problems))


class SpaceCreationError(HfDistillError, ValueError):
    """The Hub refused to create the Space (for example 402: the hardware or the Space type needs a paid plan)."""


def payment_required_message(space_id: str, hardware: str) -> str:
    """Explains a 402 on Space creation and offers the ZeroGPU alternative."""
    if hardware == "zero-a10g":
        alternative = (
            "Free personal accounts may host only a few ZeroGPU Spaces (verified e-mail, account older than 30 days): "
            "delete one you no longer need, or subscribe to PRO (https://huggingface.co/subscribe/pro); "
            "organizations need a Team or Enterprise plan."
        )
    else:
        alternative = (
            "The free alternative is ZeroGPU: free personal accounts in good standing may host up to 2 ZeroGPU "
            'Spaces. Create it with `hardware="zero-a10g"` (`hf-distill space --hardware zero-a10g`); the generated '
            "app already runs its models under `@spaces.GPU`. Otherwise subscribe to PRO "
            "(https://huggingface.co/subscribe/pro), or to a Team/Enterprise plan for an organization."
        )
    return (
        f"The Hub answered 402 Payment Required when creating the Space {space_id!r} on hardware {hardware!r}: "
        "creating Gradio Spaces on CPU or dedicated GPU hardware needs a paid plan (PRO for a personal account, "
        f"Team or Enterprise for an organization). {alternative} The Space folder is written and can be pushed "
        "again with `push=True` once the account allows it."
    )
