"""The provenance record of a distilled student and its JSON file, `distillation_provenance.json`."""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ...errors import HfDistillError
from ..licenses import LicenseVerdict, check_license, normalize_license

__all__ = ["PROVENANCE_FILE", "DatasetRecord", "Provenance", "ProvenanceError", "SourceRecord"]

PROVENANCE_FILE = "distillation_provenance.json"
SCHEMA_VERSION = 1


class ProvenanceError(HfDistillError, ValueError):
    """A provenance file is missing or cannot be read."""


@dataclass
class SourceRecord:
    """One thing the student came from: its teacher, its starting checkpoint, or a dataset.

    Args:
        role (`str`): `"teacher"`, `"base_model"` or `"dataset"`.
        kind (`str`): `"hub"` (a Hub repo), `"local"` (a folder) or `"in-memory"` (an object with neither).
        repo_id (`str`, *optional*): the Hub id; never a local path.
        revision (`str`, *optional*): the resolved commit of the Hub repo.
        name (`str`, *optional*): a display name (the folder name for local sources, never the full path).
        content_sha256 (`str`, *optional*): for local folders and in-memory models, a hash of config and weights.
        license (`str`, *optional*): the licence id as read at `revision` (`"qwen"` for `other`/`qwen`).
        license_source (`str`): where it was read: `"card"`, `"hub-api"`, `"dataset-info"`, `"override"` or
            `"missing"`.
        license_files (`list[str]`): licence files found beside it (`LICENSE`, `NOTICE`, `USE_POLICY.md`).
        details (`dict`): architecture, parameter counts, dtype, quantization of models.
    """

    role: str
    kind: Literal["hub", "local", "in-memory"] = "in-memory"
    repo_id: str | None = None
    revision: str | None = None
    name: str | None = None
    content_sha256: str | None = None
    license: str | None = None
    license_source: str = "missing"
    license_files: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    # Where the files were found on this machine: used to copy licence texts, never written to the JSON file.
    local_folder: str | None = field(default=None, repr=False, metadata={"serialize": False})

    @property
    def display_name(self) -> str:
        return self.repo_id or self.name or self.role

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.metadata.get("serialize", True)}

    def set_license(self, license_id: str | None) -> None:
        """Record an explicitly given licence (an override of, or a substitute for, what the card says)."""
        self.license = normalize_license(license_id)
        self.license_source = "override" if self.license else "missing"


@dataclass
class DatasetRecord(SourceRecord):
    """A dataset the student was trained or evaluated on: a [`SourceRecord`] plus split, `datasets` fingerprint,
    number of rows, tokens and tokens the loss counted (completion tokens for prompt/completion data), and the counts
    of the privacy scan of its text (`PrivacyReport.to_dict()`: rows scanned and flagged, findings per category,
    columns scanned; never row content; `None` when it was not scanned, e.g. a streaming dataset)."""

    split: str = "train"
    fingerprint: str | None = None
    num_rows: int | None = None
    num_tokens: int | None = None
    num_trained_tokens: int | None = None
    privacy_scan: dict[str, Any] | None = None

    @property
    def num_secrets(self) -> int:
        return int((self.privacy_scan or {}).get("num_secrets", 0))


@dataclass
class Provenance:
    """Everything a student came from, collected once at save time and written as `distillation_provenance.json`.

    Args:
        student (`dict`): name, architecture, parameter counts, dtype, adapter settings.
        teacher ([`SourceRecord`], *optional*): the teacher (`None` only when it is truly unknown).
        base_model ([`SourceRecord`], *optional*): the checkpoint the student's weights start from; `None` when
            trained from scratch.
        weight_derived (`bool`): the student starts from (or is pruned from) the teacher's weights.
        datasets (`list[DatasetRecord]`): training and evaluation datasets.
        tokenizer (`dict`): class, size and SHA-256 of the tokenizer and of its chat template.
        cross_tokenizer (`dict`): empty unless the teacher had another tokenizer (`cross_tokenizer=`): the method
            (`uld` or `span`) and both tokenizers' class, size and SHA-256.
        config (`dict`): the non-default `DistillationConfig` fields (never a token).
        seed (`int`, *optional*): the training seed.
        libraries (`dict`): versions of Python, torch, transformers, TRL, PEFT, datasets, ...
        hf_distill (`dict`): this library's version and git commit.
        hardware (`dict`): platform, CPU, accelerators, number of processes.
        wall_clock_seconds (`float`, *optional*) and accelerator_hours (`float`, *optional*): training time.
        weight_files (`dict[str, str]`): SHA-256 of each saved weight file.

    Example:

    ```python
    >>> provenance = Provenance.load("qwen-0.5b-distilled")
    >>> provenance.teacher.repo_id, provenance.teacher.revision, provenance.teacher.license
    ('Qwen/Qwen2.5-7B-Instruct', 'a09a35458c702b33eeacc393d103063234e8bc28', 'apache-2.0')
    ```
    """

    student: dict[str, Any] = field(default_factory=dict)
    teacher: SourceRecord | None = None
    base_model: SourceRecord | None = None
    weight_derived: bool = False
    datasets: list[DatasetRecord] = field(default_factory=list)
    tokenizer: dict[str, Any] = field(default_factory=dict)
    cross_tokenizer: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    libraries: dict[str, str | None] = field(default_factory=dict)
    hf_distill: dict[str, str | None] = field(default_factory=dict)
    hardware: dict[str, Any] = field(default_factory=dict)
    wall_clock_seconds: float | None = None
    accelerator_hours: float | None = None
    weight_files: dict[str, str] = field(default_factory=dict)
    created_at: str | None = None
    schema_version: int = SCHEMA_VERSION

    # -- licences ---------------------------------------------------------------------------------------------------

    def apply_license_overrides(
        self,
        *,
        teacher_license: str | None = None,
        base_license: str | None = None,
        dataset_licenses: Mapping[str, str] | str | None = None,
    ) -> None:
        """Set licences the cards do not say (or say wrongly). `dataset_licenses` is one licence for every dataset,
        or a dict keyed by dataset Hub id, name or split."""
        if teacher_license is not None:
            self.teacher = self.teacher or SourceRecord(role="teacher")
            self.teacher.set_license(teacher_license)
        if base_license is not None and self.base_model is not None:
            self.base_model.set_license(base_license)
        if dataset_licenses is None:
            return
        for record in self.datasets:
            if isinstance(dataset_licenses, str):
                record.set_license(dataset_licenses)
                continue
            for key in (record.repo_id, record.name, record.split):
                if key is not None and key in dataset_licenses:
                    record.set_license(dataset_licenses[key])
                    break

    def check_license(self, *, student_license: str | None = None, student_name: str | None = None) -> LicenseVerdict:
        """[`check_license`] on the licences recorded here (each training dataset counts; evaluation sets do not)."""
        # A student pruned from its teacher has no other starting checkpoint: the teacher's weight terms apply.
        base = None if self.base_model is None or self.weight_derived else (self.base_model.license or "unknown")
        training = [d for d in self.datasets if not d.split.startswith("eval")]
        return check_license(
            teacher_license=self.teacher.license if self.teacher is not None else None,
            dataset_licenses={d.display_name: d.license for d in training},
            base_license=base,
            student_license=student_license,
            weight_derived=self.weight_derived,
            student_name=student_name,
        )

    # -- JSON -------------------------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["teacher"] = self.teacher.to_dict() if self.teacher is not None else None
        data["base_model"] = self.base_model.to_dict() if self.base_model is not None else None
        data["datasets"] = [record.to_dict() for record in self.datasets]
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False, default=str) + "\n"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Provenance:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {key: value for key, value in data.items() if key in known}
        if values.get("teacher") is not None:
            values["teacher"] = SourceRecord(**_known_fields(SourceRecord, values["teacher"]))
        if values.get("base_model") is not None:
            values["base_model"] = SourceRecord(**_known_fields(SourceRecord, values["base_model"]))
        values["datasets"] = [DatasetRecord(**_known_fields(DatasetRecord, d)) for d in values.get("datasets", [])]
        return cls(**values)

    def save(self, folder: str | os.PathLike) -> Path:
        """Write `distillation_provenance.json` into `folder` atomically (a temporary file, then a rename)."""
        path = Path(folder) / PROVENANCE_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False, encoding="utf-8") as tmp:
            tmp.write(self.to_json())
        os.replace(tmp.name, path)
        return path

    @classmethod
    def load(cls, folder: str | os.PathLike) -> Provenance:
        path = Path(folder) / PROVENANCE_FILE
        if not path.is_file():
            raise ProvenanceError(
                f"{path} does not exist. Save the student with `DistillationTrainer.save_model()` (which writes it), "
                "or pass `provenance=` explicitly."
            )
        try:
            return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (json.JSONDecodeError, TypeError) as error:
            raise ProvenanceError(f"{path} is not a valid provenance file ({error}); re-save the student.") from error


def _known_fields(cls, data: Mapping[str, Any]) -> dict[str, Any]:
    """Drop keys a newer schema may have added, so old code still reads new files."""
    names = {f.name for f in dataclasses.fields(cls) if f.metadata.get("serialize", True)}
    return {key: value for key, value in data.items() if key in names}
