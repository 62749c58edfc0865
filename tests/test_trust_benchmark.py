"""`benchmark(..., trust=...)` end to end on tiny models: every part for student and teacher, the JSON round trip,
the card section parsing back, `risk_record.json`, and nothing run when trust is off."""

from __future__ import annotations

import json

import pytest
from hf_distill.card import build_model_card
from huggingface_hub import ModelCard

from hf_distill.benchmark import BenchmarkReport, benchmark
from hf_distill.benchmark.trust import TrustConfig, make_canaries
from hf_distill.benchmark.trust.card import RISK_RECORD_FILE, risk_record, risk_record_files, trust_card_section
from tests import tiny
from tests.test_card import _provenance

FAST = dict(max_new_tokens=4, batch_sizes=(1, 2), num_latency_runs=1, eval_batch_size=4)


@pytest.fixture(scope="module")
def trusted(model_factory, tokenizer):
    config = TrustConfig.everything(
        canaries=make_canaries((1, 10), num_digits=4, seed=0), num_candidates=64,
        extraction_texts=tiny.CORPUS[:4], extraction_prefix_tokens=4, extraction_num_tokens=4,
        perturbations=("typos", "case"), price_per_hour=2.0, training_seconds=60.0, max_new_tokens=4,
    )
    student, teacher = model_factory("llama", hidden=32, seed=0), model_factory("llama", hidden=64, seed=1)
    return benchmark(student, teacher, tiny.prompt_completion_dataset(4), tokenizer=tokenizer, trust=config, **FAST)


def test_every_part_is_measured_for_student_and_teacher(trusted):
    trust = trusted.trust
    assert set(trust.models) == {"student", "teacher"}
    for result in trust.models.values():
        assert [c.repetitions for c in result.canaries] == [1, 10]
        assert all(c.num_candidates == 64 and 1 <= c.rank <= 64 for c in result.canaries)
        assert result.extraction.num_tested == 4
        assert result.output_scan.num_texts == 4 + 4  # extraction continuations + held-out completions
        assert set(result.robustness.drop) == {"typos", "case"}
        assert 0 <= result.robustness.injection_success_rate <= 1
        assert len(result.safety.refusals) == 32
        assert result.serving.batch_size == 2 and result.serving.cost_per_million_tokens > 0
    student, teacher = trust.models["student"], trust.models["teacher"]
    assert trust.robustness_gap["student"]["case"] == pytest.approx(
        student.robustness.drop["case"] - teacher.robustness.drop["case"])
    same = sum(a == b for a, b in zip(student.safety.refusals, teacher.safety.refusals, strict=True))
    assert trust.safety_agreement["student"] == pytest.approx(same / 32)
    assert trust.safety_set_license == "CC0-1.0"
    assert set(trust.methods) == {"canaries", "extraction", "output_scan", "robustness", "safety", "serving"}


def test_trust_round_trips_through_the_report_json(trusted):
    again = BenchmarkReport.from_json(trusted.to_json())
    assert again.trust == trusted.trust


def test_card_section_parses_back(trusted, tmp_path):
    card = build_model_card(_provenance(), trusted, repo_id="me/tiny-student")
    card.save(tmp_path / "README.md")
    text = ModelCard.load(tmp_path / "README.md").text
    section = text[text.index("## Risks and measurements"):text.index("## Provenance")]
    assert "### Leakage" in section and "### Robustness" in section and "### Safety-set behaviour" in section
    assert "### Cost of serving" in section and "not a claim of compliance" in section
    exposure = trusted.trust.models["student"].canaries[1]
    assert f"| 10× | {exposure.exposure:.2f} ({exposure.rank}) |" in section
    for label in ("Provenance (teacher, data, tokenizer, weight hashes)", "Serving cost and training break-even"):
        assert f"| {label} | yes |" in section
    assert "| Privacy scan of the training data | no |" in section  # this provenance holds no scan


def test_risk_record_is_json_beside_the_provenance(trusted):
    files = risk_record_files(trusted, _provenance())
    record = json.loads(files[RISK_RECORD_FILE])
    assert record == json.loads(json.dumps(risk_record(trusted, _provenance())))
    assert record["provenance_file"] == "distillation_provenance.json"
    assert record["measurements"]["models"]["student"]["safety"]["refusals"] == \
        trusted.trust.models["student"].safety.refusals
    assert {r["key"] for r in record["governance"]["records"] if r["recorded"]} >= {"leakage", "cost", "safety"}


def test_trust_is_off_by_default_and_costs_nothing(model_factory, tokenizer, monkeypatch):
    import hf_distill.benchmark.run as run

    def refuse(*args, **kwargs):
        raise AssertionError("run_trust called with trust off")

    monkeypatch.setattr(run, "run_trust", refuse)
    student = model_factory("llama", hidden=32, seed=0)
    data = tiny.prompt_completion_dataset(2)
    for trust in (None, TrustConfig()):
        report = benchmark(student, dataset=data, tokenizer=tokenizer, trust=trust, **FAST)
        assert report.trust is None
    assert trust_card_section(report) == "" and risk_record_files(report) == {}
    assert "Risks and measurements" not in build_model_card(_provenance(), report, repo_id="me/s").text
