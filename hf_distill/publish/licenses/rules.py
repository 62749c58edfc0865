"""The licence rules table: what each teacher, starting-checkpoint or dataset licence obliges a distilled student to
carry. Engineering defaults drawn from the licence texts, not legal advice.

A student relates to a source in one of three ways, and a licence may ask different things of each:

- `"weights"`: the student starts from, or is pruned from, the source's weights (the starting checkpoint always is);
- `"outputs"`: the student only learns from the source's text or logits (the usual teacher);
- `"data"`: the source is a training dataset.

A new licence is one entry in `LICENSE_RULES`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

__all__ = [
    "HUB_LICENSE_IDS",
    "LICENSE_RULES",
    "NON_COMMERCIAL_LICENSES",
    "LicenseRule",
    "Role",
    "Severity",
    "Terms",
    "normalize_license",
]

Severity = Literal["ok", "warn", "conflict"]
Role = Literal["weights", "outputs", "data"]

# Licence ids the Hub accepts in `license:` metadata (anything else is published as `other` + `license_name`).
HUB_LICENSE_IDS = frozenset(
    """apache-2.0 mit openrail bigscience-openrail-m creativeml-openrail-m bigscience-bloom-rail-1.0 bigcode-openrail-m
    afl-3.0 artistic-2.0 bsl-1.0 bsd bsd-2-clause bsd-3-clause bsd-3-clause-clear c-uda cc cc0-1.0 cc-by-2.0
    cc-by-2.5 cc-by-3.0 cc-by-4.0 cc-by-sa-3.0 cc-by-sa-4.0 cc-by-nc-2.0 cc-by-nc-3.0 cc-by-nc-4.0 cc-by-nd-4.0
    cc-by-nc-nd-3.0 cc-by-nc-nd-4.0 cc-by-nc-sa-2.0 cc-by-nc-sa-3.0 cc-by-nc-sa-4.0 cdla-sharing-1.0
    cdla-permissive-1.0 cdla-permissive-2.0 wtfpl ecl-2.0 epl-1.0 epl-2.0 etalab-2.0 eupl-1.1 eupl-1.2 agpl-3.0 gfdl
    gpl gpl-2.0 gpl-3.0 lgpl lgpl-2.1 lgpl-3.0 isc h-research intel-research lppl-1.3c ms-pl apple-ascl apple-amlr
    mpl-2.0 odc-by odbl openmdw-1.0 openrail++ osl-3.0 postgresql ofl-1.1 ncsa unlicense zlib pddl lgpl-lr
    deepfloyd-if-license fair-noncommercial-research-license llama2 llama3 llama3.1 llama3.2 llama3.3 llama4
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
        name_prefix (`str`, *optional*): the student's name must start with this.
        attribution (`str`, *optional*): a line to show prominently in the card.
        notice (`str`, *optional*): a line for the NOTICE file; `{source}` is replaced by the source's id.
        license_copy (`bool`): ship a copy of the source's licence text.
        non_commercial (`bool`): the student may only be used non-commercially.
        share_alike (`bool`): the student must carry the same licence (ShareAlike).
        use_restrictions (`tuple[str, ...]`): use policies and limits that flow downstream.
        reason (`str`): why, in one sentence, shown in the card.
        unless_base_family (`str`, *optional*): use the `"weights"` terms instead when the starting checkpoint's
            licence is of this family (Llama 2/3 outputs may improve Llama derivatives only).
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
    """

    license_id: str
    title: str
    url: str
    family: str
    weights: Terms
    outputs: Terms
    data: Terms | None = None
    student_license: str | None = None

    @property
    def is_hub_id(self) -> bool:
        return self.license_id in HUB_LICENSE_IDS

    def terms(self, role: Role) -> Terms:
        if role == "data":
            return self.data if self.data is not None else self.outputs
        return self.weights if role == "weights" else self.outputs


_FREE = Terms(reason="No duty on a model built from it.")
_ATTRIBUTION = Terms(reason="Attribution: the card names and links the source.")


def _permissive(license_id: str, title: str, url: str, what: str) -> LicenseRule:
    """Apache/MIT/BSD-style: keep the licence and notices with copies of the weights; nothing for outputs."""
    weights = Terms(
        license_copy=True,
        notice=f"Contains weights derived from {{source}} ({title}); {what}",
        reason=f"{title}: a model derived from the weights keeps the licence text and notices and marks changes.",
    )
    outputs = Terms(reason=f"{title}: training on the model's outputs carries no duty.")
    return LicenseRule(license_id, title, url, "permissive", weights, outputs, _ATTRIBUTION)


def _public_domain(license_id: str, title: str, url: str) -> LicenseRule:
    return LicenseRule(license_id, title, url, "public-domain", _FREE, _FREE, _FREE)


def _llama(license_id: str, version: str, url: str, policy: str) -> LicenseRule:
    """Llama 3.1 and later: name prefix, "Built with Llama", NOTICE, licence copy, acceptable-use policy."""
    title = f"Llama {version} Community License"
    restrictions = (
        f"Llama {version} Acceptable Use Policy: {policy}",
        "Licensees with more than 700 million monthly active users need a separate licence from Meta.",
    )
    duties = dict(
        name_prefix="Llama",
        attribution="Built with Llama",
        notice=f"Llama {version} is licensed under the {title}, Copyright © Meta Platforms, Inc. All Rights Reserved.",
        license_copy=True,
        use_restrictions=restrictions,
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
    return LicenseRule(license_id, title, url, "llama", weights, outputs, student_license=license_id)


def _llama_legacy(license_id: str, version: str, url: str, extra: dict) -> LicenseRule:
    """Llama 2 and 3: their outputs may not improve a model that is not a Llama derivative."""
    title = f"Llama {version} Community License"
    weights = Terms(
        student_licenses=(license_id,),
        reason=f"{title}: derivatives of the weights are distributed under the same licence.",
        license_copy=True,
        **extra,
    )
    outputs = replace(
        weights,
        status="conflict",
        unless_base_family="llama",
        reason=f"{title}: its outputs may not be used to improve any other large language model than Llama "
        f"{version} and its derivatives; start the student from a Llama checkpoint or choose another teacher.",
    )
    return LicenseRule(license_id, title, url, "llama", weights, outputs, student_license=license_id)


def _rail(license_id: str, title: str, url: str) -> LicenseRule:
    """OpenRAIL family: 'Derivatives' include models distilled from the weights or outputs; use restrictions flow
    down as enforceable terms."""
    terms = Terms(
        student_licenses=_RAIL_IDS,
        license_copy=True,
        use_restrictions=(f"The use-based restrictions of the {title} bind every downstream user: {url}",),
        reason=f"{title}: distillation makes a 'Derivative'; its use-based restrictions must be passed on as "
        "enforceable terms, so the student stays in the RAIL family.",
    )
    return LicenseRule(license_id, title, url, "rail", terms, terms, student_license=license_id)


def _creative_commons(license_id: str) -> LicenseRule:
    """Creative Commons 4.0: attribution always; NonCommercial, ShareAlike and NoDerivatives flow to the student."""
    parts = license_id.split("-")[1:-1]  # "cc-by-nc-sa-4.0" -> ["by", "nc", "sa"]
    title = f"CC {'-'.join(p.upper() for p in parts)} 4.0"
    url = f"https://creativecommons.org/licenses/{'-'.join(parts)}/4.0/"
    student = None
    if "nd" in parts:
        terms = Terms(
            status="conflict",
            reason=f"{title}: no adaptations may be shared; a model trained on it is published only with the "
            "rights holder's permission.",
        )
    elif "nc" in parts:
        student = "cc-by-nc-sa-4.0" if "sa" in parts else "cc-by-nc-4.0"
        terms = Terms(
            student_licenses=(student,) if "sa" in parts else NON_COMMERCIAL_LICENSES,
            non_commercial=True,
            share_alike="sa" in parts,
            reason=f"{title}: non-commercial use only, so the student is licensed for non-commercial use only.",
        )
    elif "sa" in parts:
        student = license_id
        terms = Terms(
            student_licenses=(license_id,),
            mismatch="warn",
            status="warn",
            share_alike=True,
            reason=f"{title}: ShareAlike applies if the model is an adaptation of the data, which is unsettled; "
            f"the student carries {license_id} by default.",
        )
    else:
        terms = Terms(reason=f"{title}: attribution; the card names and links the source.")
    # Derived from CC-licensed weights: ShareAlike and NonCommercial certainly apply, and the licence text ships.
    if terms.status != "conflict":
        weights = replace(terms, license_copy=True, mismatch="conflict", status="ok")
    else:
        weights = terms
    return LicenseRule(license_id, title, url, "creative-commons", weights, terms, student_license=student)


def _closed_api(license_id: str, vendor: str, url: str) -> LicenseRule:
    terms = Terms(
        status="conflict",
        reason=f"{vendor}'s terms forbid using outputs to develop competing models; publish only with the vendor's "
        "written permission (then pass `allow_license_conflict=True`).",
    )
    return LicenseRule(license_id, f"{vendor} terms of use", url, "closed", terms, terms)


NON_COMMERCIAL_LICENSES = (
    "cc-by-nc-4.0", "cc-by-nc-sa-4.0", "cc-by-nc-nd-4.0", "cc-by-nc-3.0", "cc-by-nc-sa-3.0", "cc-by-nc-2.0",
    "qwen-research", "mrl", "fair-noncommercial-research-license",
)
_RAIL_IDS = (
    "openrail", "openrail++", "bigscience-openrail-m", "creativeml-openrail-m", "bigscience-bloom-rail-1.0",
    "bigcode-openrail-m", "deepseek",
)

_GEMMA_TERMS = Terms(
    student_licenses=("gemma",),
    notice="Gemma is provided under and subject to the Gemma Terms of Use found at ai.google.dev/gemma/terms",
    license_copy=True,
    use_restrictions=("Gemma Prohibited Use Policy: https://ai.google.dev/gemma/prohibited_use_policy",),
    reason="Gemma Terms of Use: a model trained by distillation or on Gemma outputs is a 'Model Derivative' and is "
    "distributed under the Gemma Terms with their use restrictions, the NOTICE and a copy of the terms.",
)
_QWEN_MAU = "Licensees with more than 100 million monthly active users need a separate licence from Alibaba Cloud."
_QWEN_OUTPUTS = Terms(
    attribution="Improved using Qwen",
    use_restrictions=(_QWEN_MAU,),
    reason="Qwen License: a model improved with Qwen outputs shows 'Built with Qwen' or 'Improved using Qwen'; any "
    "licence otherwise.",
)
_QWEN_WEIGHTS = Terms(
    student_licenses=("qwen",),
    attribution="Built with Qwen",
    license_copy=True,
    use_restrictions=(_QWEN_MAU,),
    reason="Qwen License: derivatives of the weights stay under the Qwen License with 'Built with Qwen'.",
)
_QWEN_RESEARCH = Terms(
    student_licenses=NON_COMMERCIAL_LICENSES,
    attribution="Improved using Qwen",
    non_commercial=True,
    license_copy=True,
    use_restrictions=("Non-commercial research use only (Qwen Research License).",),
    reason="Qwen Research License: non-commercial research only, with Qwen attribution; the student is "
    "non-commercial too.",
)
_MRL = Terms(
    student_licenses=("mrl",),
    non_commercial=True,
    license_copy=True,
    use_restrictions=("Research use only (Mistral AI Research License).",),
    reason="Mistral AI Research License: derivatives, distilled models included, stay research-only under the MRL.",
)
_LLAMA3_EXTRA = dict(
    name_prefix="Llama 3",
    attribution="Built with Meta Llama 3",
    notice="Meta Llama 3 is licensed under the Meta Llama 3 Community License, Copyright © Meta Platforms, Inc. All "
    "Rights Reserved.",
    use_restrictions=(
        "Meta Llama 3 Acceptable Use Policy: https://llama.meta.com/llama3/use-policy",
        "Licensees with more than 700 million monthly active users need a separate licence from Meta.",
    ),
)
_LLAMA2_EXTRA = dict(
    notice="Llama 2 is licensed under the LLAMA 2 Community License, Copyright © Meta Platforms, Inc. All Rights "
    "Reserved.",
    use_restrictions=(
        "Llama 2 Acceptable Use Policy: https://ai.meta.com/llama/use-policy",
        "Licensees with more than 700 million monthly active users need a separate licence from Meta.",
    ),
)
_UNKNOWN = Terms(
    status="warn",
    reason="Licence unknown or missing: it cannot be judged. Read the source's terms and pass the licence explicitly "
    "(`teacher_license=`, `dataset_licenses=`).",
)


def _rules() -> dict[str, LicenseRule]:
    rules = [
        _permissive("apache-2.0", "Apache License 2.0", "https://www.apache.org/licenses/LICENSE-2.0",
                    "keep its LICENSE and NOTICE and state the changes."),
        _permissive("mit", "MIT License", "https://opensource.org/license/mit", "keep its copyright notice."),
        _permissive("bsd-3-clause", "BSD 3-Clause License", "https://opensource.org/license/bsd-3-clause",
                    "keep its copyright notice."),
        _permissive("bsd-2-clause", "BSD 2-Clause License", "https://opensource.org/license/bsd-2-clause",
                    "keep its copyright notice."),
        _public_domain("cc0-1.0", "CC0 1.0", "https://creativecommons.org/publicdomain/zero/1.0/"),
        _public_domain("pddl", "ODC Public Domain Dedication and License", "https://opendatacommons.org/licenses/pddl/"),
        _public_domain("unlicense", "The Unlicense", "https://unlicense.org/"),
        _llama_legacy("llama2", "2", "https://ai.meta.com/llama/license/", _LLAMA2_EXTRA),
        _llama_legacy("llama3", "3", "https://llama.meta.com/llama3/license/", _LLAMA3_EXTRA),
        _llama("llama3.1", "3.1", "https://llama.meta.com/llama3_1/license/", "https://llama.meta.com/llama3_1/use-policy"),
        _llama("llama3.2", "3.2", "https://www.llama.com/llama3_2/license/", "https://www.llama.com/llama3_2/use-policy"),
        _llama("llama3.3", "3.3", "https://www.llama.com/llama3_3/license/", "https://www.llama.com/llama3_3/use-policy"),
        _llama("llama4", "4", "https://www.llama.com/llama4/license/", "https://www.llama.com/llama4/use-policy"),
        LicenseRule("gemma", "Gemma Terms of Use", "https://ai.google.dev/gemma/terms", "gemma",
                    _GEMMA_TERMS, _GEMMA_TERMS, student_license="gemma"),
        LicenseRule("qwen", "Qwen License Agreement",
                    "https://huggingface.co/Qwen/Qwen2.5-72B-Instruct/blob/main/LICENSE", "qwen",
                    _QWEN_WEIGHTS, _QWEN_OUTPUTS),
        LicenseRule("qwen-research", "Qwen Research License Agreement",
                    "https://huggingface.co/Qwen/Qwen2.5-3B-Instruct/blob/main/LICENSE", "qwen",
                    replace(_QWEN_RESEARCH, student_licenses=("qwen-research",), attribution="Built with Qwen"),
                    _QWEN_RESEARCH, student_license="qwen-research"),
        LicenseRule("mrl", "Mistral AI Research License", "https://mistral.ai/licenses/MRL-0.1.md", "mistral",
                    _MRL, _MRL, student_license="mrl"),
        _rail("deepseek", "DeepSeek License Agreement",
              "https://github.com/deepseek-ai/DeepSeek-LLM/blob/main/LICENSE-MODEL"),
        _rail("openrail", "Open RAIL License", "https://huggingface.co/blog/open_rail"),
        _rail("openrail++", "Open RAIL++-M License",
              "https://huggingface.co/stabilityai/stable-diffusion-xl-base-1.0/blob/main/LICENSE.md"),
        _rail("bigscience-openrail-m", "BigScience OpenRAIL-M License",
              "https://bigscience.huggingface.co/blog/bigscience-openrail-m"),
        _rail("creativeml-openrail-m", "CreativeML OpenRAIL-M License",
              "https://huggingface.co/spaces/CompVis/stable-diffusion-license"),
        _rail("bigscience-bloom-rail-1.0", "BigScience BLOOM RAIL 1.0 License",
              "https://bigscience.huggingface.co/blog/the-bigscience-rail-license"),
        _rail("bigcode-openrail-m", "BigCode OpenRAIL-M License",
              "https://www.bigcode-project.org/docs/pages/bigcode-openrail/"),
        _creative_commons("cc-by-4.0"),
        _creative_commons("cc-by-sa-4.0"),
        _creative_commons("cc-by-nc-4.0"),
        _creative_commons("cc-by-nc-sa-4.0"),
        _creative_commons("cc-by-nd-4.0"),
        _creative_commons("cc-by-nc-nd-4.0"),
        LicenseRule("odc-by", "ODC Attribution License", "https://opendatacommons.org/licenses/by/1-0/",
                    "attribution", _ATTRIBUTION, _ATTRIBUTION),
        LicenseRule("odbl", "ODC Open Database License", "https://opendatacommons.org/licenses/odbl/",
                    "attribution", _ATTRIBUTION, _ATTRIBUTION,
                    data=Terms(reason="ODbL: a model is a 'Produced Work': it names the database (attribution).")),
        _closed_api("openai-terms", "OpenAI", "https://openai.com/policies/terms-of-use"),
        _closed_api("anthropic-terms", "Anthropic", "https://www.anthropic.com/legal/commercial-terms"),
        LicenseRule("unknown", "unknown licence", "", "unknown", _UNKNOWN, _UNKNOWN),
        LicenseRule("other", "other licence (no name given)", "", "unknown", _UNKNOWN, _UNKNOWN),
    ]
    return {rule.license_id: rule for rule in rules}


LICENSE_RULES: dict[str, LicenseRule] = _rules()

_ALIASES = {
    "apache 2.0": "apache-2.0", "apache2": "apache-2.0", "apache-2": "apache-2.0", "llama-2": "llama2",
    "llama-3": "llama3", "llama-3.1": "llama3.1", "llama-3.2": "llama3.2", "llama-3.3": "llama3.3",
    "llama-4": "llama4", "qwen-license": "qwen", "tongyi-qianwen": "qwen", "tongyi-qianwen-research": "qwen-research",
    "mistral-research": "mrl", "mrl-0.1": "mrl", "deepseek-license": "deepseek", "public-domain": "cc0-1.0",
}


def normalize_license(license_id: str | None, license_name: str | None = None) -> str | None:
    """The rules-table id of a card's `license` (and `license_name` for `other`), lower-cased and de-aliased.

    `license: other` with `license_name: qwen` gives `"qwen"`; an empty value gives `None` (missing).
    """
    value = (license_id or "").strip().lower()
    if value == "other" and license_name:
        value = license_name.strip().lower()
    if not value:
        return None
    return _ALIASES.get(value, value)
