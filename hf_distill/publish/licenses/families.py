"""Builders for licence families whose members share their terms (Apache/MIT/BSD, Llama, RAIL, Creative Commons,
GNU, closed APIs). Each builder cites the clause it follows in the `clause` of its [`Terms`]."""

from __future__ import annotations

from dataclasses import replace

from .terms import LicenseRule, Terms

_FREE = Terms(reason="No duty on a model built from it.")
ATTRIBUTION = Terms(reason="Attribution: the card names and links the source.")
CC_VERSIONS = ("2.0", "2.5", "3.0", "4.0")
CC_ELEMENTS = ("by", "by-sa", "by-nd", "by-nc", "by-nc-sa", "by-nc-nd")
CC_NON_COMMERCIAL = tuple(f"cc-{e}-{v}" for e in CC_ELEMENTS if "nc" in e for v in reversed(CC_VERSIONS))
# Every licence that limits use to non-commercial purposes (or to research): a source under one of them makes the
# student non-commercial, and a student may carry any of them to meet that duty.
NON_COMMERCIAL_LICENSES = CC_NON_COMMERCIAL + (
    "qwen-research", "tongyi-qianwen-research", "mrl", "fair-noncommercial-research-license", "apple-amlr",
)
RAIL_IDS = (
    "openrail", "openrail++", "bigscience-openrail-m", "creativeml-openrail-m", "bigscience-bloom-rail-1.0",
    "bigcode-openrail-m", "deepseek",
)
_META_MAU = "Licensees with more than 700 million monthly active users need a separate licence from Meta."


def permissive(license_id: str, title: str, url: str, what: str, clause: str, version: str) -> LicenseRule:
    """Apache/MIT/BSD-style: keep the licence and notices with copies of the weights; nothing for outputs, which are
    not the licensed Work."""
    weights = Terms(
        license_copy=True,
        notice=f"Contains weights derived from {{source}} ({title}); {what}",
        modified_notice=license_id == "apache-2.0",
        clause=clause,
        reason=f"{title}: a model derived from the weights keeps the licence text and notices and marks changes.",
    )
    outputs = Terms(reason=f"{title}: training on the model's outputs carries no duty (the licence covers the Work, "
                    "not what it generates).", clause=clause)
    data = replace(ATTRIBUTION, clause=clause)
    return LicenseRule(license_id, title, url, "permissive", weights, outputs, data, text_version=version)


def public_domain(license_id: str, title: str, url: str, clause: str, version: str) -> LicenseRule:
    free = replace(_FREE, clause=clause)
    return LicenseRule(license_id, title, url, "public-domain", free, free, free, text_version=version)


def llama(license_id: str, version: str, url: str, policy: str, date: str, eu_multimodal: str = "") -> LicenseRule:
    """Llama 3.1 and later: name prefix, "Built with Llama", NOTICE, licence copy, acceptable-use policy."""
    title = f"Llama {version} Community License"
    restrictions = (f"Llama {version} Acceptable Use Policy: {policy}", _META_MAU)
    if eu_multimodal:  # the acceptable-use policy grants no §1(a) rights on multimodal models to EU residents
        restrictions += (eu_multimodal,)
    clause = (f"{title} ({date}) §1.b.i (copy of the agreement, 'Built with Llama', 'Llama' at the beginning of the "
              "name of a model trained on Llama Materials or outputs), §1.b.iii (NOTICE), §1.b.iv (acceptable-use "
              "policy), §2 (700M MAU)")
    duties = dict(
        name_prefix="Llama",
        attribution="Built with Llama",
        notice=f"Llama {version} is licensed under the {title}, Copyright © Meta Platforms, Inc. All Rights Reserved.",
        license_copy=True,
        use_restrictions=restrictions,
        clause=clause,
    )
    weights = Terms(
        student_licenses=(license_id,),
        reason=f"{title}: derivatives of the weights are distributed under the same licence, named 'Llama...', "
        "with 'Built with Llama', the NOTICE line, a copy of the licence and the acceptable-use policy.",
        **duties,
    )
    outputs = Terms(
        student_licenses=(license_id,),
        mismatch="warn",
        status="warn",
        reason=f"{title}: a model trained on Llama outputs must be named 'Llama...' and show 'Built with Llama'; "
        "whether it must also carry the licence is unsettled, so it does by default.",
        **duties,
    )
    return LicenseRule(license_id, title, url, "llama", weights, outputs, student_license=license_id,
                       text_version=date)


def llama_legacy(license_id: str, version: str, url: str, date: str, extra: dict) -> LicenseRule:
    """Llama 2 and 3: their outputs may not improve a model that is not a derivative of the same Llama version."""
    title = f"Llama {version} Community License"
    clause = (f"{title} ({date}) §1.b.v: no use of the Llama Materials 'or any output or results' to improve any "
              f"other large language model (excluding Llama {version} or derivative works thereof); §1.b.i-iv "
              "(copy, notices, acceptable-use policy)")
    weights = Terms(
        student_licenses=(license_id,),
        reason=f"{title}: derivatives of the weights (and Llama {version} derivatives improved with its outputs) are "
        "distributed under the same licence.",
        license_copy=True,
        clause=clause,
        **extra,
    )
    outputs = replace(
        weights,
        status="conflict",
        unless_base_family=license_id,
        reason=f"{title}: its outputs may not be used to improve any other large language model than Llama "
        f"{version} and its derivatives; start the student from a Llama {version} checkpoint or choose another "
        "teacher.",
    )
    return LicenseRule(license_id, title, url, license_id, weights, outputs, student_license=license_id,
                       text_version=date)


def rail(license_id: str, title: str, url: str, version: str, clause: str = "") -> LicenseRule:
    """OpenRAIL family: 'Derivatives of the Model' include models distilled from the weights or trained on synthetic
    data from it; use restrictions flow down as enforceable terms; additional terms are allowed."""
    clause = clause or (f"{title}: §1 'Derivatives of the Model' (includes distillation and training on synthetic "
                        "data generated by the Model), §4(a)-(d) (use restrictions as enforceable terms, copy of the "
                        "licence, modified-files notices, retained notices; additional terms allowed), §5 and "
                        "Attachment A (use-based restrictions)")
    terms = Terms(
        student_licenses=RAIL_IDS,
        license_copy=True,
        modified_notice=True,
        additional_terms=True,
        use_restrictions=(f"The use-based restrictions of the {title} bind every downstream user: {url}",),
        clause=clause,
        reason=f"{title}: distillation makes a 'Derivative of the Model'; its use-based restrictions must be passed "
        "on as enforceable terms, so the student stays in the RAIL family.",
    )
    return LicenseRule(license_id, title, url, "rail", terms, terms, student_license=license_id,
                       text_version=version)


def _cc_terms(license_id: str, title: str, parts: list[str], version: str) -> tuple[Terms, str | None]:
    """The terms of a Creative Commons licence for a model trained on the material, and the student's licence."""
    if version == "4.0":
        clause = (f"{title} legal code §3(a) (attribution, indicate changes), §2(a)(1) (NonCommercial, and for ND: "
                  "no sharing of Adapted Material), §3(b) (ShareAlike: an Adapter's License of the same elements)")
    else:
        clause = (f"{title} legal code §3 (grant; ND: no Derivative Works/Adaptations) and §4 (attribution, "
                  "NonCommercial, ShareAlike: same licence elements, this or a later version)")
    same_elements = tuple(f"cc-{'-'.join(parts)}-{v}" for v in CC_VERSIONS if v >= version)
    non_commercial = "nc" in parts
    if "nd" in parts:
        return Terms(status="conflict", non_commercial=non_commercial, clause=clause,
                     reason=f"{title}: no adaptations may be shared; a model trained on it is published only with the "
                     "rights holder's permission."), None
    if non_commercial:
        student = f"cc-by-nc-sa-{version}" if "sa" in parts else "cc-by-nc-4.0"
        return Terms(student_licenses=same_elements if "sa" in parts else NON_COMMERCIAL_LICENSES,
                     non_commercial=True, share_alike="sa" in parts, clause=clause,
                     reason=f"{title}: non-commercial use only, so the student is licensed for non-commercial use "
                     "only."), student
    if "sa" in parts:
        return Terms(student_licenses=same_elements, mismatch="warn", status="warn", share_alike=True, clause=clause,
                     reason=f"{title}: ShareAlike applies if the model is an adaptation of the data, which is "
                     f"unsettled; the student carries {license_id} by default."), license_id
    return Terms(clause=clause, reason=f"{title}: attribution; the card names and links the source."), None


def creative_commons(license_id: str) -> LicenseRule:
    """Creative Commons 2.0-4.0: attribution always; NonCommercial, ShareAlike and NoDerivatives flow to the
    student."""
    parts, version = license_id.split("-")[1:-1], license_id.rsplit("-", 1)[1]  # "cc-by-nc-sa-4.0"
    title = f"CC {'-'.join(p.upper() for p in parts)} {version}"
    url = f"https://creativecommons.org/licenses/{'-'.join(parts)}/{version}/legalcode"
    terms, student = _cc_terms(license_id, title, parts, version)
    # Derived from CC-licensed weights: ShareAlike and NonCommercial certainly apply, and the licence text ships.
    weights = terms if terms.status == "conflict" else replace(terms, license_copy=True, mismatch="conflict",
                                                               status="ok")
    return LicenseRule(license_id, title, url, "creative-commons", weights, terms, student_license=student,
                       text_version=f"version {version}")


def gnu(license_id: str, title: str, url: str, version: str, clause: str, students: tuple[str, ...]) -> LicenseRule:
    """GNU copyleft: a work based on the licensed work is licensed as a whole under the same licence; output of
    running a program is not covered unless it is itself a covered work."""
    weights = Terms(student_licenses=students, license_copy=True, share_alike=True, modified_notice=True,
                    clause=clause, reason=f"{title}: a work based on it is licensed as a whole under the same "
                    "licence, with its text and marked changes.")
    outputs = Terms(clause=clause, reason=f"{title}: the output of running a program is not covered unless it is "
                    "itself a work based on the program; training on outputs carries no duty.")
    data = replace(weights, mismatch="warn", status="warn", license_copy=False, modified_notice=False,
                   reason=f"{title}: whether a model trained on covered text is a work based on it is unsettled; "
                   f"the student carries {students[0]} by default.")
    return LicenseRule(license_id, title, url, "gnu", weights, outputs, data, student_license=students[0],
                       text_version=version)


def closed_api(license_id: str, vendor: str, url: str, clause: str, version: str) -> LicenseRule:
    terms = Terms(
        status="conflict",
        clause=clause,
        reason=f"{vendor}'s terms forbid using outputs to develop competing models; publish only with the vendor's "
        "written permission (then pass `allow_license_conflict=True`).",
    )
    return LicenseRule(license_id, f"{vendor} terms of use", url, "closed", terms, terms, text_version=version)
