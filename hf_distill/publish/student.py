"""Publish a distilled student: licence pre-flight and local card checks, then one commit with weights (safetensors),
tokenizer, generation config, README.md, LICENSE/NOTICE when required, provenance and benchmark files (with the
Hub's `.eval_results/*.yaml` files when the benchmark ran on Hub datasets)."""

from __future__ import annotations

import copy
import json
import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from huggingface_hub import CommitOperationAdd, HfApi, ModelCard

from ..benchmark import BenchmarkReport
from ..benchmark.trust.card import risk_record_files
from ..safe_loading import safe_init_kwargs
from .card import PLOT_PATH, build_model_card, check_card, eval_results_files
from .licenses import LICENSE_RULES, LicenseConflictError, LicenseReason, LicenseVerdict
from .provenance import LICENSE_FILE_NAMES, PROVENANCE_FILE, Provenance, is_hub_id, weight_file_hashes
from .repo import PushError, require_token, validate_repo_id

logger = logging.getLogger(__name__)

__all__ = ["PUSH_MODES", "PushPlan", "PushResult", "merge_adapter", "plan_push", "push_student"]

PushMode = Literal["full", "adapter", "merged"]
PUSH_MODES = ("full", "adapter", "merged")
REPORT_PATH = "benchmark/report.json"

# Files of a saved student that belong on the Hub. Everything else (optimizer state, pickled training arguments,
# checkpoints, logs) stays local. README, LICENSE, NOTICE and the provenance file are written by `push_student`.
_MODEL_FILES = ("config.json", "generation_config.json", "model.safetensors.index.json")
_ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
_TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "vocab.json",
    "vocab.txt", "merges.txt", "tokenizer.model", "spiece.model", "chat_template.jinja", "chat_template.json",
    "processor_config.json", "preprocessor_config.json",
)


@dataclass
class PushResult:
    """What `push_student` published.

    Args:
        repo_id (`str`), repo_url (`str`): the repository.
        commit_url (`str`), commit_oid (`str`): the single commit holding every file.
        revision (`str`): the branch pushed to.
        mode (`str`): `"full"`, `"adapter"` or `"merged"`.
        files (`list[str]`): paths in the repository, in upload order.
        verdict ([`LicenseVerdict`]): the licence check the card reports.
        card (`ModelCard`): the card pushed as `README.md`.
    """

    repo_id: str
    repo_url: str
    commit_url: str
    commit_oid: str
    revision: str
    mode: str
    files: list[str]
    verdict: LicenseVerdict
    card: ModelCard = field(repr=False)


def _check_folder(folder: Path, mode: PushMode) -> None:
    if not folder.is_dir():
        raise PushError(f"The student folder {str(folder)!r} does not exist; save the student there first "
                        "(`trainer.save_model(folder)`).")
    has_adapter = (folder / "adapter_config.json").is_file()
    has_weights = any(folder.glob("model*.safetensors"))
    if mode == "full" and not has_weights:
        hint = ("it holds a PEFT adapter: push it with mode='adapter', or mode='merged' to merge it into its base"
                if has_adapter else "save it with `save_pretrained` (safetensors; pickled .bin files are not pushed)")
        raise PushError(f"{str(folder)!r} has no safetensors weights (model*.safetensors) for mode='full': {hint}.")
    if mode in ("adapter", "merged") and not (has_adapter and (folder / "adapter_model.safetensors").is_file()):
        raise PushError(f"mode={mode!r} needs a PEFT adapter (adapter_config.json and adapter_model.safetensors) in "
                        f"{str(folder)!r}; use mode='full' for a full student.")


def _adapter_base(folder: Path) -> str:
    config = json.loads((folder / "adapter_config.json").read_text())
    base = config.get("base_model_name_or_path")
    if not base:
        raise PushError(f"{folder / 'adapter_config.json'} names no `base_model_name_or_path`; set it to the base's "
                        "Hub id so the adapter can be loaded.")
    return base


def _files_to_upload(folder: Path, mode: PushMode) -> list[Path]:
    names = list(_TOKENIZER_FILES)
    if mode == "adapter":
        names += _ADAPTER_FILES
    else:
        names += _MODEL_FILES
        names += sorted(p.name for p in folder.glob("model*.safetensors"))
        config = folder / "config.json"
        if config.is_file() and "auto_map" in json.loads(config.read_text()):  # remote code ships with the weights
            names += sorted(p.name for p in folder.glob("*.py"))
    return [folder / name for name in dict.fromkeys(names) if (folder / name).is_file()]


def merge_adapter(folder: str | os.PathLike, output_dir: str | os.PathLike) -> Path:
    """Merge the LoRA adapter saved in `folder` into its base and save the result (safetensors, tokenizer and
    generation config included) to `output_dir`."""
    from peft import AutoPeftModelForCausalLM

    folder, output_dir = Path(folder), Path(output_dir)
    model = AutoPeftModelForCausalLM.from_pretrained(str(folder), **safe_init_kwargs({"dtype": "auto"}))
    merged = model.merge_and_unload()
    merged.save_pretrained(output_dir)
    for path in _files_to_upload(folder, "adapter"):
        if path.name not in _ADAPTER_FILES:
            (output_dir / path.name).write_bytes(path.read_bytes())
    return output_dir


def _license_text(verdict: LicenseVerdict, provenance: Provenance, folder: Path) -> str:
    """LICENSE: the user's own file if the folder has one, else the licence texts found beside the sources, else a
    pointer to the official text (and a warning in the verdict)."""
    for name in ("LICENSE", "LICENSE.txt", "LICENSE.md"):
        if (folder / name).is_file():
            return (folder / name).read_text(encoding="utf-8")
    sources = [s for s in (provenance.teacher, provenance.base_model, *provenance.datasets) if s is not None]
    sections = []
    for license_id in dict.fromkeys([verdict.student_license, *verdict.duties.license_copies]):
        rule = LICENSE_RULES.get(license_id)
        text = next((_read_license_file(s) for s in sources if s.license == license_id and _read_license_file(s)),
                    None)
        if text is None:
            title, url = (rule.title, rule.url) if rule else (license_id, "")
            text = (f"{title}\n\nThe full text of this licence is at {url or 'its publisher'}. hf_distill found no "
                    "copy of it beside the sources; replace this file with the full text before relying on it.\n")
            verdict.reasons.append(LicenseReason(
                "LICENSE", license_id, "warn", f"No local copy of the {title} text was found; LICENSE points to "
                f"{url or 'its publisher'}. Put the full text in the student folder as LICENSE and push again."))
            verdict.status = "warn" if verdict.status == "ok" else verdict.status
        sections.append(text.rstrip() + "\n")
    return "\n\n".join(sections)


def _read_license_file(source) -> str | None:
    if source.local_folder is None:
        return None
    for name in LICENSE_FILE_NAMES[:3]:
        path = Path(source.local_folder) / name
        if path.is_file():
            return path.read_text(encoding="utf-8", errors="replace")
    return None


def _upstream_notices(provenance: Provenance) -> list[str]:
    """NOTICE files found beside the sources the student's weights derive from: Apache-2.0 §4(d) asks a derivative
    work to carry the attribution notices of the Work's NOTICE file."""
    weight_sources = [provenance.base_model] + ([provenance.teacher] if provenance.weight_derived else [])
    lines: list[str] = []
    for source in (s for s in weight_sources if s is not None and s.local_folder):
        for name in ("NOTICE", "NOTICE.txt"):
            path = Path(source.local_folder) / name
            if path.is_file():
                lines += path.read_text(encoding="utf-8", errors="replace").splitlines()
                break
    return lines


def _notice_text(verdict: LicenseVerdict, folder: Path, provenance: Provenance | None = None) -> str | None:
    """NOTICE: the folder's own, the upstream NOTICE files, the required notice lines, and a statement of change for
    each source whose licence asks modified files to say so (Apache-2.0 §4(b), Gemma §3.1, MRL-0.1 §2.3(b))."""
    lines = (folder / "NOTICE").read_text().splitlines() if (folder / "NOTICE").is_file() else []
    added = _upstream_notices(provenance) if provenance is not None else []
    added += verdict.duties.notice_lines
    added += [f"Modified: the weights of this model were changed from those of {source} by distillation training "
              "with hf_distill." for source in verdict.duties.modification_notices]
    lines += [line for line in dict.fromkeys(added) if line.strip() and line not in lines]
    return "\n".join(lines) + "\n" if lines else None


def _benchmark_files(report: Any, folder: Path, workdir: Path) -> tuple[Any, str | None, dict[str, Path]]:
    """(report, plot path in the repo, {repo path: local file}) for the report given, or one saved in the folder."""
    if report is None and (folder / REPORT_PATH).is_file():
        report = BenchmarkReport.from_json(folder / REPORT_PATH)
    if report is None:
        return None, None, {}
    files = {REPORT_PATH: workdir / "report.json"}
    files[REPORT_PATH].write_text(report.to_json(), encoding="utf-8")
    plot = workdir / Path(PLOT_PATH).name
    try:
        report.plot(plot)
        files[PLOT_PATH] = plot
    except (ImportError, RuntimeError, ValueError) as error:  # no plot is no reason to fail a push
        logger.warning("Could not draw the benchmark plot (%s); the card shows the table only.", error)
    return report, PLOT_PATH if PLOT_PATH in files else None, files


@dataclass(frozen=True)
class PushPlan:
    """Everything one push uploads, computed locally before any request by [`plan_push`].

    Args:
        repo_id (`str`), mode (`str`): where and what (`"full"`, `"adapter"` or `"merged"`).
        verdict ([`LicenseVerdict`]): the licence check the card reports.
        provenance ([`Provenance`]): the record uploaded as `distillation_provenance.json`: a copy of the one given,
            with the licence overrides, push mode and weight hashes of this push (the caller's is left unchanged).
        card (`ModelCard`): the card uploaded as `README.md`, checked locally.
        operations (`tuple`): the files of the single commit, in upload order.
    """

    repo_id: str
    mode: str
    verdict: LicenseVerdict
    provenance: Provenance = field(repr=False)
    card: ModelCard = field(repr=False)
    operations: tuple[CommitOperationAdd, ...] = field(repr=False)


def plan_push(
    folder: Path, repo_id: str, mode: PushMode, provenance: Provenance, report: Any, workdir: Path,
    *, student_license, allow_license_conflict, co2_eq_emissions, extra_metadata, license_overrides,
) -> PushPlan:
    """Everything local: licence verdict, card, and the commit's files, written under `workdir` (merged weights,
    report, plot). Raises before any network call; changes neither `provenance` nor anything in `folder`."""
    provenance = copy.deepcopy(provenance)
    provenance.apply_license_overrides(**license_overrides)
    verdict = provenance.check_license(student_license=student_license, student_name=repo_id)
    if verdict.status == "conflict":
        if not allow_license_conflict:
            raise LicenseConflictError(
                f"Licence conflict: pushing {repo_id!r} as configured is not allowed:\n"
                + "\n".join(f"- {p}" for p in verdict.problems())
                + "\nChoose another teacher, data or `student_license=`, or pass `allow_license_conflict=True` if you "
                "hold the rights to publish anyway (the card will say so). Nothing was uploaded."
            )
        verdict = verdict.overridden()
    source = folder
    if mode == "merged":
        source = merge_adapter(folder, workdir / "merged")
    generated: dict[str, bytes] = {}
    if verdict.needs_license_file:
        generated["LICENSE"] = _license_text(verdict, provenance, folder).encode()
    notice = _notice_text(verdict, folder, provenance)
    if notice:
        generated["NOTICE"] = notice.encode()
    report, plot_path, report_files = _benchmark_files(report, folder, workdir)
    provenance.weight_files = weight_file_hashes(source)
    provenance.student["push_mode"] = mode
    generated[PROVENANCE_FILE] = provenance.to_json().encode()
    generated.update(risk_record_files(report, provenance, verdict))
    card = build_model_card(provenance, report, verdict, repo_id=repo_id, mode=mode, plot_path=plot_path,
                            co2_eq_emissions=co2_eq_emissions, extra_metadata=extra_metadata)
    check_card(card)
    generated["README.md"] = str(card).encode()
    generated |= {path: text.encode() for path, text in eval_results_files(card, repo_id).items()}  # same commit
    operations = [
        CommitOperationAdd(path_in_repo=p.name, path_or_fileobj=str(p)) for p in _files_to_upload(source, mode)
    ]
    operations += [CommitOperationAdd(path_in_repo=k, path_or_fileobj=str(v)) for k, v in report_files.items()]
    operations += [CommitOperationAdd(path_in_repo=k, path_or_fileobj=v) for k, v in generated.items()]
    return PushPlan(repo_id=repo_id, mode=mode, verdict=verdict, provenance=provenance, card=card,
                    operations=tuple(operations))


def push_student(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    private: bool | None = None,
    token: str | None = None,
    revision: str | None = None,
    commit_message: str | None = None,
    mode: PushMode | None = None,
    allow_license_conflict: bool = False,
    report: Any = None,
    provenance: Provenance | None = None,
    student_license: str | None = None,
    teacher_license: str | None = None,
    base_license: str | None = None,
    dataset_licenses: Mapping[str, str] | str | None = None,
    co2_eq_emissions: Mapping[str, Any] | float | None = None,
    extra_metadata: Mapping[str, Any] | None = None,
) -> PushResult:
    """Publish a saved student to the Hub in one commit, with its model card, licence files and provenance.

    Every local check runs first (repo id, folder contents, licence verdict, card parse-back, token); a failure
    uploads nothing. Then the repo is created if needed (`exist_ok=True`) and every file goes in ONE commit.

    Args:
        folder (`str`): the saved student (`trainer.save_model()` output: weights or adapter, tokenizer, config and
            `distillation_provenance.json`).
        repo_id (`str`): `namespace/name` on the Hub.
        private (`bool`, *optional*): visibility of a newly created repo (the Hub's default when unset).
        token (`str`, *optional*): a write token; defaults to `HF_TOKEN` or the stored login. Never logged.
        revision (`str`, *optional*): branch to push to (created from `main` if missing); `main` when unset.
        commit_message (`str`, *optional*): defaults to "Upload distilled student with hf_distill".
        mode (`str`, *optional*): `"full"` (weights), `"adapter"` (PEFT adapter), `"merged"` (adapter merged into
            its base before upload). Defaults to `"adapter"` for a folder holding an adapter, else `"full"`.
        allow_license_conflict (`bool`, defaults to `False`): publish despite a licence conflict; the card says so.
        report ([`BenchmarkReport`], *optional*): benchmark results for the card, `model-index`, JSON and plot;
            read from `benchmark/report.json` in the folder when unset and present.
        provenance ([`Provenance`], *optional*): defaults to the folder's `distillation_provenance.json`.
        student_license (`str`, *optional*): the licence to publish under; chosen by the licence rules when unset.
        teacher_license, base_license (`str`, *optional*), dataset_licenses (`dict` or `str`, *optional*): licences
            for sources whose cards do not say (or say wrongly); dataset keys are Hub ids, names or splits.
        co2_eq_emissions (`float` or `dict`, *optional*): measured training emissions in grams.
        extra_metadata (`dict`, *optional*): more card metadata (`language`, `tags`, ...; other keys are refused).

    Returns:
        [`PushResult`]

    Example:

    ```python
    >>> result = push_student("qwen-0.5b-distilled", "me/qwen-0.5b-distilled", report=report)
    >>> result.commit_url, result.verdict.status
    ```
    """
    folder = Path(folder)
    repo_id = validate_repo_id(repo_id)
    if mode is None:
        mode = "adapter" if (folder / "adapter_config.json").is_file() else "full"
    if mode not in PUSH_MODES:
        raise PushError(f"`mode` is {mode!r}; choose one of {', '.join(PUSH_MODES)}.")
    _check_folder(folder, mode)
    provenance = provenance if provenance is not None else Provenance.load(folder)
    if mode == "adapter" and not _is_hub_base(_adapter_base(folder)):
        raise PushError(
            f"The adapter's base {_adapter_base(folder)!r} is a local path: nobody else could load the adapter. Set "
            "`base_model_name_or_path` in adapter_config.json to the base's Hub id, or push with mode='merged'."
        )
    token = require_token(token)
    with tempfile.TemporaryDirectory(prefix="hf_distill_push_") as workdir:
        plan = plan_push(
            folder, repo_id, mode, provenance, report, Path(workdir), student_license=student_license,
            allow_license_conflict=allow_license_conflict, co2_eq_emissions=co2_eq_emissions,
            extra_metadata=extra_metadata, license_overrides=dict(
                teacher_license=teacher_license, base_license=base_license, dataset_licenses=dataset_licenses),
        )
        api = HfApi(token=token)
        repo_url = api.create_repo(repo_id, private=private, exist_ok=True)
        if revision and revision != "main":
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        commit = api.create_commit(
            repo_id, operations=list(plan.operations), revision=revision,
            commit_message=commit_message or "Upload distilled student with hf_distill",
        )
    logger.info("Pushed %s (%s, licence %s: %s) in commit %s.", repo_id, mode, plan.verdict.student_license,
                plan.verdict.status, commit.oid)
    return PushResult(
        repo_id=repo_id, repo_url=str(repo_url), commit_url=commit.commit_url, commit_oid=commit.oid,
        revision=revision or "main", mode=mode, files=[op.path_in_repo for op in plan.operations],
        verdict=plan.verdict, card=plan.card,
    )


def _is_hub_base(base: str) -> bool:
    return is_hub_id(base)
