"""The vocabulary of the licence rules: the Hub's licence ids, what a licence asks of a student in one role
([`Terms`]) and one licence's terms per role ([`LicenseRule`])."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["HUB_LICENSE_IDS", "LicenseRule", "Role", "Severity", "Terms"]

Severity = Literal["ok", "warn", "conflict"]
Role = Literal["weights", "outputs", "data"]

# Licence ids the Hub accepts in `license:` metadata (anything else is published as `other` + `license_name`).
# The licence table of the Hub documentation (hub-docs `repositories-licenses.md`), with `openmdw-1.1`.
HUB_LICENSE_IDS = frozenset(
    """apache-2.0 mit openrail bigscience-openrail-m creativeml-openrail-m bigscience-bloom-rail-1.0 bigcode-openrail-m
    afl-3.0 artistic-2.0 bsl-1.0 bsd bsd-2-clause bsd-3-clause bsd-3-clause-clear c-uda cc cc0-1.0 cc-by-2.0
    cc-by-2.5 cc-by-3.0 cc-by-4.0 cc-by-sa-3.0 cc-by-sa-4.0 cc-by-nc-2.0 cc-by-nc-3.0 cc-by-nc-4.0 cc-by-nd-4.0
    cc-by-nc-nd-3.0 cc-by-nc-nd-4.0 cc-by-nc-sa-2.0 cc-by-nc-sa-3.0 cc-by-nc-sa-4.0 cdla-sharing-1.0
    cdla-permissive-1.0 cdla-permissive-2.0 wtfpl ecl-2.0 epl-1.0 epl-2.0 etalab-2.0 eupl-1.1 eupl-1.2 agpl-3.0 gfdl
    gpl gpl-2.0 gpl-3.0 lgpl lgpl-2.1 lgpl-3.0 isc h-research intel-research lppl-1.3c ms-pl apple-ascl apple-amlr
    mpl-2.0 odc-by odbl openmdw-1.0 openmdw-1.1 openrail++ osl-3.0 postgresql ofl-1.1 ncsa unlicense zlib pddl
    lgpl-lr deepfloyd-if-license fair-noncommercial-research-license llama2 llama3 llama3.1 llama3.2 llama3.3 llama4
    grok2-community gemma unknown other""".split()
)


@dataclass(frozen=True)
class Terms:
    """What a source licence asks of a student in one role.

    Args:
        student_licenses (`tuple[str, ...]`, *optional*): licences the student may carry; `None` means any.
        mismatch (`str`, defaults to `"conflict"`): the verdict when the chosen student licence is not allowed
            (`"warn"` where the licence text is unsettled).
        status (`str`, defaults to `"ok"`): the verdict for this source whatever the student licence.
        name_prefix (`str`, *optional*): the student's name must start with this (a conflict otherwise).
        attribution (`str`, *optional*): a line to show prominently in the card.
        notice (`str`, *optional*): a line for the NOTICE file; `{source}` is replaced by the source's id.
        license_copy (`bool`): ship a copy of the source's licence text.
        non_commercial (`bool`): the student may only be used non-commercially.
        share_alike (`bool`): the student must carry the same licence (ShareAlike).
        use_restrictions (`tuple[str, ...]`): use policies and limits that flow downstream.
        reason (`str`): why, in one sentence, shown in the card.
        unless_base_family (`str`, *optional*): use the `"weights"` terms instead when the starting checkpoint's
            licence is of this family (Llama 2 outputs may improve Llama 2 derivatives only).
        modified_notice (`bool`): modified files must carry prominent notices stating that they were changed.
        additional_terms (`bool`): the licence lets a derivative add its own terms (a non-commercial limit that a
            dataset requires, for instance) as long as its own terms keep applying.
        clause (`str`): the clause this follows: licence name, section (and the text's date in `LicenseRule`).
    """

    student_licenses: tuple[str, ...] | None = None
    mismatch: Severity = "conflict"
    status: Severity = "ok"
    name_prefix: str | None = None
    attribution: str | None = None
    notice: str | None = None
    license_copy: bool = False
    non_commercial: bool = False
    share_alike: bool = False
    use_restrictions: tuple[str, ...] = ()
    reason: str = ""
    unless_base_family: str | None = None
    modified_notice: bool = False
    additional_terms: bool = False
    clause: str = ""


@dataclass(frozen=True)
class LicenseRule:
    """One licence id and what it asks of a student as weights source, output source and training data.

    Args:
        license_id (`str`): the Hub licence id, or the `license_name` slug of an `other` licence (`qwen`, `mrl`).
        title (`str`): the licence's name.
        url (`str`): where its text lives.
        family (`str`): licences whose terms travel together (`llama`, `rail`, `permissive`, ...).
        weights, outputs, data ([`Terms`]): the terms per role; `data` defaults to `outputs`.
        student_license (`str`, *optional*): the licence a student carries by default when this source binds it.
        text_version (`str`): the version or date of the licence text the rule was written from.
    """

    license_id: str
    title: str
    url: str
    family: str
    weights: Terms
    outputs: Terms
    data: Terms | None = None
    student_license: str | None = None
    text_version: str = ""

    @property
    def is_hub_id(self) -> bool:
        return self.license_id in HUB_LICENSE_IDS

    def terms(self, role: Role) -> Terms:
        if role == "data":
            return self.data if self.data is not None else self.outputs
        return self.weights if role == "weights" else self.outputs
