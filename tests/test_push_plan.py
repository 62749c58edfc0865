"""A push is a pure plan, then one commit: `plan_push` computes the licence verdict, the card and the files into a
frozen `PushPlan` without touching the caller's provenance, and `push_student` uploads exactly that plan."""

import dataclasses
import json

import pytest

from hf_distill.hub import PushPlan, plan_push, push_student
from hf_distill.publish import Provenance
from tests.test_card import _provenance


@pytest.fixture
def student_folder(tmp_path, model_factory, tokenizer):
    folder = tmp_path / "student"
    model_factory("llama", seed=1).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    _provenance(teacher_license=None).save(folder)
    return folder


def test_the_plan_leaves_the_callers_provenance_unchanged(student_folder, tmp_path):
    provenance = Provenance.load(student_folder)
    before = provenance.to_json()
    plan = plan_push(student_folder, "tester/planned", "full", provenance, None, tmp_path,
                     student_license=None, allow_license_conflict=False, co2_eq_emissions=None, extra_metadata=None,
                     license_overrides={"teacher_license": "mit"})
    assert provenance.to_json() == before  # overrides, push mode and weight hashes went to the plan's copy
    assert plan.provenance.teacher.license == "mit" and plan.provenance.student["push_mode"] == "full"
    assert set(plan.provenance.weight_files) == {"model.safetensors"}
    uploaded = {op.path_in_repo: op.path_or_fileobj for op in plan.operations}
    assert uploaded["distillation_provenance.json"] == plan.provenance.to_json().encode()
    assert uploaded["README.md"] == str(plan.card).encode() and _teacher_licence(plan.verdict) == "mit"
    assert "model.safetensors" in uploaded and isinstance(plan, PushPlan)
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.card = None


def test_push_student_uploads_the_plan_and_keeps_the_given_provenance(student_folder, hub_server):
    provenance = Provenance.load(student_folder)
    before = provenance.to_json()
    result = push_student(student_folder, "tester/planned", provenance=provenance, teacher_license="mit",
                          token=hub_server.token)
    assert provenance.to_json() == before
    stored = hub_server.files("tester/planned")["distillation_provenance.json"].content.decode()
    assert json.loads(stored)["teacher"]["license"] == "mit" and _teacher_licence(result.verdict) == "mit"
    assert len(hub_server.commits("tester/planned")) == 2  # the repo's first commit, then the one push


def _teacher_licence(verdict) -> str | None:
    return next((reason.license for reason in verdict.reasons if reason.source == "teacher"), None)
