"""`risk_record.json` travels with the student: written by `hf-distill benchmark --trust` beside
`distillation_provenance.json`, and pushed with the card that carries the "Risks and measurements" section."""

from __future__ import annotations

import json
from pathlib import Path

from hf_distill.provenance import PROVENANCE_FILE
from huggingface_hub import ModelCard, snapshot_download

from hf_distill.benchmark import BenchmarkReport, benchmark
from hf_distill.benchmark.trust import TrustConfig
from hf_distill.cli import main
from hf_distill.hub import push_student
from tests import tiny
from tests.test_push import folder, student_folder  # noqa: F401  (fixtures: a saved student folder)


def test_risk_record_is_pushed_beside_the_provenance(hub_server, folder, tokenizer, model_factory):  # noqa: F811
    report = benchmark(str(folder), model_factory("llama", hidden=48, seed=2), tiny.prompt_completion_dataset(2),
                       tokenizer=tokenizer, teacher_tokenizer=tokenizer, max_new_tokens=2, batch_sizes=(1,),
                       num_latency_runs=1, num_warmup_runs=0, task_metrics=("exact_match",),
                       trust=TrustConfig(serving_cost=True, price_per_hour=1.5, max_new_tokens=2))
    result = push_student(folder, "tester/trusted", token=hub_server.token, report=report,
                          teacher_license="apache-2.0", dataset_licenses="cc0-1.0")
    assert {"risk_record.json", PROVENANCE_FILE} <= set(result.files)
    local = Path(snapshot_download("tester/trusted"))
    record = json.loads((local / "risk_record.json").read_text())
    assert record["license_verdict"] == result.verdict.status
    serving = record["measurements"]["models"]["student"]["serving"]
    assert serving["cost_per_million_tokens"] == report.trust.models["student"].serving.cost_per_million_tokens
    assert "## Risks and measurements" in ModelCard.load(local / "README.md").text


def test_cli_benchmark_trust_writes_the_risk_record(folder, tmp_path, capsys):  # noqa: F811
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in tiny.prompt_completion_dataset(2)))
    argv = ["benchmark", "--student", str(folder), "--dataset_name", str(data), "--dataset_test_split", "train",
            "--max_new_tokens", "2", "--batch_sizes", "1", "--num_latency_runs", "1",
            "--output_dir", str(tmp_path / "bench")]
    assert main(argv) == 0 and not (folder / "risk_record.json").exists()  # off by default
    assert main([*argv, "--trust", "--trust_price_per_hour", "2", "--trust_extraction_rows", "2"]) == 0
    report = BenchmarkReport.from_json(tmp_path / "bench" / "report.json")
    student = report.trust.models["student"]
    assert student.safety is not None and student.robustness is not None and student.output_scan is not None
    assert student.extraction.num_rows == 2 and student.serving.price_per_hour == 2.0
    record = json.loads((folder / "risk_record.json").read_text())
    assert record["provenance_file"] == PROVENANCE_FILE and record["measurements"] == report.to_dict()["trust"]
