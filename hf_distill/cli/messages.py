"""Library error messages, said in the CLI's words: the flags the user typed instead of Python parameters.

The library's messages speak Python (`token=`, `mode='merged'`, `push_student`), right for API users; on the command
line the same message names `--token`, `--mode merged` and `hf-distill push`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["API_COMMANDS", "as_cli_message"]

# public functions -> the subcommand that calls them
API_COMMANDS = {
    "hf_distill.hub.push_student": "hf-distill push",
    "push_student": "hf-distill push",
    "hf_distill.hub.create_space": "hf-distill space",
    "create_space": "hf-distill space",
    "generate_completions": "hf-distill generate",
    "cache_teacher_logits": "hf-distill cache-logits",
}


def as_cli_message(message: str, options: Iterable[str]) -> str:
    """`message` with each Python spelling of one of `options` replaced by its flag:
    `name=True` -> `--name`; `name='v'` / `name=v` -> `--name v`; `name=` -> `--name`; `` `name` `` -> `--name`
    (unless the flag already follows it), and API function names by their subcommand."""
    names = "|".join(sorted((re.escape(o) for o in options), key=len, reverse=True))
    if names:
        message = re.sub(rf"(?<![\w-])({names})=True\b", r"--\1", message)
        message = re.sub(rf"(?<![\w-])({names})=(?:'([^']*)'|\"([^\"]*)\"|([\w./-]+))",
                         lambda m: f"--{m.group(1)} {next(g for g in m.groups()[1:] if g is not None)}", message)
        message = re.sub(rf"(?<![\w-])({names})=(?=[`\s,.;)]|$)", r"--\1", message)
        message = re.sub(rf"`({names})`(?! \(--)", r"`--\1`", message)
    for function, command in API_COMMANDS.items():
        message = re.sub(rf"`?(?<![\w.]){re.escape(function)}(?:\(\))?`?", f"`{command}`", message)
    return message
