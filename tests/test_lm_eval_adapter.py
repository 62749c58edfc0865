"""lm-evaluation-harness adapter: local custom tasks (no network) on tiny student and teacher models."""

import json
import math

import pytest
import torch

from hf_distill.benchmark import BenchmarkInputError, LmEvalRun, add_lm_eval_results, benchmark
from hf_distill.benchmark.lm_eval_adapter import _scores
from tests import tiny

pytest.importorskip("lm_eval")

NUM_ROWS = 4
_TASKS = {
    "tiny_gen": """
output_type: generate_until
generation_kwargs:
  until: ["<eos>"]
  max_gen_toks: 3
  do_sample: false
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
""",
    "tiny_ll": """
output_type: loglikelihood
metric_list:
  - metric: perplexity
    aggregation: perplexity
    higher_is_better: false
  - metric: acc
    aggregation: mean
    higher_is_better: true
""",
}


@pytest.fixture(scope="module")
def task_folder(tmp_path_factory):
    """A folder of lm_eval task YAMLs over a local JSON-lines file."""
    folder = tmp_path_factory.mktemp("lm_eval_tasks")
    data = folder / "rows.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in tiny.prompt_completion_dataset(NUM_ROWS)))
    for name, body in _TASKS.items():
        (folder / f"{name}.yaml").write_text(
            f"task: {name}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\ntest_split: test\n"
            'doc_to_text: "{{prompt}}"\ndoc_to_target: "{{completion}}"\ntarget_delimiter: ""\n' + body
        )
    return str(folder)


@pytest.fixture(scope="module")
def report(task_folder, model_factory, tokenizer):
    return benchmark(
        model_factory("llama", seed=0), model_factory("llama", hidden=48, seed=1), tiny.prompt_completion_dataset(3),
        tokenizer=tokenizer, baseline=model_factory("llama", seed=2), task_metrics=("exact_match",),
        max_new_tokens=2, batch_sizes=(1,), num_latency_runs=1, dataset_name="tiny/arith",
        lm_eval_tasks=["tiny_*"],
        lm_eval_kwargs={"include_path": task_folder, "include_defaults": False, "batch_size": 2},
    ), model_factory


def _reference_perplexity(model, tokenizer):
    """lm_eval's loglikelihood perplexity from its definition: exp(-mean over docs of log p(completion | prompt))."""
    total = 0.0
    for row in tiny.prompt_completion_dataset(NUM_ROWS):
        context = tokenizer(row["prompt"])["input_ids"]
        whole = tokenizer(row["prompt"] + row["completion"])["input_ids"]
        with torch.no_grad():
            log_probs = model(torch.tensor([whole])).logits[0].float().log_softmax(-1)
        total += sum(log_probs[i - 1, whole[i]].item() for i in range(len(context), len(whole)))
    return math.exp(-total / NUM_ROWS)


def test_scores_are_folded_into_every_model(report, tokenizer):
    report, model_factory = report
    for model in report.models:
        assert set(model.quality.lm_eval) == {"tiny_gen/exact_match", "tiny_ll/perplexity", "tiny_ll/acc"}
    # the student's loglikelihood perplexity equals the definition computed on the same model
    student = model_factory("llama", seed=0)
    expected = _reference_perplexity(student, tokenizer)
    assert report.student.quality.lm_eval["tiny_ll/perplexity"] == pytest.approx(expected, rel=1e-4)
    assert report.teacher.quality.lm_eval["tiny_ll/perplexity"] != pytest.approx(expected, rel=1e-4)
    assert "tiny_ll/perplexity" in report.gap_recovered


def test_task_descriptions_and_eval_results(report):
    report, _ = report
    info = report.lm_eval_tasks["tiny_ll"]
    assert (info.dataset_path, info.split, info.num_samples) == ("json", "test", NUM_ROWS)
    assert info.higher_is_better == {"perplexity": False, "acc": True}
    results = [r for r in report.to_eval_results() if r.dataset_name.startswith("tiny_")]
    assert {(r.dataset_name, r.metric_type) for r in results} == {
        ("tiny_gen", "exact_match"), ("tiny_ll", "perplexity"), ("tiny_ll", "acc"),
    }
    assert "tiny_ll/perplexity (lm-eval) ↓" in report.to_markdown()


def test_add_to_an_existing_report_needs_its_roles(report, task_folder, model_factory, tokenizer):
    report, _ = report
    run = LmEvalRun(tasks=["tiny_gen"], include_path=task_folder, include_defaults=False)
    with pytest.raises(ValueError, match=r"no \['judge'\] model"):
        add_lm_eval_results(report, {"judge": (model_factory("llama"), tokenizer)}, run)


def test_results_parsing_keeps_filters_and_drops_stderr():
    output = {"results": {"gsm8k": {
        "alias": "gsm8k", "exact_match,strict-match": 0.25, "exact_match_stderr,strict-match": 0.01,
        "exact_match,none": 0.5, "sample_len": 10,
    }}}
    assert _scores(output) == {"gsm8k/exact_match,strict-match": 0.25, "gsm8k/exact_match": 0.5}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(lm_eval_tasks=["no_such_task"]), r"Unknown lm_eval task\(s\) \['no_such_task'\]"),
        (dict(lm_eval_tasks=[]), r"`lm_eval_tasks` must be a non-empty list"),
        (dict(lm_eval_tasks=["tiny_gen"], lm_eval_kwargs={"fewshot": 5}), r"Unknown `lm_eval_kwargs` \['fewshot'\]"),
    ],
)
def test_bad_lm_eval_input_fails_before_model_work(task_folder, tokenizer, kwargs, message):
    kwargs.setdefault("lm_eval_kwargs", {"include_path": task_folder, "include_defaults": False})
    with pytest.raises(BenchmarkInputError, match=message):
        benchmark("/nonexistent/student", dataset=tiny.prompt_completion_dataset(2), tokenizer=tokenizer, **kwargs)


def test_missing_lm_eval_names_the_extra(monkeypatch, tokenizer):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "lm_eval" else real(name, *a))
    hint = r"`pip install lm-eval` \(or, from an hf_distill clone, `pip install -e \"\.\[eval\]\"`\)"
    with pytest.raises(BenchmarkInputError, match=hint):
        benchmark("/nonexistent/student", dataset=tiny.prompt_completion_dataset(2), tokenizer=tokenizer,
                  lm_eval_tasks=["tiny_gen"])
