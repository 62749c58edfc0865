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
    ("unruled-licence", dict(teacher_license="falcon-llm-license", dataset_licenses=[]), "warn", "unknown"),
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


def test_llama31_teacher_gives_built_with_llama_and_name_prefix_warning():
    verdict = check_license(teacher_license="llama3.1", dataset_licenses=[], student_name="me/tiny-student")
    assert verdict.duties.attribution_lines == ["Built with Llama"]
    assert verdict.duties.name_prefix == "Llama"
    assert "llama3.1" in verdict.duties.license_copies
    assert any("Llama 3.1 is licensed under the Llama 3.1 Community License" in n for n in verdict.duties.notice_lines)
    name_reasons = [r for r in verdict.reasons if r.source == "student"]
    assert len(name_reasons) == 1 and name_reasons[0].severity == "warn"
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
     ("other", None, "other"), ("", None, None), (None, None, None), ("other", "Tongyi-Qianwen", "qwen")],
)
def test_normalize_license(value, name, expected):
    assert normalize_license(value, name) == expected
