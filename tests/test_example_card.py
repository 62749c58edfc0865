"""The example card in `model_cards/examples/` is the one `benchmarks/real_model.py` pushed for its best student:
rebuilt by the card builder from the provenance and benchmark report that run pushed beside it, it is the same text,
and it carries the run's measured numbers."""

import json
from pathlib import Path

from huggingface_hub import ModelCard

from hf_distill.benchmark import BenchmarkReport
from hf_distill.publish import Provenance, build_model_card
from hf_distill.publish.card import PLOT_PATH
from hf_distill.publish.student import _license_text

ROOT = Path(__file__).resolve().parents[1]
CARD = ROOT / "model_cards" / "examples" / "smollm2-135m-instruct-half-depth.md"
SOURCES = ROOT / "benchmarks" / "results" / "real_model_card"
RESULTS = ROOT / "benchmarks" / "results" / "real_model_cpu.json"


def _rebuilt_card() -> str:
    """What `push_student` uploads as README.md for that provenance and report (see `plan_push`)."""
    best = json.loads(RESULTS.read_text())["best"]
    repo_id = f"tester/smollm2-{best.replace('_', '-')}"
    provenance = Provenance.load(SOURCES)
    report = BenchmarkReport.from_json(SOURCES / "report.json")
    verdict = provenance.check_license(student_name=repo_id)
    _license_text(verdict, provenance, SOURCES)  # as the push does: no local licence text adds a warning
    return str(build_model_card(provenance, report, verdict, repo_id=repo_id, mode="full", plot_path=PLOT_PATH))


def test_the_example_card_is_what_the_card_builder_writes_from_the_pushed_records():
    assert CARD.read_text(encoding="utf-8") == _rebuilt_card()


def test_the_example_card_shows_the_best_students_measured_held_out_kl():
    results = json.loads(RESULTS.read_text())
    kl = results["students"][results["best"]]["student"]["fidelity"]["forward_kl"]
    card = ModelCard(CARD.read_text(encoding="utf-8"))
    assert card.data.license == "apache-2.0"  # SmolLM2's, passed to the push: the converted folder has no card
    assert f"{kl:.4g}" in card.text or f"{kl:.3f}" in card.text or f"{kl:.4f}" in card.text
