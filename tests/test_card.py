"""The distillation model card: Hub metadata keys, body sections, parse-back, local checks, trainer hook."""

import pytest
from huggingface_hub import EvalResult, ModelCard

from hf_distill import DistillationConfig, DistillationTrainer
from hf_distill.publish.card import CardError, build_model_card, check_card
from hf_distill.publish.provenance import DatasetRecord, Provenance, SourceRecord
from tests import tiny

TEACHER_SHA, BASE_SHA, DATA_SHA = "1" * 40, "2" * 40, "3" * 40


def _provenance(teacher_license="apache-2.0", base=True, base_kind="hub", data_license="cc-by-4.0"):
    return Provenance(
        student={"name": "student", "architecture": "Qwen2ForCausalLM", "num_parameters": 494_032_768,
                 "num_trainable_parameters": 494_032_768, "dtype": "bfloat16"},
        teacher=SourceRecord(role="teacher", kind="hub", repo_id="Qwen/Qwen2.5-7B-Instruct", revision=TEACHER_SHA,
                             name="Qwen2.5-7B-Instruct", license=teacher_license, license_source="card"),
        base_model=SourceRecord(role="base_model", kind=base_kind, repo_id="Qwen/Qwen2.5-0.5B"
                                if base_kind == "hub" else None, revision=BASE_SHA if base_kind == "hub" else None,
                                name="Qwen2.5-0.5B", license="apache-2.0", license_source="card",
                                content_sha256=None if base_kind == "hub" else "f" * 64) if base else None,
        datasets=[
            DatasetRecord(role="dataset", kind="hub", repo_id="org/chat-data", revision=DATA_SHA, name="chat-data",
                          license=data_license, license_source="card", split="train", num_rows=1000,
                          num_tokens=250_000, num_trained_tokens=120_000, fingerprint="abcd"),
            DatasetRecord(role="dataset", kind="in-memory", name="eval", split="eval", num_rows=50),
        ],
        tokenizer={"class": "Qwen2TokenizerFast", "vocab_size": 151665, "sha256": "ab" * 32,
                   "chat_template_sha256": "cd" * 32},
        config={"alpha": 0.8, "divergence": "jsd", "learning_rate": 2e-5}, seed=42,
        libraries={"python": "3.11", "torch": "2.13.0"}, hf_distill={"version": "0.1.0", "git_commit": "e" * 40},
        hardware={"platform": "Linux", "cpu": "EPYC", "num_cpus": 16, "accelerators": [{"name": "NVIDIA H100",
                  "memory_gb": 79.6}], "num_processes": 1},
        wall_clock_seconds=3600.0, accelerator_hours=1.0, weight_files={"model.safetensors": "9" * 64},
    )


class FakeReport:
    """Anything with `to_markdown()` and `to_eval_results()` is a report to the card."""

    def to_markdown(self):
        return "| metric | student | teacher |\n|---|---|---|\n| Perplexity ↓ | 9.1 | 7.2 |"

    def to_eval_results(self):
        return [EvalResult(task_type="text-generation", dataset_type="org/held-out", dataset_name="held-out",
                           metric_type="perplexity", metric_value=9.1, metric_name="Perplexity")]


def _body(card: ModelCard) -> str:
    return card.text


def test_metadata_follows_hub_rules_and_parses_back(tmp_path):
    card = build_model_card(_provenance(), FakeReport(), repo_id="me/qwen-0.5b-distilled", co2_eq_emissions=1234.5)
    data = card.data.to_dict()
    assert data["license"] == "apache-2.0" and "license_name" not in data
    assert data["base_model"] == "Qwen/Qwen2.5-0.5B" and data["base_model_relation"] == "finetune"
    assert data["teacher_model"] == {"id": "Qwen/Qwen2.5-7B-Instruct", "revision": TEACHER_SHA}
    assert data["datasets"] == ["org/chat-data"]  # training data only, Hub ids only
    assert (data["library_name"], data["pipeline_tag"]) == ("transformers", "text-generation")
    for tag in ("distillation", "knowledge-distillation", "hf-distill", "jsd", "teacher:Qwen/Qwen2.5-7B-Instruct"):
        assert tag in data["tags"]
    assert data["model-index"][0]["name"] == "qwen-0.5b-distilled"
    assert data["model-index"][0]["results"][0]["metrics"][0] == {"type": "perplexity", "value": 9.1,
                                                                  "name": "Perplexity"}
    assert data["co2_eq_emissions"] == {"emissions": 1234.5, "source": "user-provided",
                                        "training_type": "distillation", "hardware_used": "NVIDIA H100"}
    check_card(card)
    card.save(tmp_path / "README.md")
    assert ModelCard.load(tmp_path / "README.md").data.to_dict() == data


def test_body_has_every_section_and_the_disclaimer():
    text = _body(build_model_card(_provenance(), FakeReport(), repo_id="me/qwen-0.5b-distilled"))
    for heading in ("## How to use", "## Distillation recipe", "## Training data", "## Evaluation", "## Provenance",
                    "## Licence and obligations", "## Intended use and limitations", "## Compute and environment",
                    "## Citation"):
        assert heading in text, heading
    assert "not legal advice" in text
    assert "| Perplexity ↓ | 9.1 | 7.2 |" in text
    assert 'pipeline("text-generation", model="me/qwen-0.5b-distilled")' in text
    assert TEACHER_SHA in text and DATA_SHA in text and "9" * 64 in text  # pinned sources and weight hashes
    assert "inherits the biases" in text and "personal or copyrighted information" in text
    assert "@inproceedings{agarwal2024onpolicy" in text  # jsd cites GKD
    assert "NVIDIA H100" in text and "3,600.0 s" in text


def test_adapter_card_uses_peft():
    card = build_model_card(_provenance(), repo_id="me/qwen-lora", mode="adapter")
    assert card.data.library_name == "peft" and card.data.base_model_relation == "adapter"
    assert "AutoPeftModelForCausalLM.from_pretrained(\"me/qwen-lora\")" in card.text
    check_card(card)


def test_local_base_is_never_written_as_base_model():
    card = build_model_card(_provenance(base_kind="local"), repo_id="me/student")
    assert card.data.base_model is None and "base_model_relation" not in card.data.to_dict()
    assert "`Qwen2.5-0.5B` (local" in card.text
    scratch = build_model_card(_provenance(base=False), repo_id="me/student")
    assert "trained from scratch" in scratch.text


def test_llama_teacher_puts_built_with_llama_first_and_warns_on_the_name():
    card = build_model_card(_provenance(teacher_license="llama3.1", base=False), repo_id="me/tiny-student")
    summary = card.text.split("## How to use")[0]
    assert "**Built with Llama**" in summary
    assert "must start with 'Llama'" in card.text
    assert card.data.license == "llama3.1"
    assert "Llama 3.1 Acceptable Use Policy" in card.text


def test_non_commercial_data_licenses_the_student_non_commercial():
    card = build_model_card(_provenance(data_license="cc-by-nc-4.0"), repo_id="me/student")
    assert card.data.license == "cc-by-nc-4.0"
    assert "**Non-commercial use only.**" in card.text


def test_other_licence_gets_name_and_link():
    provenance = _provenance(teacher_license="qwen", base=True)
    provenance.weight_derived, provenance.base_model = True, provenance.teacher  # pruned from the teacher
    card = build_model_card(provenance, repo_id="me/qwen-pruned")
    data = card.data.to_dict()
    assert (data["license"], data["license_name"], data["license_link"]) == ("other", "qwen", "LICENSE")
    assert data["base_model"] == "Qwen/Qwen2.5-7B-Instruct"
    assert "**Built with Qwen**" in card.text
    check_card(card)


def test_overridden_conflict_is_stated():
    provenance = _provenance(teacher_license="gemma", base=False)
    verdict = provenance.check_license(student_license="apache-2.0").overridden()
    card = build_model_card(provenance, verdict=verdict, repo_id="me/gemma-student")
    assert "Licence conflict overridden" in card.text and "allow_license_conflict=True" in card.text
    assert "Gemma Terms of Use" in card.text


def test_real_benchmark_report(tmp_path):
    from hf_distill.benchmark import (
        BenchmarkReport,
        BenchmarkSettings,
        CostMetrics,
        DatasetInfo,
        FidelityMetrics,
        Hardware,
        ModelReport,
        QualityMetrics,
    )

    def model(role, ppl, fidelity=None):
        quality = QualityMetrics(cross_entropy=2.0, perplexity=ppl, token_accuracy=0.5, num_tokens=100,
                                 num_examples=10, task_metrics={"exact_match": 0.3})
        cost = CostMetrics(num_parameters=1000, disk_bytes=4000, disk_source="folder", memory_footprint_bytes=4000,
                           dtype="float32", device="cpu")
        return ModelReport(role=role, name=role, quality=quality, cost=cost, fidelity=fidelity)

    report = BenchmarkReport(
        student=model("student", 9.0, FidelityMetrics(top1_agreement=0.8, forward_kl=0.2, num_tokens=100)),
        teacher=model("teacher", 7.0),
        dataset=DatasetInfo(name="org/held-out", config=None, split="test", revision=None, format="prompt_completion",
                            num_examples=10),
        settings=BenchmarkSettings(max_new_tokens=8, batch_sizes=[1], num_latency_runs=1, num_warmup_runs=0,
                                   task_metrics=["exact_match"], eval_batch_size=4),
        hardware=Hardware(cpu="cpu", num_cpu_cores=2, num_threads=2, memory_bytes=None, accelerators=[],
                          platform="Linux"),
    )
    card = build_model_card(_provenance(), report, repo_id="me/student", plot_path="benchmark/plot.png")
    assert report.to_markdown().strip() in card.text and "![Student versus teacher](benchmark/plot.png)" in card.text
    metrics = {m["type"] for r in card.data.to_dict()["model-index"][0]["results"] for m in r["metrics"]}
    assert {"perplexity", "teacher_top1_agreement"} <= metrics
    check_card(card)
    card.save(tmp_path / "README.md")
    assert ModelCard.load(tmp_path / "README.md").data.to_dict() == card.data.to_dict()


def test_unknown_metadata_keys_are_rejected():
    with pytest.raises(CardError, match=r"Unknown or reserved card metadata keys: \['licence', 'teacher_model'\]"):
        build_model_card(_provenance(), extra_metadata={"licence": "mit", "teacher_model": "x", "language": "en"})
    card = build_model_card(_provenance(), extra_metadata={"language": ["en"], "tags": ["chat"]})
    assert card.data.language == ["en"] and "chat" in card.data.tags


def test_co2_needs_emissions():
    with pytest.raises(CardError, match="`co2_eq_emissions` needs an `emissions` value in grams"):
        build_model_card(_provenance(), co2_eq_emissions={"source": "codecarbon"})


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda d: setattr(d, "base_model", "./checkpoints/base"), "`base_model: ./checkpoints/base` is not a Hub id"),
        (lambda d: setattr(d, "base_model", "/home/me/base"), "is not a Hub id (never a local path)"),
        (lambda d: setattr(d, "datasets", ["data/local/file.json"]), "`datasets: data/local/file.json` is not a Hub"),
        (lambda d: setattr(d, "license", None), "required key `license` is missing"),
        (lambda d: setattr(d, "license", "Apache 2"), "`license: Apache 2` is not a Hub licence id"),
        (lambda d: setattr(d, "license_name", None) or setattr(d, "license", "other"), "`license: other` needs"),
        (lambda d: setattr(d, "licence", "mit"), "unknown metadata key `licence`"),
        (lambda d: delattr(d, "base_model_relation"), "`base_model` is set without `base_model_relation`"),
        (lambda d: setattr(d.eval_results[0], "verified", True), "sets `verified`"),
    ],
)
def test_check_card_rejects(mutate, message):
    card = build_model_card(_provenance(), FakeReport(), repo_id="me/student")
    mutate(card.data)
    with pytest.raises(CardError, match="fails local checks") as error:
        check_card(ModelCard(f"---\n{card.data.to_yaml()}\n---\n{card.text}"))
    assert message in str(error.value)


def test_trainer_create_model_card_writes_our_card(tmp_path, model_factory, tokenizer):
    """TRL's checkpointing calls `create_model_card(model_name=...)`: the output folder gets our card and every
    checkpoint its provenance."""
    args = DistillationConfig(output_dir=str(tmp_path / "out"), report_to="none", save_strategy="steps", save_steps=1,
                              max_steps=1, per_device_train_batch_size=4, max_length=64)
    trainer = DistillationTrainer(model=model_factory("llama", seed=1), teacher_model=model_factory("llama", seed=2),
                                  args=args, train_dataset=tiny.prompt_completion_dataset(8),
                                  processing_class=tokenizer)
    trainer.train()
    card = ModelCard.load(tmp_path / "out" / "README.md")
    assert "hf-distill" in card.data.tags and "## Licence and obligations" in card.text
    assert "licence" not in card.data.to_dict()  # TRL's card writes this wrong key; ours never does
    assert (tmp_path / "out" / "checkpoint-1" / "distillation_provenance.json").is_file()
    card = trainer.create_model_card(model_name="tiny", dataset_name="org/tiny-data", tags="demo",
                                     teacher_license="mit", dataset_licenses="cc0-1.0")
    assert card.data.datasets == ["org/tiny-data"] and "demo" in card.data.tags
    assert card.data.license == "mit" and card.data.license_name is None
    check_card(card)


def _scan(num_texts, flagged=0, **counts):
    from hf_distill.privacy import PrivacyReport

    return PrivacyReport(num_texts=num_texts, num_texts_flagged=flagged,
                         counts={**PrivacyReport().counts, **counts}, columns=["messages"]).to_dict()


def test_privacy_scan_table_and_secret_warning_parse_back(tmp_path, caplog):
    provenance = _provenance()
    provenance.datasets[0].privacy_scan = _scan(1000, 3, email=2, phone=1, openai_key=1)
    provenance.datasets[1].privacy_scan = _scan(50)
    with caplog.at_level("WARNING", logger="hf_distill.publish.card"):
        card = build_model_card(provenance, repo_id="me/qwen-0.5b-distilled")
    text = _body(card)
    training = text.split("## Training data")[1].split("## Evaluation")[0]
    assert "regex tripwire" in training
    assert "| org/chat-data | train | 1,000 | 3 | 2 | 1 | 0 | **1** (1 openai key) |" in training
    assert "| `eval` | eval | 50 | 0 | 0 | 0 | 0 | 0 |" in training
    assert "**Secrets in the training data.**" in training and "org/chat-data (train): 1" in training
    assert "secrets in the training data of me/qwen-0.5b-distilled (org/chat-data (train): 1)" in caplog.text
    check_card(card)
    card.save(tmp_path / "README.md")
    loaded = ModelCard.load(tmp_path / "README.md")
    assert loaded.data.to_dict() == card.data.to_dict() and loaded.text == card.text


def test_no_privacy_section_without_a_scan_and_no_warning_for_clean_or_eval_only_findings(caplog):
    assert "Privacy scan" not in _body(build_model_card(_provenance()))
    provenance = _provenance()
    provenance.datasets[0].privacy_scan = _scan(1000)
    provenance.datasets[1].privacy_scan = _scan(50, 1, aws_access_key=1)  # evaluation data is not trained on
    with caplog.at_level("WARNING", logger="hf_distill.publish.card"):
        text = _body(build_model_card(provenance))
    assert "Privacy scan of the data" in text and "Secrets in the training data" not in text
    assert "secrets in the training data" not in caplog.text


class LmEvalReport(FakeReport):
    """lm-eval style results as the benchmark builds them: few-shot count in `dataset_args`, a local dataset path."""

    def to_eval_results(self):
        return super().to_eval_results() + [
            EvalResult(task_type="text-generation", dataset_type="openai/gsm8k", dataset_name="gsm8k",
                       dataset_config="main", dataset_split="test", dataset_args={"num_fewshot": 5},
                       metric_type="exact_match", metric_value=0.25, metric_name="exact_match (lm-eval gsm8k)"),
            EvalResult(task_type="text-generation", dataset_type="./data/held_out.json", dataset_name="mine",
                       metric_type="accuracy", metric_value=0.5),
        ]


def test_model_index_follows_the_spec_and_eval_results_files_are_written(tmp_path):
    """model-index spec: `dataset.type` a Hub dataset id ("custom" only without one), `dataset.args` are
    load_dataset() arguments, so num_fewshot is a metric argument. `.eval_results/*.yaml` per Hub dataset."""
    import yaml
    from huggingface_hub import constants

    from hf_distill.publish.card import eval_results_files

    card = build_model_card(_provenance(), LmEvalReport(), repo_id="me/student")
    results = card.data.to_dict()["model-index"][0]["results"]
    gsm8k = next(r for r in results if r["dataset"]["type"] == "openai/gsm8k")
    assert "args" not in gsm8k["dataset"] and gsm8k["metrics"][0]["args"] == {"num_fewshot": 5}
    assert [r["dataset"]["type"] for r in results if r["dataset"]["name"] == "mine"] == ["custom"]
    check_card(card)
    card.save(tmp_path / "README.md")
    assert ModelCard.load(tmp_path / "README.md").data.to_dict() == card.data.to_dict()

    files = eval_results_files(card, "me/student")
    assert sorted(files) == [".eval_results/openai_gsm8k.yaml", ".eval_results/org_held-out.yaml"]
    entries = yaml.safe_load(files[".eval_results/openai_gsm8k.yaml"])
    assert entries == [{"dataset": {"id": "openai/gsm8k", "task_id": "gsm8k"}, "value": 0.25,
                        "source": {"url": f"{constants.ENDPOINT}/me/student",
                                   "name": "hf_distill benchmark (self-reported)"},
                        "notes": "exact_match (lm-eval gsm8k), num_fewshot=5, split test"}]
    held_out = yaml.safe_load(files[".eval_results/org_held-out.yaml"])
    assert held_out[0]["dataset"] == {"id": "org/held-out", "task_id": "held-out"} and held_out[0]["value"] == 9.1


def test_teacher_tag_and_key():
    data = build_model_card(_provenance(), repo_id="me/student").data.to_dict()
    assert "teacher:Qwen/Qwen2.5-7B-Instruct" in data["tags"]
    assert data["teacher_model"]["id"] == "Qwen/Qwen2.5-7B-Instruct"


def test_citation_year_is_the_release_year_of_the_installed_version(monkeypatch):
    """The year comes from the release date recorded beside the version, not from the clock or a literal."""
    import datetime

    from hf_distill import _version

    datetime.date.fromisoformat(_version.__release_date__)  # a real date
    text = build_model_card(_provenance(), repo_id="me/student").text
    assert f"year   = {{{_version.__release_date__[:4]}}},\n  note   = {{version {_version.__version__}}}" in text
    monkeypatch.setattr(_version, "__release_date__", "2031-05-01")
    assert "year   = {2031}," in build_model_card(_provenance(), repo_id="me/student").text


def test_card_shows_the_eu_restriction_and_modification_notice():
    """Llama 4 Acceptable Use Policy (EU, multimodal models) and Gemma §3.1 (modified files say so) reach the
    card."""
    llama = build_model_card(_provenance(teacher_license="llama4", base=False), repo_id="me/Llama-tiny")
    assert "European Union" in llama.text
    provenance = _provenance(teacher_license="gemma", base=False)
    provenance.weight_derived = True
    gemma = build_model_card(provenance, repo_id="me/gemma-pruned")
    assert "the weights were changed from those of teacher (gemma)" in gemma.text
