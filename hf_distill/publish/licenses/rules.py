"""The licence rules table: what each teacher, starting-checkpoint or dataset licence obliges a distilled student to
carry. Engineering defaults drawn from the licence texts, not legal advice: each rule cites the clause it follows
(`Terms.clause`) and the date or version of the text (`LicenseRule.text_version`); docs/licenses.md lists them.

A student relates to a source in one of three ways, and a licence may ask different things of each:

- `"weights"`: the student starts from, or is pruned from, the source's weights (the starting checkpoint always is);
- `"outputs"`: the student only learns from the source's text or logits (the usual teacher);
- `"data"`: the source is a training dataset.

A new licence is one entry in `LICENSE_RULES`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace

from .families import (
    ATTRIBUTION,
    CC_ELEMENTS,
    CC_VERSIONS,
    NON_COMMERCIAL_LICENSES,
    closed_api,
    creative_commons,
    gnu,
    llama,
    llama_legacy,
    permissive,
    public_domain,
    rail,
)
from .terms import HUB_LICENSE_IDS, LicenseRule, Role, Severity, Terms

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

# -- Gemma -----------------------------------------------------------------------------------------------------------
# Gemma Terms of Use (last modified March 24, 2025): §1.1 "Model Derivatives" include models trained by distillation
# or on Gemma outputs; §3.1 distribution conditions: the §3.2 use restrictions as an enforceable provision, a copy of
# the Agreement, modified files carry prominent notices, the "Notice" text file; §3.1's last paragraph allows
# additional or different terms for Model Derivatives that otherwise comply.
_GEMMA_TERMS = Terms(
    student_licenses=("gemma",),
    notice="Gemma is provided under and subject to the Gemma Terms of Use found at ai.google.dev/gemma/terms",
    license_copy=True,
    modified_notice=True,
    additional_terms=True,
    use_restrictions=("Gemma Prohibited Use Policy: https://ai.google.dev/gemma/prohibited_use_policy",),
    clause="Gemma Terms of Use §1.1 ('Model Derivatives' include distillation), §3.1 conditions (use restrictions, "
    "copy, modified-files notices, NOTICE) and last paragraph (additional terms allowed), §3.2",
    reason="Gemma Terms of Use: a model trained by distillation or on Gemma outputs is a 'Model Derivative' and is "
    "distributed under the Gemma Terms with their use restrictions, the NOTICE, marked changes and a copy of the "
    "terms; further terms (a non-commercial limit) may be added.",
)

# -- Qwen ------------------------------------------------------------------------------------------------------------
# Qwen LICENSE AGREEMENT (release date September 19, 2024; Qwen2.5-72B): §3(a) copy, §3(b) modified-files notices,
# §3(c) NOTICE line, §3(d) additional terms allowed; §4 100M MAU; §5(b) "Built with Qwen" / "Improved using Qwen" on a
# model created or improved with the Materials or their outputs. The Qwen RESEARCH LICENSE AGREEMENT (same date;
# Qwen2.5-3B) adds §2 non-commercial use only and moves the attribution to §4(b).
_QWEN_MAU = "Licensees with more than 100 million monthly active users need a separate licence from Alibaba Cloud."
_QWEN_NOTICE = "Qwen is licensed under the Qwen LICENSE AGREEMENT, Copyright (c) Alibaba Cloud. All Rights Reserved."
_QWEN_OUTPUTS = Terms(
    attribution="Improved using Qwen",
    use_restrictions=(_QWEN_MAU,),
    clause="Qwen LICENSE AGREEMENT (2024-09-19) §5(b) ('Built with Qwen' or 'Improved using Qwen'), §4 (100M MAU)",
    reason="Qwen License: a model improved with Qwen outputs shows 'Built with Qwen' or 'Improved using Qwen'; any "
    "licence otherwise.",
)
_QWEN_WEIGHTS = Terms(
    student_licenses=("qwen",),
    attribution="Built with Qwen",
    notice=_QWEN_NOTICE,
    license_copy=True,
    modified_notice=True,
    additional_terms=True,
    use_restrictions=(_QWEN_MAU,),
    clause="Qwen LICENSE AGREEMENT (2024-09-19) §3(a)-(d) (copy, modified-files notices, NOTICE, additional terms), "
    "§4, §5(b)",
    reason="Qwen License: derivatives of the weights stay under the Qwen License with 'Built with Qwen', the NOTICE "
    "line and marked changes.",
)
_QWEN_RESEARCH = Terms(
    student_licenses=NON_COMMERCIAL_LICENSES,
    attribution="Improved using Qwen",
    non_commercial=True,
    license_copy=True,
    use_restrictions=("Non-commercial research use only (Qwen Research License).",),
    clause="Qwen RESEARCH LICENSE AGREEMENT (2024-09-19) §2 (non-commercial purposes only), §4(b) (attribution)",
    reason="Qwen Research License: non-commercial research only, with Qwen attribution; the student is "
    "non-commercial too.",
)
_QWEN_RESEARCH_WEIGHTS = replace(
    _QWEN_RESEARCH,
    student_licenses=("qwen-research",),
    attribution="Built with Qwen",
    notice="Qwen is licensed under the Qwen RESEARCH LICENSE AGREEMENT, Copyright (c) Alibaba Cloud. All Rights "
    "Reserved.",
    modified_notice=True,
    additional_terms=True,
    clause="Qwen RESEARCH LICENSE AGREEMENT (2024-09-19) §2, §3(a)-(d) (copy, modified-files notices, NOTICE, "
    "additional terms), §4(b)",
)


def _tongyi_qianwen(license_id: str, agreement: str, date: str, forbid: str, research: bool) -> LicenseRule:
    """Tongyi Qianwen (Qwen, Qwen1.5, Qwen2-72B): outputs may not improve any other LLM than Tongyi Qianwen and its
    derivatives, so a student trained on them must start from a Tongyi Qianwen checkpoint."""
    title = f"Tongyi Qianwen {agreement}"
    clause = (f"{title} ({date}) {forbid}: 'You can not use the Materials or any output therefrom to improve any "
              "other large language model (excluding Tongyi Qianwen or derivative works thereof)'; §3(a)-(d) (copy, "
              "modified-files notices, NOTICE, additional terms)" + ("; §2 non-commercial use only" if research else
                                                                      "; §4 (100M MAU)"))
    restrictions = (f"Not to be used, nor its outputs, to improve any other large language model than Tongyi Qianwen "
                    f"and its derivatives ({title} {forbid}).",)
    restrictions += (("Non-commercial research use only.",) if research else (_QWEN_MAU,))
    weights = Terms(
        student_licenses=(license_id,),
        notice=f"Tongyi Qianwen is licensed under the {title}, Copyright (c) Alibaba Cloud. All Rights Reserved.",
        license_copy=True,
        modified_notice=True,
        additional_terms=True,
        non_commercial=research,
        use_restrictions=restrictions,
        clause=clause,
        reason=f"{title}: a Tongyi Qianwen derivative (weights, or improved with its outputs) keeps the agreement, "
        "its NOTICE line and marked changes.",
    )
    outputs = replace(
        weights,
        status="conflict",
        unless_base_family="tongyi-qianwen",
        reason=f"{title} {forbid}: its outputs may not improve any other large language model than Tongyi Qianwen "
        "and its derivatives; start the student from a Tongyi Qianwen checkpoint or choose another teacher.",
    )
    url = ("https://github.com/QwenLM/Qwen/blob/main/Tongyi%20Qianwen%20RESEARCH%20LICENSE%20AGREEMENT" if research
           else "https://github.com/QwenLM/Qwen/blob/main/Tongyi%20Qianwen%20LICENSE%20AGREEMENT")
    return LicenseRule(license_id, title, url, "tongyi-qianwen", weights, outputs, student_license=license_id,
                       text_version=date)


# -- Mistral AI Research License --------------------------------------------------------------------------------------
# MRL-0.1: §1 "Research Purposes" exclude any Distribution by a commercial entity; §2.3 Derivatives may be distributed
# under additional terms with (b) prominent notices stating that You modified the Mistral Model; §3.2 Models,
# Derivatives and Outputs only for Research Purposes. The MRL does not name distillation: a model trained on Outputs
# is bound through the Outputs clause, one fine-tuned from the weights is a Derivative.
_MRL_RESTRICTIONS = (
    "Research use only (Mistral AI Research License).",
    "Distribution by a commercial entity, paid or free, is not a Research Purpose (MRL-0.1 §1).",
)
_MRL = Terms(
    student_licenses=("mrl",),
    non_commercial=True,
    license_copy=True,
    modified_notice=True,
    additional_terms=True,
    use_restrictions=_MRL_RESTRICTIONS,
    clause="Mistral AI Research License MRL-0.1 §1 ('Research Purposes', 'Derivative', 'Outputs'), §2.3(b) "
    "(prominent notices stating that You modified the Mistral Model), §3.2 (Research Purposes only)",
    reason="Mistral AI Research License: a Derivative of the model, and any use of its Outputs, is for Research "
    "Purposes only; distribution by a commercial entity is not one, and modified models say so prominently.",
)

# -- Llama -----------------------------------------------------------------------------------------------------------
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


def _eu_multimodal(version: str) -> str:
    return (f"Llama {version} Acceptable Use Policy: for multimodal Llama {version} models, the §1(a) rights are not "
            "granted to individuals domiciled in, or companies with a principal place of business in, the European "
            "Union (end users of a product or service that incorporates them are not affected).")


# -- licences with one rule each --------------------------------------------------------------------------------------
_UNKNOWN = Terms(
    status="warn",
    reason="Licence unknown or missing: it cannot be judged. Read the source's terms and pass the licence explicitly "
    "(`teacher_license=`, `dataset_licenses=`).",
)


def _grok2() -> LicenseRule:
    """Grok 2 Community License: no outputs or derivatives to build any foundational, large language or general
    purpose model, except modifications or fine-tuning of Grok 2 itself."""
    clause = ("Grok 2 Community License Agreement (August 2025), use restriction: 'You may not use the Materials, "
              "derivatives, or outputs (including generated data) to train, create, or improve any foundational, "
              "large language, or general-purpose AI models, except for modifications or fine-tuning of Grok 2'")
    weights = Terms(student_licenses=("grok2-community",), license_copy=True, clause=clause,
                    use_restrictions=("Grok 2 Community License: no use to train, create or improve another "
                                      "foundational, large language or general-purpose model.",),
                    reason="Grok 2 Community License: a modification or fine-tune of Grok 2 stays under its licence.")
    outputs = replace(weights, status="conflict", unless_base_family="grok2",
                      reason="Grok 2 Community License: its outputs may not train, create or improve any large "
                      "language or general-purpose model except a fine-tune of Grok 2 itself.")
    return LicenseRule("grok2-community", "Grok 2 Community License Agreement",
                       "https://huggingface.co/xai-org/grok-2/blob/main/LICENSE", "grok2", weights, outputs,
                       student_license="grok2-community", text_version="August 2025 (Grok 2 release)")


def _research_only(
    license_id: str, title: str, url: str, version: str, clause: str, notice: str | None
) -> LicenseRule:
    """Research/non-commercial model licences whose derivatives stay under the same licence (FAIR NC, Apple AMLR);
    a model trained on outputs is a product of research-only use, so it is non-commercial too."""
    weights = Terms(student_licenses=(license_id,), non_commercial=True, license_copy=True, notice=notice,
                    clause=clause, use_restrictions=(f"Non-commercial research use only ({title}).",),
                    reason=f"{title}: the model and its derivatives are for non-commercial research only and are "
                    "distributed under the same licence.")
    outputs = replace(weights, student_licenses=NON_COMMERCIAL_LICENSES, license_copy=False, notice=None,
                      reason=f"{title}: the model may be run for non-commercial research only, so a student trained "
                      "on its outputs is licensed for non-commercial use only.")
    return LicenseRule(license_id, title, url, "research", weights, outputs, student_license=license_id,
                       text_version=version)


def _falcon() -> LicenseRule:
    clause = ("TII Falcon License 2.0 (Falcon 3, December 2024): Apache-2.0-style redistribution (copy, "
              "modified-files notices, NOTICE) plus the Acceptable Use Policy, which binds the Work and Derivative "
              "Works")
    # Derivatives may carry other terms (Apache-style) if the policy binds them: default to the Falcon licence.
    terms = Terms(student_licenses=("falcon-llm-license",), mismatch="warn", additional_terms=True, license_copy=True,
                  modified_notice=True, clause=clause,
                  use_restrictions=("Falcon Acceptable Use Policy (binds derivative works): "
                                    "https://falconllm.tii.ae/falcon-terms-and-conditions.html",),
                  reason="TII Falcon License: derivatives keep its licence text and notices, and its acceptable-use "
                  "policy binds them.")
    outputs = replace(terms, license_copy=False, modified_notice=False,
                      reason="TII Falcon License: its acceptable-use policy binds derivative works; the student "
                      "carries it.")
    return LicenseRule("falcon-llm-license", "TII Falcon License", "https://falconllm.tii.ae/falcon-terms-and-conditions.html",
                       "falcon", terms, outputs, student_license="falcon-llm-license",
                       text_version="2.0 (December 2024)")


def _nvidia_open_model() -> LicenseRule:
    clause = ("NVIDIA Open Model License Agreement (version release date June 16, 2024) §2: distributing the Model or "
              "a Derivative Model requires a copy of the Agreement and the Notice line; NVIDIA claims no ownership of "
              "outputs")
    weights = Terms(license_copy=True, clause=clause,
                    notice="Licensed by NVIDIA Corporation under the NVIDIA Open Model License",
                    reason="NVIDIA Open Model License: a Derivative Model ships a copy of the agreement and its "
                    "required notice line.")
    outputs = Terms(clause=clause, reason="NVIDIA Open Model License: outputs are not restricted.")
    return LicenseRule("nvidia-open-model-license", "NVIDIA Open Model License Agreement",
                       "https://developer.download.nvidia.com/licenses/nvidia-open-model-license-agreement-june-2024.pdf",
                       "nvidia", weights, outputs, replace(ATTRIBUTION, clause=clause), text_version="June 16, 2024")


def _cdla_sharing() -> LicenseRule:
    clause = ("CDLA-Sharing-1.0 (2017): sharing obligations attach to Data and Enhanced Data; 'Results' of "
              "Computational Use are not Data, so a trained model is free of them; Data keeps its notices")
    weights = Terms(student_licenses=("cdla-sharing-1.0",), license_copy=True, share_alike=True, clause=clause,
                    reason="CDLA-Sharing-1.0: Enhanced Data is published under the same agreement.")
    data = Terms(clause=clause, reason="CDLA-Sharing-1.0: a model is a Result of Computational Use, which the "
                 "agreement does not restrict; the card credits the data.")
    return LicenseRule("cdla-sharing-1.0", "Community Data License Agreement – Sharing 1.0",
                       "https://cdla.dev/sharing-1-0/", "data-sharing", weights, data, text_version="1.0 (2017)")


def _openmdw(version: str) -> LicenseRule:
    rule = permissive(f"openmdw-{version}", f"OpenMDW License Agreement {version}",
                      "https://openmdw.ai/license/", "keep the agreement and its notices.",
                      f"OpenMDW-{version}: permissive grant over the Model Materials on condition that the "
                      "agreement and notices are kept; no restriction on outputs", f"version {version}")
    return rule


def _permissive_rules() -> list[LicenseRule]:
    return [
        permissive("apache-2.0", "Apache License 2.0", "https://www.apache.org/licenses/LICENSE-2.0",
                   "keep its LICENSE and NOTICE and state the changes.",
                   "Apache License 2.0 §4(a) (copy of the licence), §4(b) (modified files carry prominent notices), "
                   "§4(d) (NOTICE text travels with derivative works)", "Version 2.0, January 2004"),
        permissive("mit", "MIT License", "https://opensource.org/license/mit", "keep its copyright notice.",
                   "MIT License: the copyright and permission notice in all copies or substantial portions",
                   "OSI text"),
        permissive("bsd-3-clause", "BSD 3-Clause License", "https://opensource.org/license/bsd-3-clause",
                   "keep its copyright notice.", "BSD 3-Clause clause 1-2 (retain the copyright notice)", "OSI text"),
        permissive("bsd-2-clause", "BSD 2-Clause License", "https://opensource.org/license/bsd-2-clause",
                   "keep its copyright notice.", "BSD 2-Clause clause 1-2 (retain the copyright notice)", "OSI text"),
        _openmdw("1.0"),
        _openmdw("1.1"),
        public_domain("cc0-1.0", "CC0 1.0", "https://creativecommons.org/publicdomain/zero/1.0/",
                      "CC0 1.0 §2 (waiver of all copyright and related rights)", "1.0"),
        public_domain("pddl", "ODC Public Domain Dedication and License",
                      "https://opendatacommons.org/licenses/pddl/", "PDDL 1.0 §3 (dedication to the public domain)",
                      "1.0"),
        public_domain("unlicense", "The Unlicense", "https://unlicense.org/",
                      "The Unlicense (public-domain dedication)", "unlicense.org text"),
    ]


def _model_rules() -> list[LicenseRule]:
    llama31_policy = "https://llama.meta.com/llama3_1/use-policy"
    return [
        llama_legacy("llama2", "2", "https://ai.meta.com/llama/license/", "July 18, 2023", _LLAMA2_EXTRA),
        llama_legacy("llama3", "3", "https://llama.meta.com/llama3/license/", "April 18, 2024", _LLAMA3_EXTRA),
        llama("llama3.1", "3.1", "https://llama.meta.com/llama3_1/license/", llama31_policy, "July 23, 2024"),
        llama("llama3.2", "3.2", "https://www.llama.com/llama3_2/license/", "https://www.llama.com/llama3_2/use-policy",
              "September 25, 2024", _eu_multimodal("3.2")),
        llama("llama3.3", "3.3", "https://www.llama.com/llama3_3/license/", "https://www.llama.com/llama3_3/use-policy",
              "December 6, 2024"),
        llama("llama4", "4", "https://www.llama.com/llama4/license/", "https://www.llama.com/llama4/use-policy",
              "April 5, 2025", _eu_multimodal("4")),
        LicenseRule("gemma", "Gemma Terms of Use", "https://ai.google.dev/gemma/terms", "gemma",
                    _GEMMA_TERMS, _GEMMA_TERMS, student_license="gemma", text_version="March 24, 2025"),
        LicenseRule("qwen", "Qwen License Agreement",
                    "https://huggingface.co/Qwen/Qwen2.5-72B-Instruct/blob/main/LICENSE", "qwen",
                    _QWEN_WEIGHTS, _QWEN_OUTPUTS, text_version="September 19, 2024"),
        LicenseRule("qwen-research", "Qwen Research License Agreement",
                    "https://huggingface.co/Qwen/Qwen2.5-3B-Instruct/blob/main/LICENSE", "qwen",
                    _QWEN_RESEARCH_WEIGHTS, _QWEN_RESEARCH, student_license="qwen-research",
                    text_version="September 19, 2024"),
        _tongyi_qianwen("tongyi-qianwen", "LICENSE AGREEMENT", "August 3, 2023", "§5(b)", research=False),
        _tongyi_qianwen("tongyi-qianwen-research", "RESEARCH LICENSE AGREEMENT", "November 30, 2023", "§4(b)",
                        research=True),
        LicenseRule("mrl", "Mistral AI Research License", "https://mistral.ai/licenses/MRL-0.1.md", "mistral",
                    _MRL, _MRL, student_license="mrl", text_version="MRL-0.1"),
        _grok2(),
        _research_only("fair-noncommercial-research-license", "FAIR Noncommercial Research License",
                       "https://huggingface.co/facebook/MobileLLM-R1-950M/blob/main/LICENSE", "v1",
                       "FAIR Noncommercial Research License v1 §1.a (Noncommercial Research Uses only), §1.b.i "
                       "(derivative works distributed only under this licence, with a copy), §1.b.iii (FAIR "
                       "Acceptable Use Policy)", None),
        _research_only("apple-amlr", "Apple Machine Learning Research Model License",
                       "https://huggingface.co/apple/FastVLM-0.5B/blob/main/LICENSE", "2025 text (FastVLM release)",
                       "Apple Machine Learning Research Model License: use, modification and distribution of the "
                       "model and Derivative Works exclusively for Research Purposes (non-commercial), with a copy "
                       "and the notice", "Apple Machine Learning Research Model is licensed under the Apple Machine "
                       "Learning Research Model License Agreement."),
        _falcon(),
        _nvidia_open_model(),
        closed_api("openai-terms", "OpenAI", "https://openai.com/policies/terms-of-use",
                   "OpenAI Terms of Use §'What you cannot do': no use of Output to develop competing models",
                   "as published 2024"),
        closed_api("anthropic-terms", "Anthropic", "https://www.anthropic.com/legal/commercial-terms",
                   "Anthropic Commercial Terms §D.4: no use of the Services to build a competing product or to "
                   "train competing AI models", "as published 2024"),
    ]


def _rail_rules() -> list[LicenseRule]:
    return [
        rail("deepseek", "DeepSeek License Agreement",
             "https://github.com/deepseek-ai/DeepSeek-LLM/blob/main/LICENSE-MODEL", "Version 1.0, October 23, 2023",
             "DeepSeek License Agreement v1.0 §1 ('Derivatives of the Model' include distillation and synthetic "
             "data), §4(a)-(d) (use restrictions as enforceable terms, copy, modified-files notices, retained "
             "notices; additional terms allowed), §5 and Attachment A"),
        rail("openrail", "Open RAIL License", "https://huggingface.co/blog/open_rail", "RAIL template, 2022"),
        rail("openrail++", "Open RAIL++-M License",
             "https://huggingface.co/stabilityai/stable-diffusion-xl-base-1.0/blob/main/LICENSE.md", "July 26, 2023"),
        rail("bigscience-openrail-m", "BigScience OpenRAIL-M License",
             "https://bigscience.huggingface.co/blog/bigscience-openrail-m", "August 18, 2022"),
        rail("creativeml-openrail-m", "CreativeML OpenRAIL-M License",
             "https://huggingface.co/spaces/CompVis/stable-diffusion-license", "August 22, 2022"),
        rail("bigscience-bloom-rail-1.0", "BigScience BLOOM RAIL 1.0 License",
             "https://bigscience.huggingface.co/blog/the-bigscience-rail-license", "May 19, 2022"),
        rail("bigcode-openrail-m", "BigCode OpenRAIL-M License",
             "https://www.bigcode-project.org/docs/pages/bigcode-openrail/", "v1, May 4, 2023"),
    ]


def _gnu_rules() -> list[LicenseRule]:
    gpl3 = "GNU GPL v3 (29 June 2007) §5(c) (license the entire work as a whole under this License), §2 (output is " \
           "covered only if it is itself a covered work), §4 (copy of the licence)"
    gpl2 = "GNU GPL v2 (June 1991) §2(b) (a work based on the Program is licensed as a whole under this License), §1"
    lgpl21 = "GNU LGPL v2.1 (February 1999) §2(c) (the whole modified work licensed under this License), §1"
    lgpl3 = "GNU LGPL v3 (29 June 2007) §2 (a modified Library is conveyed under this License or the GNU GPL)"
    agpl3 = "GNU AGPL v3 (19 November 2007) §5(c), §13 (network use offers the source)"
    return [
        gnu("gpl-3.0", "GNU GPL v3", "https://www.gnu.org/licenses/gpl-3.0.html", "29 June 2007", gpl3, ("gpl-3.0",)),
        gnu("gpl-2.0", "GNU GPL v2", "https://www.gnu.org/licenses/old-licenses/gpl-2.0.html", "June 1991", gpl2,
            ("gpl-2.0",)),
        gnu("gpl", "GNU GPL (version not given)", "https://www.gnu.org/licenses/gpl-3.0.html", "v2/v3", gpl3,
            ("gpl", "gpl-3.0", "gpl-2.0")),
        gnu("agpl-3.0", "GNU AGPL v3", "https://www.gnu.org/licenses/agpl-3.0.html", "19 November 2007", agpl3,
            ("agpl-3.0",)),
        gnu("lgpl-3.0", "GNU LGPL v3", "https://www.gnu.org/licenses/lgpl-3.0.html", "29 June 2007", lgpl3,
            ("lgpl-3.0", "gpl-3.0")),
        gnu("lgpl-2.1", "GNU LGPL v2.1", "https://www.gnu.org/licenses/old-licenses/lgpl-2.1.html", "February 1999",
            lgpl21, ("lgpl-2.1",)),
        gnu("lgpl", "GNU LGPL (version not given)", "https://www.gnu.org/licenses/lgpl-3.0.html", "v2.1/v3", lgpl3,
            ("lgpl", "lgpl-3.0", "lgpl-2.1")),
    ]


def _data_rules() -> list[LicenseRule]:
    cc = [creative_commons(f"cc-{elements}-{version}") for elements in CC_ELEMENTS for version in CC_VERSIONS]
    odc_by = replace(ATTRIBUTION, clause="ODC-By 1.0 §4 (attribution notice for any use of the database)")
    odbl = ("ODbL 1.0 §4.3 (a Produced Work carries a notice naming the Database; share-alike reaches Derivative "
            "Databases, not Produced Works)")
    return cc + [
        LicenseRule("odc-by", "ODC Attribution License", "https://opendatacommons.org/licenses/by/1-0/",
                    "attribution", odc_by, odc_by, text_version="1.0"),
        LicenseRule("odbl", "ODC Open Database License", "https://opendatacommons.org/licenses/odbl/",
                    "attribution", replace(ATTRIBUTION, clause=odbl), replace(ATTRIBUTION, clause=odbl),
                    data=Terms(clause=odbl, reason="ODbL: a model is a 'Produced Work': it names the database "
                               "(attribution)."), text_version="1.0"),
        _cdla_sharing(),
    ]


def _rules() -> dict[str, LicenseRule]:
    unknown = [LicenseRule("unknown", "unknown licence", "", "unknown", _UNKNOWN, _UNKNOWN),
               LicenseRule("other", "other licence (no name given)", "", "unknown", _UNKNOWN, _UNKNOWN)]
    rules = _permissive_rules() + _model_rules() + _rail_rules() + _gnu_rules() + _data_rules() + unknown
    return {rule.license_id: rule for rule in rules}


LICENSE_RULES: dict[str, LicenseRule] = _rules()

_ALIASES = {
    "apache 2.0": "apache-2.0", "apache2": "apache-2.0", "apache-2": "apache-2.0", "llama-2": "llama2",
    "llama-3": "llama3", "llama-3.1": "llama3.1", "llama-3.2": "llama3.2", "llama-3.3": "llama3.3",
    "llama-4": "llama4", "qwen-license": "qwen", "mistral-research": "mrl", "mrl-0.1": "mrl",
    "deepseek-license": "deepseek", "public-domain": "cc0-1.0", "falcon-llm": "falcon-llm-license",
    "nvidia-open-model": "nvidia-open-model-license", "grok-2-community": "grok2-community",
}
# Several licences on one card ("license: [cc-by-4.0, mit]") are each judged: they are kept as one id joined by this.
LICENSE_SEPARATOR = " AND "
_SPLIT = re.compile(r"\s+and\s+", re.IGNORECASE)


def normalize_license(license_id: str | Sequence[str] | None, license_name: str | Sequence[str] | None = None
                      ) -> str | None:
    """The rules-table id of a card's `license` (and `license_name` for `other`), lower-cased and de-aliased.

    `license: other` with `license_name: qwen` gives `"qwen"`; an empty value gives `None` (missing). A list
    (`DatasetCardData` allows one) gives every licence joined by `" AND "`, each of which `check_license` judges.
    """
    values = [license_id] if license_id is None or isinstance(license_id, str) else list(license_id)
    names = [license_name] if license_name is None or isinstance(license_name, str) else list(license_name)
    found: list[str] = []
    for value in values:
        for part in _SPLIT.split(str(value or "").strip()):
            part = part.strip().lower()
            if part == "other" and any(names):
                found += [str(name).strip().lower() for name in names if name]
            elif part:
                found.append(_ALIASES.get(part, part))
    found = list(dict.fromkeys(_ALIASES.get(part, part) for part in found))
    return LICENSE_SEPARATOR.join(found) if found else None


def split_licenses(license_id: str | None) -> list[str | None]:
    """The licences of a normalized id: `"cc-by-4.0 AND mit"` gives both; `None` stays `[None]` (missing)."""
    return license_id.split(LICENSE_SEPARATOR) if license_id else [license_id]
