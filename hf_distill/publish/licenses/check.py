"""`check_license`: combine the licences of the teacher, the starting checkpoint and the datasets into one verdict
for the student: ok / warn / conflict, the licence it carries, the duties it must meet and the reasons why."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from ...errors import HfDistillError
from .rules import (
    HUB_LICENSE_IDS,
    LICENSE_RULES,
    NON_COMMERCIAL_LICENSES,
    LicenseRule,
    Role,
    Severity,
    Terms,
    normalize_license,
    split_licenses,
)

__all__ = ["Duties", "LicenseConflictError", "LicenseReason", "LicenseVerdict", "check_license"]

_RANK = {"ok": 0, "warn": 1, "conflict": 2}
_PERMISSIVE_FAMILIES = ("permissive", "public-domain")
# Student licences that let a derivative add its own terms (Gemma §3.1, Qwen §3(d), RAIL §4, MRL §2.3): a
# non-commercial limit required by another source can be added to them.
_TAKES_ADDITIONAL_TERMS = frozenset(lid for lid, rule in LICENSE_RULES.items() if rule.weights.additional_terms)


class LicenseConflictError(HfDistillError, ValueError):
    """The licences of the teacher, starting checkpoint or data forbid publishing the student as configured."""


@dataclass
class Duties:
    """What a published student must carry, merged over all its sources.

    Args:
        name_prefix (`str`, *optional*): the student's name must start with this (e.g. `"Llama"`); a name without
            it is a conflict.
        attribution_lines (`list[str]`): lines shown prominently at the top of the card ("Built with Llama").
        notice_lines (`list[str]`): the NOTICE file, one line each.
        license_copies (`list[str]`): licence ids whose text ships in `LICENSE`.
        non_commercial (`bool`): the student may only be used non-commercially.
        share_alike (`bool`): the student keeps its sources' ShareAlike licence.
        use_restrictions (`list[str]`): use policies and limits that bind downstream users.
        credits (`list[str]`): sources the card must name and link (attribution licences).
        modification_notices (`list[str]`): sources whose licence asks modified files to carry prominent notices
            stating that they were changed ("source (licence)").
    """

    name_prefix: str | None = None
    attribution_lines: list[str] = field(default_factory=list)
    notice_lines: list[str] = field(default_factory=list)
    license_copies: list[str] = field(default_factory=list)
    non_commercial: bool = False
    share_alike: bool = False
    use_restrictions: list[str] = field(default_factory=list)
    credits: list[str] = field(default_factory=list)
    modification_notices: list[str] = field(default_factory=list)

    def add(self, terms: Terms, source: str, license_id: str, family: str) -> None:
        self.name_prefix = self.name_prefix or terms.name_prefix
        _append(self.attribution_lines, terms.attribution)
        _append(self.notice_lines, terms.notice.format(source=source) if terms.notice else None)
        _append(self.license_copies, license_id if terms.license_copy else None)
        self.non_commercial |= terms.non_commercial
        self.share_alike |= terms.share_alike
        for restriction in terms.use_restrictions:
            _append(self.use_restrictions, restriction)
        if family not in ("public-domain", "unknown", "closed"):
            _append(self.credits, source)
        _append(self.modification_notices, f"{source} ({license_id})" if terms.modified_notice else None)


@dataclass
class LicenseReason:
    """One finding: which source, under which licence, how severe, and why."""

    source: str
    license: str | None
    severity: Severity
    text: str


@dataclass
class LicenseVerdict:
    """The outcome of [`check_license`].

    Args:
        status (`str`): `"ok"`, `"warn"` (publishable, but read the reasons) or `"conflict"` (blocks the push unless
            `allow_license_conflict=True`).
        student_license (`str`): the student's licence: a Hub id, or the `license_name` slug of an `other` licence.
        duties ([`Duties`]): what the published student must carry.
        reasons (`list[LicenseReason]`): every finding, shown in the card.
        conflict_overridden (`bool`): the user published despite a conflict; the card says so.
    """

    status: Severity
    student_license: str
    duties: Duties
    reasons: list[LicenseReason]
    conflict_overridden: bool = False

    @property
    def rule(self) -> LicenseRule | None:
        return LICENSE_RULES.get(self.student_license)

    @property
    def license_metadata(self) -> dict[str, str]:
        """Card metadata: `{"license": id}` for Hub ids, else `other` + `license_name` + `license_link: LICENSE`."""
        if self.student_license in HUB_LICENSE_IDS:
            return {"license": self.student_license}
        return {"license": "other", "license_name": self.student_license, "license_link": "LICENSE"}

    @property
    def needs_license_file(self) -> bool:
        return bool(self.duties.license_copies) or "license_link" in self.license_metadata

    def overridden(self) -> LicenseVerdict:
        """This verdict, marked as published despite its conflict (`allow_license_conflict=True`)."""
        return replace(self, conflict_overridden=self.status == "conflict")

    def problems(self, severity: Severity = "conflict") -> list[str]:
        return [f"{r.source} ({r.license or 'no licence'}): {r.text}" for r in self.reasons if r.severity == severity]


def _append(items: list[str], value: str | None) -> None:
    if value and value not in items:
        items.append(value)


def _obligations(
    teacher_license, dataset_licenses, base_license, weight_derived
) -> list[tuple[str, str | None, LicenseRule, Role]]:
    """(source label, licence id, rule, role) for every source, in teacher, checkpoint, data order."""
    entries: list[tuple[str, str | None, Role]] = [
        ("teacher", normalize_license(teacher_license), "weights" if weight_derived else "outputs")
    ]
    if base_license is not None:
        entries.append(("starting checkpoint", normalize_license(base_license), "weights"))
    if isinstance(dataset_licenses, str) or dataset_licenses is None:
        dataset_licenses = [dataset_licenses] if dataset_licenses else []
    named = dataset_licenses.items() if isinstance(dataset_licenses, Mapping) else enumerate(dataset_licenses)
    for name, license_id in named:
        label = f"dataset {name}" if isinstance(name, str) else f"dataset #{name}"
        entries.append((label, normalize_license(license_id), "data"))
    # A card may name several licences ("cc-by-4.0 AND mit"): each one is judged.
    entries = [(label, lid, role) for label, joined, role in entries for lid in split_licenses(joined)]
    return [(label, lid, LICENSE_RULES.get(lid or "unknown") or _unruled(lid), role) for label, lid, role in entries]


def _unruled(license_id: str) -> LicenseRule:
    unknown = LICENSE_RULES["unknown"]
    terms = replace(unknown.outputs, reason=f"No rule for licence {license_id!r}: it cannot be judged automatically. "
                    "Read its terms; pass `student_license=` to choose the student's licence.")
    return replace(unknown, license_id=license_id, weights=terms, outputs=terms)


def check_license(
    *,
    teacher_license: str | None,
    dataset_licenses: Mapping[str, str | None] | Sequence[str | None] | str | None,
    base_license: str | None = None,
    student_license: str | None = None,
    weight_derived: bool = False,
    student_name: str | None = None,
) -> LicenseVerdict:
    """Decide what licence a distilled student carries and what it must show, from its sources' licences.

    The most restrictive duty of teacher, starting checkpoint and data wins. Unknown or missing licences give
    `"warn"`, never `"ok"`. These are engineering defaults, not legal advice.

    Args:
        teacher_license (`str`, *optional*): the teacher's licence id (`"llama3.1"`, or `"qwen"` for `other`/`qwen`);
            `None` when unknown.
        dataset_licenses (`dict[str, str]`, `list[str]` or `str`, *optional*): each dataset's licence, keyed by
            dataset name where known.
        base_license (`str`, *optional*): licence of the checkpoint the student starts from; `None` when trained from
            scratch; `"unknown"` when there is one but its licence is not known.
        student_license (`str`, *optional*): the licence you want the student to carry; chosen for you when unset.
        weight_derived (`bool`, defaults to `False`): the student starts from or is pruned from the teacher's
            weights (rather than only learning from its outputs).
        student_name (`str`, *optional*): the student's repo name, checked against a required name prefix.

    Returns:
        [`LicenseVerdict`]

    Example:

    ```python
    >>> verdict = check_license(teacher_license="llama3.1", dataset_licenses={"my/data": "cc-by-4.0"})
    >>> verdict.status, verdict.student_license, verdict.duties.attribution_lines
    ('warn', 'llama3.1', ['Built with Llama'])
    ```
    """
    obligations = _obligations(teacher_license, dataset_licenses, base_license, weight_derived)
    base_rules = [rule for label, _, rule, _ in obligations if label == "starting checkpoint"]
    duties, reasons, active = Duties(), [], []
    for label, license_id, rule, role in obligations:
        terms = rule.terms(role)
        if terms.unless_base_family and base_rules and all(b.family == terms.unless_base_family for b in base_rules):
            terms = rule.weights  # e.g. Llama 2 outputs improving a Llama 2 derivative: the derivative's terms
        duties.add(terms, label, rule.license_id, rule.family)
        reasons.append(LicenseReason(label, license_id, terms.status, terms.reason))
        active.append((label, rule, terms))
    requested = normalize_license(student_license)
    chosen, licence_reasons = _student_license(active, duties, requested, base_rules[0] if base_rules else None)
    reasons.extend(licence_reasons)
    reasons.extend(_non_commercial_reasons(chosen, duties, requested is not None))
    reasons.extend(_name_reasons(duties.name_prefix, student_name))
    status = max((r.severity for r in reasons), key=_RANK.__getitem__, default="ok")
    return LicenseVerdict(status=status, student_license=chosen, duties=duties, reasons=reasons)


def _allowed(terms: Terms) -> set[str]:
    """The student licences a source accepts: its own list, plus, for a non-commercial limit without ShareAlike, any
    licence that takes the limit as an additional term."""
    allowed = set(terms.student_licenses or ())
    if terms.non_commercial and not terms.share_alike:
        allowed |= _TAKES_ADDITIONAL_TERMS
    return allowed


def _student_license(active, duties: Duties, requested: str | None, base_rule) -> tuple[str, list[LicenseReason]]:
    """The student's licence (the requested one, or the most restrictive default) and the findings about it."""
    reasons: list[LicenseReason] = []
    constrained = [(label, rule, terms) for label, rule, terms in active if terms.student_licenses is not None]
    if requested is not None:
        for label, rule, terms in constrained:
            if requested not in _allowed(terms):
                reasons.append(LicenseReason(
                    label, rule.license_id, terms.mismatch,
                    f"The student licence {requested!r} is not one {rule.title} allows "
                    f"({', '.join(terms.student_licenses)}).",
                ))
        if requested not in LICENSE_RULES and requested not in HUB_LICENSE_IDS:
            reasons.append(LicenseReason("student", requested, "warn", f"{requested!r} is not a licence this "
                                         "library knows; it is published as `other` with your LICENSE file."))
        return requested, reasons

    for strict in (False, True):  # first try to satisfy every source, then only those where a mismatch conflicts
        pool = [entry for entry in constrained if not strict or entry[2].mismatch == "conflict"]
        common = set.intersection(*(_allowed(terms) for _, _, terms in pool)) if pool else set()
        if pool and common:
            preferred = [rule.student_license for _, rule, _ in pool] + list(pool[0][2].student_licenses)
            chosen = next((lid for lid in preferred if lid in common), None) or sorted(common)[0]
            for label, rule, terms in constrained:
                if chosen not in _allowed(terms):
                    reasons.append(LicenseReason(label, rule.license_id, terms.mismatch,
                                                 f"{rule.title} would need {', '.join(terms.student_licenses)}, "
                                                 f"but {chosen} is required by another source."))
            return chosen, reasons
    if constrained:
        needs = "; ".join(f"{label}: {', '.join(terms.student_licenses)}" for label, _, terms in constrained)
        reasons.append(LicenseReason("student", None, "conflict", f"No licence satisfies every source ({needs})."))
        return constrained[0][1].student_license or constrained[0][2].student_licenses[0], reasons
    return _default_license(active, duties, base_rule), reasons


def _non_commercial_reasons(chosen: str, duties: Duties, requested: bool) -> list[LicenseReason]:
    """A non-commercial source needs a non-commercial student licence, or one that takes the limit as an additional
    term (then the limit is added to the use restrictions the card shows)."""
    if not duties.non_commercial or chosen in NON_COMMERCIAL_LICENSES:
        return []
    if chosen in _TAKES_ADDITIONAL_TERMS and not duties.share_alike:
        title = LICENSE_RULES[chosen].title
        _append(duties.use_restrictions, f"Non-commercial use only: a source is licensed for non-commercial use "
                f"only, and the {title} lets this limit be added to its terms.")
        return []
    what = "The student licence" if requested else "The licence chosen for the student"
    return [LicenseReason(
        "student", chosen, "conflict",
        f"{what} {chosen!r} allows commercial use, but a source is non-commercial only; "
        "choose a non-commercial licence such as cc-by-nc-4.0.",
    )]


def _default_license(active, duties: Duties, base_rule: LicenseRule | None) -> str:
    """With no source dictating a licence: non-commercial if required, else a permissive source's own licence."""
    if duties.non_commercial:
        return "cc-by-nc-sa-4.0" if duties.share_alike else "cc-by-nc-4.0"
    teacher_rule = active[0][1]
    for rule in (base_rule, teacher_rule):
        if rule is not None and rule.family in _PERMISSIVE_FAMILIES and rule.license_id in HUB_LICENSE_IDS:
            return rule.license_id
    if any(rule is not None and rule.family == "unknown" for rule in (base_rule, teacher_rule)):
        return "unknown"  # the student derives from something whose terms nobody has read
    return "apache-2.0"


def _name_reasons(prefix: str | None, student_name: str | None) -> list[LicenseReason]:
    if prefix is None or student_name is None:
        return []
    name = student_name.rstrip("/").split("/")[-1]
    squash = lambda text: re.sub(r"[^a-z0-9.]", "", text.lower())  # noqa: E731 - "Llama 3" matches "Llama-3-..."
    if squash(name).startswith(squash(prefix)):
        return []
    return [LicenseReason(  # the prefix is mandatory (Llama 3 §1.b.i, Llama 3.1+ §1.b.i): a wrong name blocks the push
        "student", None, "conflict",
        f"The student's name {name!r} must start with {prefix!r} (e.g. {prefix.replace(' ', '-')}-{name}); "
        "rename the repository before publishing.",
    )]
