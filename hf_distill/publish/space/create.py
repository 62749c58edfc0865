"""`create_space`: write a Gradio Space comparing a distilled student with its teacher, and optionally push it."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from huggingface_hub import SpaceCard, SpaceHardware

from ..repo import PushError, resolve_token, validate_repo_id
from .app_template import MAX_NEW_TOKENS_LIMIT
from .card import build_space_card, default_title
from .errors import SpaceConfigError
from .folder import SpaceFiles, write_space_folder
from .push import push_space_folder
from .requirements import space_requirements
from .sources import ModelSource, benchmark_markdown, card_license, resolve_model_source

logger = logging.getLogger(__name__)

HARDWARE = tuple(flavour.value for flavour in SpaceHardware)


@dataclass
class SpaceResult:
    """What `create_space` wrote and pushed.

    Args:
        folder (`Path`): The Space folder.
        files (`list[str]`): Names of the files written there (and uploaded, with `push=True`).
        card (`SpaceCard`): The README; `card.data` holds its metadata.
        hardware (`str`): The hardware flavour asked for.
        space_id (`str`, *optional*): `namespace/name` of the Space.
        space_url (`str`, *optional*): Its URL, once pushed.
        commit_url (`str`, *optional*): URL of the upload commit, once pushed.
        commit_oid (`str`, *optional*): Hash of that commit.
        warnings (`list[str]`): What the user should look at (unknown licence, ...).
    """

    folder: Path
    files: list[str]
    card: SpaceCard
    hardware: str
    space_id: str | None = None
    space_url: str | None = None
    commit_url: str | None = None
    commit_oid: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def pushed(self) -> bool:
        return self.commit_oid is not None


def _space_id_problem(space_id) -> str | None:
    try:
        validate_repo_id(space_id, argument="space_id")
    except PushError as error:
        return str(error)
    return None


def _token_problem(token) -> str | None:
    if resolve_token(token):
        return None
    return "`push=True` needs a Hugging Face token: pass `token=`, set HF_TOKEN, or run `hf auth login`."


def _validate(
    student, teacher, *, space_id, output_dir, hardware, private, push, token, benchmark, max_new_tokens
) -> tuple[ModelSource, ModelSource | None]:
    """Checks every argument before any work; raises one `SpaceConfigError` listing every problem."""
    problems = []
    if hardware not in HARDWARE:
        problems.append(
            f"`hardware`={hardware!r} is not a Space hardware flavour (`--hardware`): "
            f"choose one of {', '.join(HARDWARE)}."
        )
    if push and space_id is None:
        problems.append("`push=True` needs `space_id` (`--space-id namespace/name`): where to create the Space.")
    if space_id is not None and (problem := _space_id_problem(space_id)):
        problems.append(problem)
    if push and (problem := _token_problem(token)):
        problems.append(problem)
    if private is not None and not isinstance(private, bool):
        problems.append(f"`private`={private!r} must be True, False or None (the account's default).")
    if max_new_tokens is not None and not (
        isinstance(max_new_tokens, int) and 1 <= max_new_tokens <= MAX_NEW_TOKENS_LIMIT
    ):
        problems.append(f"`max_new_tokens`={max_new_tokens!r} must be an integer from 1 to {MAX_NEW_TOKENS_LIMIT}.")
    if isinstance(benchmark, (str, Path)) and not Path(benchmark).is_file():
        problems.append(f"`benchmark`={str(benchmark)!r} is not a file: pass a benchmark report (.json or .md).")
    sources = {}
    for role, value in (("student", student), ("teacher", teacher)):
        if value is None and role == "teacher":
            continue
        sources[role], problem = resolve_model_source(value, role=role)
        if problem:
            problems.append(problem)
        elif push and sources[role].local_path is not None:
            problems.append(
                f"`{role}`={str(value)!r} is a local folder, which a Space on the Hub cannot load: push it first "
                f"(`hf_distill.hub.push_student`) and pass its Hub id."
            )
    out = Path(output_dir).expanduser().resolve()
    if out.exists() and not out.is_dir():
        problems.append(f"`output_dir`={str(output_dir)!r} is a file: give a folder for the Space.")
    for role, source in sources.items():
        if source is not None and source.local_path is not None and source.local_path.resolve() == out:
            problems.append(f"`output_dir` is the {role}'s own folder: its README.md would be overwritten.")
    if problems:
        raise SpaceConfigError(problems)
    return sources["student"], sources.get("teacher")


def create_space(
    student: str | Path,
    *,
    teacher: str | Path | None = None,
    space_id: str | None = None,
    output_dir: str | Path,
    hardware: str = "cpu-basic",
    private: bool | None = None,
    push: bool = False,
    token: str | None = None,
    title: str | None = None,
    license: str | None = None,
    benchmark=None,
    max_new_tokens: int | None = None,
) -> SpaceResult:
    """Writes a Gradio Space that compares a distilled student with its teacher and, with `push=True`, pushes it.

    The folder holds `app.py` (prompt in; both answers streamed side by side with time to first token, total time,
    tokens/s and model size; the benchmark table), `requirements.txt` pinned to the installed versions,
    `README.md` (Space metadata: `sdk: gradio`, `sdk_version`, `models`, `license`, `suggested_hardware`, ...),
    `space_config.json` (the app's defaults; Space variables override them) and `benchmark.md` when a table is found.

    Args:
        student (`str` or `Path`): Hub id or local folder of the student (full model or PEFT adapter).
        teacher (`str` or `Path`, *optional*): Hub id or local folder of the teacher; `None` shows the student alone.
        space_id (`str`, *optional*): `namespace/name` of the Space; needed with `push=True`.
        output_dir (`str` or `Path`): Folder to write the Space into (created if needed).
        hardware (`str`, *optional*, defaults to `"cpu-basic"`): A `huggingface_hub.SpaceHardware` flavour, asked
            for at creation and written as `suggested_hardware`; `"zero-a10g"` is ZeroGPU.
        private (`bool`, *optional*): Visibility of a new Space; `None` is the account's default.
        push (`bool`, *optional*, defaults to `False`): Create the Space (if needed) and upload the folder in one
            commit.
        token (`str` or `bool`, *optional*): Hub token; `None` uses the saved login or `HF_TOKEN`.
        title (`str`, *optional*): Space title; defaults to `"<student> vs <teacher>"`.
        license (`str`, *optional*): Licence id of the Space; defaults to the licence in the student's card.
        benchmark (`BenchmarkReport`, `str` or `Path`, *optional*): The table to show: anything with `to_markdown()`,
            or a `.md`/`.json` report; defaults to a report or card section found beside the student.
        max_new_tokens (`int`, *optional*): Default new tokens in the app; `None`: 64 on CPU, 256 on GPU.

    Returns:
        [`SpaceResult`]: the folder, files, card and, once pushed, the Space and commit URLs.

    Raises:
        `SpaceConfigError`: a bad argument (raised before anything is written).
        `SpaceCreationError`: the Hub refused to create the Space (402: paid plan needed; ZeroGPU is the way out).

    Example:

    ```python
    >>> from hf_distill.hub import create_space
    >>> result = create_space("me/qwen-0.5b-distilled", teacher="Qwen/Qwen2.5-7B-Instruct",
    ...                       space_id="me/qwen-distilled-demo", output_dir="space", push=True)  # doctest: +SKIP
    >>> result.space_url  # doctest: +SKIP
    'https://huggingface.co/spaces/me/qwen-distilled-demo'
    ```
    """
    student_source, teacher_source = _validate(
        student,
        teacher,
        space_id=space_id,
        output_dir=output_dir,
        hardware=hardware,
        private=private,
        push=push,
        token=token,
        benchmark=benchmark,
        max_new_tokens=max_new_tokens,
    )
    files, warnings = _space_files(
        student_source,
        teacher_source,
        hardware=hardware,
        token=token,
        title=title,
        license=license,
        benchmark=benchmark,
        max_new_tokens=max_new_tokens,
    )
    written = write_space_folder(files, output_dir)
    result = SpaceResult(
        folder=Path(output_dir),
        files=written,
        card=files.readme,
        hardware=hardware,
        space_id=space_id,
        warnings=warnings,
    )
    if push:
        push_space_folder(result, private=private, token=token)
    return result


def _space_files(student, teacher, *, hardware, token, title, license, benchmark, max_new_tokens):
    """Builds the folder's contents (nothing written yet) and the warnings for the user."""
    warnings = []
    student_card = student.card(token)
    license_metadata = {"license": license} if license else card_license(student_card)
    if not license_metadata:
        warnings.append(
            f"The licence of {student.value!r} is unknown (no `license` in its card): the Space README has none. "
            "Pass `license=` (`--license`)."
        )
    table = benchmark_markdown(benchmark, student, student_card)
    adapter = any(source.is_adapter is not False for source in (student, teacher) if source is not None)
    title = title or default_title(student, teacher)
    readme = build_space_card(
        student=student,
        teacher=teacher,
        title=title,
        hardware=hardware,
        license=license_metadata,
        benchmark=table,
        max_new_tokens=max_new_tokens,
    )
    config = {
        "student": student.app_value,
        "teacher": teacher.app_value if teacher is not None else None,
        "title": title,
        "max_new_tokens": max_new_tokens,
    }
    requirements = space_requirements(hardware=hardware, adapter=adapter)
    for warning in warnings:
        logger.warning(warning)
    return SpaceFiles(readme=readme, requirements=requirements, config=config, benchmark=table), warnings
