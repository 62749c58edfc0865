"""Licence rules: one table of cases run through `check_license`, plus the table's own invariants."""

import pytest

from hf_distill.publish.licenses import (
    HUB_LICENSE_IDS,
    LICENSE_RULES,
    NON_COMMERCIAL_LICENSES,
    check_license,
    normalize_license,
)

# The ids the issue names, each needing a rule.
REQUIRED_IDS = (
    "apache-2.0 mit bsd-3-clause cc0-1.0 llama2 llama3 llama3.1 llama3.2 llama3.3 llama4 gemma qwen qwen-research mrl "
    "deepseek openrail openrail++ bigscience-openrail-m creativeml-openrail-m cc-by-4.0 cc-by-sa-4.0 cc-by-nc-4.0 "
    "cc-by-nc-sa-4.0 cc-by-nd-4.0 odc-by other unknown"
).split()

# (case id, check_license kwargs, status, student licence)
CASES = [
    ("apache-outputs", dict(teacher_license="apache-2.0", dataset_licenses=[]), "ok", "apache-2.0"),
    ("apache-weights", dict(teacher_license="apache-2.0", dataset_licenses=[], weight_derived=True), "ok",
     "apache-2.0"),
    ("mit-cc0", dict(teacher_license="mit", dataset_licenses={"d": "cc0-1.0"}), "ok", "mit"),
    ("bsd-odc-by", dict(teacher_license="bsd-3-clause", dataset_licenses={"d": "odc-by"}), "ok", "bsd-3-clause"),
    ("llama3.1-outputs", dict(teacher_license="llama3.1", dataset_licenses=[]), "warn", "llama3.1"),
    ("llama3.1-good-name", dict(teacher_license="llama3.1", dataset_licenses=[], weight_derived=True,
                                student_name="me/Llama-3.1-tiny"), "ok", "llama3.1"),
    ("llama3.1-weights-apache", dict(teacher_license="llama3.1", dataset_licenses=[], weight_derived=True,
                                     student_license="apache-2.0"), "conflict", "apache-2.0"),
    ("llama3.1-outputs-apache", dict(teacher_license="llama3.1", dataset_licenses=[], student_license="apache-2.0"),
     "warn", "apache-2.0"),
    ("llama3.2", dict(teacher_license="llama3.2", dataset_licenses=[]), "warn", "llama3.2"),
    ("llama3.3", dict(teacher_license="llama3.3", dataset_licenses=[]), "warn", "llama3.3"),
    ("llama4", dict(teacher_license="llama4", dataset_licenses=[]), "warn", "llama4"),
    ("llama3-outputs-non-llama", dict(teacher_license="llama3", dataset_licenses=[]), "conflict", "llama3"),
    ("llama3-outputs-llama-base", dict(teacher_license="llama3", dataset_licenses=[], base_license="llama3"),
     "ok", "llama3"),
    ("llama2-outputs-non-llama", dict(teacher_license="llama2", dataset_licenses=[]), "conflict", "llama2"),
    ("gemma", dict(teacher_license="gemma", dataset_licenses=[]), "ok", "gemma"),
    ("gemma-permissive", dict(teacher_license="gemma", dataset_licenses=[], student_license="mit"), "conflict", "mit"),
    ("gemma-and-llama-base", dict(teacher_license="gemma", dataset_licenses=[], base_license="llama3.1"),
     "conflict", "gemma"),
    ("qwen-outputs", dict(teacher_license="qwen", dataset_licenses=[]), "ok", "apache-2.0"),
    ("qwen-weights", dict(teacher_license="qwen", dataset_licenses=[], weight_derived=True), "ok", "qwen"),
    ("qwen-research", dict(teacher_license="qwen-research", dataset_licenses=[]), "ok", "qwen-research"),
    ("qwen-research-apache", dict(teacher_license="qwen-research", dataset_licenses=[], student_license="apache-2.0"),
     "conflict", "apache-2.0"),
    ("mrl", dict(teacher_license="mrl", dataset_licenses=[]), "ok", "mrl"),
    ("mrl-apache", dict(teacher_license="mrl", dataset_licenses=[], student_license="apache-2.0"), "conflict",
     "apache-2.0"),
    ("deepseek", dict(teacher_license="deepseek", dataset_licenses=[]), "ok", "deepseek"),
    ("openrail-same-family", dict(teacher_license="openrail", dataset_licenses=[],
                                  student_license="bigscience-openrail-m"), "ok", "bigscience-openrail-m"),
    ("openrail++", dict(teacher_license="openrail++", dataset_licenses=[]), "ok", "openrail++"),
    ("creativeml-apache", dict(teacher_license="creativeml-openrail-m", dataset_licenses=[],
                               student_license="apache-2.0"), "conflict", "apache-2.0"),
    ("cc-by-data", dict(teacher_license="apache-2.0", dataset_licenses={"d": "cc-by-4.0"}), "ok", "apache-2.0"),
    ("cc-by-sa-data", dict(teacher_license="apache-2.0", dataset_licenses={"d": "cc-by-sa-4.0"}), "warn",
     "cc-by-sa-4.0"),
    ("cc-by-nc-data", dict(teacher_license="apache-2.0", dataset_licenses={"d": "cc-by-nc-4.0"}), "ok",
     "cc-by-nc-4.0"),
    ("cc-by-nc-data-apache", dict(teacher_license="apache-2.0", dataset_licenses={"d": "cc-by-nc-4.0"},
                                  student_license="apache-2.0"), "conflict", "apache-2.0"),
    ("cc-by-nc-sa-data", dict(teacher_license="mit", dataset_licenses=["cc-by-nc-sa-4.0"]), "ok", "cc-by-nc-sa-4.0"),
    ("cc-by-nd-data", dict(teacher_license="apache-2.0", dataset_licenses=["cc-by-nd-4.0"]), "conflict",
     "apache-2.0"),
    ("unknown-teacher", dict(teacher_license=None, dataset_licenses=["mit"]), "warn", "unknown"),
    ("other-without-name", dict(teacher_license="other", dataset_licenses=[]), "warn", "unknown"),
    ("unruled-licence", dict(teacher_license="some-custom-licence", dataset_licenses=[]), "warn", "unknown"),
    ("missing-dataset-licence", dict(teacher_license="apache-2.0", dataset_licenses={"d": None}), "warn",
     "apache-2.0"),
    ("unknown-base", dict(teacher_license="apache-2.0", dataset_licenses=[], base_license="unknown"), "warn",
     "apache-2.0"),
    ("closed-api", dict(teacher_license="openai-terms", dataset_licenses=[]), "conflict", "apache-2.0"),
]


@pytest.mark.parametrize("kwargs,status,student", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_license_cases(kwargs, status, student):
    verdict = check_license(**kwargs)
    assert (verdict.status, verdict.student_license) == (status, student), verdict.reasons
    # Every finding is explained, and anything not ok says why in the reasons.
    assert all(reason.text for reason in verdict.reasons)
    if status != "ok":
        assert any(reason.severity == status for reason in verdict.reasons)


def test_issue_licence_ids_all_have_rules():
    assert len(LICENSE_RULES) >= 20
    missing = [lid for lid in REQUIRED_IDS if lid not in LICENSE_RULES]
    assert not missing
    for rule in LICENSE_RULES.values():
        for role in ("weights", "outputs", "data"):
            assert rule.terms(role).reason, (rule.license_id, role)
        if rule.family != "unknown":
            assert rule.url.startswith("https://"), rule.license_id
        if rule.student_license is not None:  # a default student licence must be publishable
            assert rule.student_license in LICENSE_RULES or rule.student_license in HUB_LICENSE_IDS


def test_unknown_or_missing_is_never_ok():
    for teacher in (None, "", "unknown", "other", "some-custom-licence"):
        assert check_license(teacher_license=teacher, dataset_licenses=[]).status == "warn"
    assert check_license(teacher_license="mit", dataset_licenses=[None]).status == "warn"


def test_llama31_teacher_gives_built_with_llama_and_a_name_prefix_conflict():
    verdict = check_license(teacher_license="llama3.1", dataset_licenses=[], student_name="me/tiny-student")
    assert verdict.duties.attribution_lines == ["Built with Llama"]
    assert verdict.duties.name_prefix == "Llama"
    assert "llama3.1" in verdict.duties.license_copies
    assert any("Llama 3.1 is licensed under the Llama 3.1 Community License" in n for n in verdict.duties.notice_lines)
    name_reasons = [r for r in verdict.reasons if r.source == "student"]
    # Llama 3.1 §1.b.i: "include 'Llama' at the beginning of any such AI model name" is mandatory: it blocks.
    assert len(name_reasons) == 1 and name_reasons[0].severity == "conflict" and verdict.status == "conflict"
    assert "must start with 'Llama'" in name_reasons[0].text and "tiny-student" in name_reasons[0].text
    named = check_license(teacher_license="llama3.1", dataset_licenses=[], student_name="me/llama-3.1-tiny")
    assert not [r for r in named.reasons if r.source == "student"]


def test_llama3_prefix_is_llama_3():
    verdict = check_license(teacher_license="llama3", dataset_licenses=[], base_license="llama3",
                            student_name="me/Llama3-tiny")
    assert verdict.duties.name_prefix == "Llama 3" and verdict.status == "ok"
    assert verdict.duties.attribution_lines == ["Built with Meta Llama 3"]


def test_non_commercial_data_makes_student_non_commercial():
    verdict = check_license(teacher_license="apache-2.0", dataset_licenses={"org/nc": "cc-by-nc-4.0"})
    assert verdict.duties.non_commercial
    assert verdict.student_license in NON_COMMERCIAL_LICENSES
    conflict = check_license(teacher_license="apache-2.0", dataset_licenses={"org/nc": "cc-by-nc-4.0"},
                             student_license="mit")
    assert conflict.status == "conflict"
    assert any("allows commercial use" in p for p in conflict.problems())


def test_gemma_with_permissive_student_is_a_conflict_naming_the_fix():
    verdict = check_license(teacher_license="gemma", dataset_licenses=[], student_license="apache-2.0")
    assert verdict.status == "conflict"
    assert any("Gemma Terms of Use" in p and "gemma" in p for p in verdict.problems())
    assert any("Gemma is provided under" in n for n in verdict.duties.notice_lines)


def test_license_metadata_for_other_licences():
    qwen = check_license(teacher_license="qwen", dataset_licenses=[], weight_derived=True)
    assert qwen.license_metadata == {"license": "other", "license_name": "qwen", "license_link": "LICENSE"}
    assert qwen.needs_license_file
    assert qwen.duties.attribution_lines == ["Built with Qwen"]
    outputs_only = check_license(teacher_license="qwen", dataset_licenses=[])
    assert outputs_only.duties.attribution_lines == ["Improved using Qwen"]
    assert check_license(teacher_license="mit", dataset_licenses=[]).license_metadata == {"license": "mit"}


def test_overridden_marks_only_conflicts():
    conflict = check_license(teacher_license="gemma", dataset_licenses=[], student_license="mit")
    assert conflict.overridden().conflict_overridden
    assert not check_license(teacher_license="mit", dataset_licenses=[]).overridden().conflict_overridden


def test_requested_unknown_student_licence_warns():
    verdict = check_license(teacher_license="mit", dataset_licenses=[], student_license="my-own-licence")
    assert verdict.status == "warn"
    assert verdict.license_metadata["license"] == "other"
    assert any("not a licence this library knows" in r.text for r in verdict.reasons)


@pytest.mark.parametrize(
    "value,name,expected",
    [("Apache-2.0", None, "apache-2.0"), ("llama-3.1", None, "llama3.1"), ("other", "qwen", "qwen"),
     ("other", None, "other"), ("", None, None), (None, None, None),
     ("other", "Tongyi-Qianwen", "tongyi-qianwen"), (["CC-BY-4.0", "mit", "cc-by-4.0"], None, "cc-by-4.0 AND mit"),
     (["other", "apache-2.0"], "qwen", "qwen AND apache-2.0"), ([], None, None)],
)
def test_normalize_license(value, name, expected):
    assert normalize_license(value, name) == expected


# -- issue 21: rules that match the licence texts ------------------------------------------------------------------

COMMERCIAL_STUDENTS = ("apache-2.0", "mit")


def _carries_non_commercial(verdict):
    """The non-commercial duty reached the student: flagged, and either the licence itself is non-commercial, or the
    limit is added to terms that accept it, or the verdict blocks the push."""
    if not verdict.duties.non_commercial:
        return False
    added = any(r.startswith("Non-commercial use only") for r in verdict.duties.use_restrictions)
    return verdict.student_license in NON_COMMERCIAL_LICENSES or added or verdict.status == "conflict"


@pytest.mark.parametrize("license_id", NON_COMMERCIAL_LICENSES)
def test_every_non_commercial_licence_carries_the_duty(license_id):
    """CC BY-NC 2.0-4.0 §2(a)/§4, Qwen Research §2, Tongyi Qianwen Research §2, MRL-0.1 §3.2, FAIR NC v1 §1.a,
    Apple AMLR: non-commercial (research) use only, whichever way the student relates to the source."""
    assert license_id in LICENSE_RULES, f"{license_id} is listed as non-commercial but has no rule"
    base = {"base_license": license_id} if license_id.startswith("tongyi") else {}
    situations = [
        dict(teacher_license="mit", dataset_licenses={"d": license_id}),
        dict(teacher_license=license_id, dataset_licenses=[], **base),
        dict(teacher_license=license_id, dataset_licenses=[], weight_derived=True),
        dict(teacher_license="apache-2.0", dataset_licenses=[], base_license=license_id),
    ]
    for kwargs in situations:
        verdict = check_license(**kwargs)
        assert _carries_non_commercial(verdict), (kwargs, verdict.student_license, verdict.reasons)
        for student in COMMERCIAL_STUDENTS:
            assert check_license(**kwargs, student_license=student).status == "conflict", (kwargs, student)


def test_no_rule_gives_ok_to_a_commercial_student_of_a_non_commercial_source():
    for license_id, rule in LICENSE_RULES.items():
        for role in ("weights", "outputs", "data"):
            if not rule.terms(role).non_commercial:
                continue
            kwargs = {"teacher_license": "mit", "dataset_licenses": {"d": license_id}} if role == "data" else {
                "teacher_license": license_id, "dataset_licenses": [], "weight_derived": role == "weights"}
            for student in COMMERCIAL_STUDENTS:
                assert check_license(**kwargs, student_license=student).status == "conflict", (license_id, role)


@pytest.mark.parametrize("license_id", ["cc-by-nc-2.0", "cc-by-nc-3.0", "cc-by-nc-sa-3.0", "cc-by-nc-nd-3.0",
                                        "cc-by-nc-2.5", "fair-noncommercial-research-license"])
def test_old_creative_commons_and_fair_data_keep_the_non_commercial_duty(license_id):
    """Issue 21 item 3: an MIT teacher with cc-by-nc-3.0 data used to give `warn` and an apache-2.0 student."""
    verdict = check_license(teacher_license="mit", dataset_licenses={"d": license_id})
    assert verdict.duties.non_commercial and verdict.student_license in NON_COMMERCIAL_LICENSES
    assert verdict.student_license not in COMMERCIAL_STUDENTS


def test_old_creative_commons_share_alike_and_no_derivatives():
    """CC BY-SA 3.0 §4(b): adaptations under this licence or a later one with the same elements; ND: none shared."""
    sa = check_license(teacher_license="mit", dataset_licenses=["cc-by-sa-3.0"])
    assert sa.status == "warn" and sa.student_license == "cc-by-sa-3.0" and sa.duties.share_alike
    assert check_license(teacher_license="mit", dataset_licenses=["cc-by-sa-3.0"],
                         student_license="cc-by-sa-4.0").status == "warn"  # a later version is allowed
    assert check_license(teacher_license="mit", dataset_licenses=["cc-by-nd-2.0"]).status == "conflict"
    assert check_license(teacher_license="mit", dataset_licenses=["cc-by-2.5"]).status == "ok"


@pytest.mark.parametrize("license_id", ["tongyi-qianwen", "tongyi-qianwen-research"])
def test_tongyi_qianwen_outputs_improve_only_tongyi_qianwen_derivatives(license_id):
    """Tongyi Qianwen LICENSE AGREEMENT (2023-08-03) §5(b), RESEARCH (2023-11-30) §4(b): "You can not use the
    Materials or any output therefrom to improve any other large language model (excluding Tongyi Qianwen or
    derivative works thereof)"."""
    assert normalize_license("other", license_id) == license_id  # no longer aliased to the Qwen 2.5 licences
    for base in (None, "apache-2.0", "qwen", "llama3.1"):
        for student in (None, "apache-2.0", license_id):
            verdict = check_license(teacher_license=license_id, dataset_licenses=[], base_license=base,
                                    student_license=student)
            assert verdict.status == "conflict", (base, student)
            assert any("Tongyi Qianwen" in p and "improve" in p for p in verdict.problems())
    derivative = check_license(teacher_license=license_id, dataset_licenses=[], base_license=license_id)
    assert derivative.status == "ok" and derivative.student_license == license_id
    notice = "Tongyi Qianwen is licensed under the Tongyi Qianwen"
    assert any(n.startswith(notice) for n in derivative.duties.notice_lines)
    assert derivative.duties.non_commercial == license_id.endswith("research")


def test_llama_name_prefix_is_mandatory_and_named():
    """Llama 3.1/3.2/3.3/4 §1.b.i and Llama 3 §1.b.i: the name must begin with "Llama" / "Llama 3"."""
    for license_id, prefix in (("llama3.1", "Llama"), ("llama3.2", "Llama"), ("llama3.3", "Llama"),
                               ("llama4", "Llama"), ("llama3", "Llama 3")):
        base = {"base_license": "llama3"} if license_id == "llama3" else {}
        wrong = check_license(teacher_license=license_id, dataset_licenses=[], student_name="me/tiny", **base)
        assert wrong.status == "conflict"
        assert any(f"must start with {prefix!r}" in p for p in wrong.problems()), wrong.problems()
        right = check_license(teacher_license=license_id, dataset_licenses=[], student_name=f"me/{prefix}-tiny",
                              **base)
        assert right.status != "conflict", right.problems()


def test_grok2_outputs_may_not_train_another_model():
    """Grok 2 Community License (August 2025): no outputs "to train, create, or improve any foundational, large
    language, or general-purpose AI models, except for modifications or fine-tuning of Grok 2"."""
    for base in (None, "apache-2.0"):
        verdict = check_license(teacher_license="grok2-community", dataset_licenses=[], base_license=base)
        assert verdict.status == "conflict" and any("Grok 2" in p for p in verdict.problems())
    fine_tune = check_license(teacher_license="grok2-community", dataset_licenses=[], base_license="grok2-community")
    assert fine_tune.status == "ok" and fine_tune.student_license == "grok2-community"


def test_multimodal_llama_eu_restriction_is_carried():
    """Llama 3.2 and Llama 4 Acceptable Use Policies: no §1(a) rights on multimodal models for EU residents."""
    for license_id in ("llama3.2", "llama4"):
        restrictions = check_license(teacher_license=license_id, dataset_licenses=[]).duties.use_restrictions
        assert any("European Union" in r and "multimodal" in r for r in restrictions), license_id
    assert not any("European Union" in r for r in
                   check_license(teacher_license="llama3.1", dataset_licenses=[]).duties.use_restrictions)


def test_mrl_carries_the_commercial_entity_limit_and_modification_notice():
    """MRL-0.1 §1 (Research Purposes exclude distribution by a commercial entity), §2.3(b) (prominent notices stating
    that You modified the model), §3.2; the MRL does not name distillation."""
    verdict = check_license(teacher_license="mrl", dataset_licenses=[], weight_derived=True)
    assert any("commercial entity" in r for r in verdict.duties.use_restrictions)
    assert verdict.duties.modification_notices == ["teacher (mrl)"]
    assert "distill" not in LICENSE_RULES["mrl"].weights.reason.lower()


def test_required_notice_lines_and_modification_notices():
    """Qwen §3(c) and Qwen Research §3(c) NOTICE lines; modified-files notices: Gemma §3.1, MRL §2.3(b), RAIL and
    DeepSeek §4(c); Apache-2.0 §4(b); NVIDIA Open Model License notice line."""
    notices = {
        "qwen": "Qwen is licensed under the Qwen LICENSE AGREEMENT, Copyright (c) Alibaba Cloud.",
        "qwen-research": "Qwen is licensed under the Qwen RESEARCH LICENSE AGREEMENT, Copyright (c) Alibaba Cloud.",
        "nvidia-open-model-license": "Licensed by NVIDIA Corporation under the NVIDIA Open Model License",
        "apple-amlr": "Apple Machine Learning Research Model is licensed under",
    }
    for license_id, line in notices.items():
        verdict = check_license(teacher_license=license_id, dataset_licenses=[], weight_derived=True)
        assert any(n.startswith(line) for n in verdict.duties.notice_lines), (license_id, verdict.duties.notice_lines)
    for license_id in ("gemma", "mrl", "openrail", "deepseek", "apache-2.0", "qwen", "falcon-llm-license"):
        verdict = check_license(teacher_license=license_id, dataset_licenses=[], weight_derived=True)
        assert verdict.duties.modification_notices == [f"teacher ({license_id})"], license_id
    assert check_license(teacher_license="mit", dataset_licenses=[], weight_derived=True).duties.modification_notices \
        == []


def test_a_list_of_licences_is_each_judged():
    """DatasetCardData allows `license: [..]`: it used to crash with AttributeError; now every licence counts."""
    joined = normalize_license(["cc-by-4.0", "cc-by-nc-4.0"])
    verdict = check_license(teacher_license="mit", dataset_licenses={"d": joined})
    assert [r.license for r in verdict.reasons if r.source == "dataset d"] == ["cc-by-4.0", "cc-by-nc-4.0"]
    assert verdict.duties.non_commercial and verdict.student_license == "cc-by-nc-4.0"
    assert check_license(teacher_license="mit", dataset_licenses={"d": joined}, student_license="mit").status \
        == "conflict"


def test_a_list_licence_on_a_card_is_read_by_provenance(tmp_path):
    from hf_distill.publish.provenance import model_record

    (tmp_path / "README.md").write_text("---\nlicense:\n- mit\n- cc-by-nc-4.0\n---\n# data\n")
    record = model_record("teacher", tmp_path)
    assert record.license == "mit AND cc-by-nc-4.0" and record.license_source == "card"


def test_llama2_teacher_with_another_llama_base_keeps_its_reason():
    """Llama 2 §1.b.v excludes only "Llama 2 or derivative works thereof": a Llama 3.1 base does not qualify."""
    verdict = check_license(teacher_license="llama2", dataset_licenses=[], base_license="llama3.1")
    teacher = next(r for r in verdict.reasons if r.source == "teacher")
    assert teacher.severity == "conflict" and "Llama 2 and its derivatives" in teacher.text
    assert check_license(teacher_license="llama2", dataset_licenses=[], base_license="llama2").status == "ok"
    assert check_license(teacher_license="llama3", dataset_licenses=[], base_license="llama2").status == "conflict"


@pytest.mark.parametrize("teacher", ["gemma", "deepseek", "openrail"])
def test_licences_that_allow_additional_terms_take_a_non_commercial_limit(teacher):
    """Gemma §3.1 (last paragraph), Qwen §3(d), DeepSeek/OpenRAIL §4: additional terms are allowed, so NC data gives
    a non-commercial student under the teacher's terms, not a conflict."""
    verdict = check_license(teacher_license=teacher, dataset_licenses={"d": "cc-by-nc-4.0"})
    assert verdict.status != "conflict" and verdict.student_license == teacher, verdict.reasons
    assert verdict.duties.non_commercial
    assert any(r.startswith("Non-commercial use only") for r in verdict.duties.use_restrictions)
    # ShareAlike data does not allow the teacher's extra restrictions: still a conflict.
    assert check_license(teacher_license=teacher, dataset_licenses={"d": "cc-by-nc-sa-4.0"}).status == "conflict"
    qwen = check_license(teacher_license="qwen", dataset_licenses={"d": "cc-by-nc-4.0"}, weight_derived=True)
    assert (qwen.status, qwen.student_license) == ("ok", "qwen")
    # Llama's licence gives no such clause: the data's non-commercial licence wins, with a warning about Llama.
    llama = check_license(teacher_license="llama3.1", dataset_licenses={"d": "cc-by-nc-4.0"})
    assert llama.student_license == "cc-by-nc-4.0" and llama.status == "warn"


def test_newly_covered_licences():
    """Apple AMLR (research only), TII Falcon License (AUP binds derivatives), NVIDIA Open Model License (notice),
    GNU GPL family (copyleft on weights; GPL-3.0 §2: outputs are not covered), CDLA-Sharing-1.0 (Results are free),
    OpenMDW (permissive)."""
    amlr = check_license(teacher_license="apple-amlr", dataset_licenses=[], weight_derived=True)
    assert amlr.student_license == "apple-amlr" and amlr.duties.non_commercial
    falcon = check_license(teacher_license="falcon-llm-license", dataset_licenses=[])
    assert falcon.student_license == "falcon-llm-license"
    assert any("Acceptable Use Policy" in r for r in falcon.duties.use_restrictions)
    gpl = check_license(teacher_license="gpl-3.0", dataset_licenses=[], weight_derived=True)
    assert (gpl.status, gpl.student_license) == ("ok", "gpl-3.0") and gpl.duties.share_alike
    assert check_license(teacher_license="gpl-3.0", dataset_licenses=[], weight_derived=True,
                         student_license="mit").status == "conflict"
    assert check_license(teacher_license="gpl-3.0", dataset_licenses=[]).status == "ok"
    gpl_data = check_license(teacher_license="mit", dataset_licenses=["agpl-3.0"])
    assert (gpl_data.status, gpl_data.student_license) == ("warn", "agpl-3.0")
    assert check_license(teacher_license="mit", dataset_licenses=["cdla-sharing-1.0"]).status == "ok"
    assert "openmdw-1.1" in HUB_LICENSE_IDS and "openmdw-1.1" in LICENSE_RULES
    assert check_license(teacher_license="openmdw-1.1", dataset_licenses=[]).status == "ok"


def test_every_rule_cites_its_clause_and_text_and_docs_list_them():
    from pathlib import Path

    docs = (Path(__file__).parents[1] / "docs" / "licenses.md").read_text(encoding="utf-8")
    for license_id, rule in LICENSE_RULES.items():
        if rule.family == "unknown":
            continue
        assert rule.text_version, license_id
        for role in ("weights", "outputs", "data"):
            assert rule.terms(role).clause, (license_id, role)
        row = f"\n| `{license_id}` |"
        assert row in docs, f"docs/licenses.md does not list {license_id}"
        assert rule.text_version in docs.split(row, 1)[1].split("\n", 1)[0], license_id


def test_notice_carries_upstream_apache_notice_required_lines_and_modification(tmp_path):
    """Apache-2.0 §4(d): a derivative work carries the attribution notices of the Work's NOTICE file; §4(b): modified
    files say so. The student folder's own NOTICE comes first, unchanged."""
    from hf_distill.publish.provenance import Provenance, SourceRecord
    from hf_distill.publish.student import _notice_text

    upstream, student = tmp_path / "base", tmp_path / "student"
    upstream.mkdir(), student.mkdir()
    (upstream / "NOTICE").write_text("Base Model\nCopyright 2024 The Base Authors\n")
    (student / "NOTICE").write_text("My own notice\n")
    provenance = Provenance(
        teacher=SourceRecord(role="teacher", license="qwen"),
        base_model=SourceRecord(role="base_model", license="apache-2.0", local_folder=str(upstream)),
    )
    verdict = provenance.check_license()
    lines = _notice_text(verdict, student, provenance).splitlines()
    assert lines[0] == "My own notice"
    assert "Copyright 2024 The Base Authors" in lines and "Base Model" in lines
    assert any("changed from those of starting checkpoint (apache-2.0)" in line for line in lines)
    # Outputs of an apache teacher are not the Work: its NOTICE does not travel.
    provenance.base_model = None
    provenance.teacher = SourceRecord(role="teacher", license="apache-2.0", local_folder=str(upstream))
    assert _notice_text(provenance.check_license(), tmp_path / "none", provenance) is None
