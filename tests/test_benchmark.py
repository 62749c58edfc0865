"""hf_distill.benchmark: a student against its teacher on tiny local models, every number checked."""

import collections
import copy
import dataclasses
import math
import os
import re
import string

import pytest
import torch
from datasets import Dataset
from huggingface_hub import ModelCardData

from hf_distill import DistillationConfig, DistillationTrainer
from hf_distill.benchmark import BenchmarkInputError, BenchmarkReport, benchmark, teacher_gap_recovered
from hf_distill.benchmark.quality import _rouge_l_local, exact_match, rouge_l, score_predictions, token_f1
from tests import tiny

FAST = dict(max_new_tokens=4, batch_sizes=(1, 2), num_latency_runs=2, eval_batch_size=4)
ALL_METRICS = ("exact_match", "token_f1", "rouge_l", "chrf", "bleu")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def setup(tmp_path_factory, model_factory, tokenizer):
    """Teacher from a folder, student and baseline as objects: the report every structural test reads."""
    folder = tmp_path_factory.mktemp("benchmark")
    teacher_path = model_factory.save(folder / "teacher", "llama", hidden=64, seed=1)
    student = model_factory("llama", hidden=32, seed=0)
    baseline = model_factory("llama", hidden=32, seed=2)
    dataset = tiny.prompt_completion_dataset(6)
    report = benchmark(
        student, teacher_path, dataset, tokenizer=tokenizer, baseline=baseline, task_metrics=ALL_METRICS,
        dataset_name="tiny/arith", dataset_split="test", **FAST,
    )
    return dict(report=report, student=student, teacher_path=teacher_path, dataset=dataset, folder=folder)


def _leaves(value, path=""):
    if dataclasses.is_dataclass(value):
        for f in dataclasses.fields(value):
            yield from _leaves(getattr(value, f.name), f"{path}.{f.name}".lstrip("."))
    elif isinstance(value, list) and value and dataclasses.is_dataclass(value[0]):
        for i, item in enumerate(value):
            yield from _leaves(item, f"{path}[{i}]")
    else:
        yield path, value


# Fields that are legitimately empty here: the teacher has no fidelity to itself, the data has no config or
# revision, the CPU machine has no accelerator, no lm_eval task ran, and trust measurements are opt-in.
_MAY_BE_EMPTY = {"teacher.fidelity", "dataset.config", "dataset.revision", "hardware.accelerators", "lm_eval_tasks",
                 "trust"}


def test_every_field_is_filled(setup):
    report = setup["report"]
    for path, value in _leaves(report):
        if path in _MAY_BE_EMPTY or path.endswith("quality.lm_eval"):
            continue
        assert value is not None and value != {} and value != [], path
        if isinstance(value, float):
            assert math.isfinite(value), path
    assert [m.role for m in report.models] == ["student", "teacher", "baseline"]
    for model in report.models:
        assert set(model.quality.task_metrics) == set(ALL_METRICS)
        assert [r.batch_size for r in model.cost.latency] == [1, 2]
        for result in model.cost.latency:
            assert result.time_to_first_token_s.num_runs == 2 and result.tokens_per_second.median > 0
            assert result.peak_memory_bytes >= model.cost.memory_footprint_bytes
    assert report.dataset.name == "tiny/arith" and report.dataset.num_examples == 6
    assert report.dataset.format == "prompt_completion"
    assert report.hardware.num_cpu_cores == os.cpu_count()


def test_sizes_are_measured(setup, model_factory):
    report, student = setup["report"], setup["student"]
    assert report.student.cost.num_parameters == sum(p.numel() for p in student.parameters())
    assert report.teacher.cost.num_parameters == sum(p.numel() for p in model_factory("llama", hidden=64).parameters())
    weights = os.path.getsize(os.path.join(setup["teacher_path"], "model.safetensors"))
    assert (report.teacher.cost.disk_bytes, report.teacher.cost.disk_source) == (weights, "folder")
    assert report.student.cost.disk_source == "saved"
    # float32 weights dominate the safetensors file: 4 bytes per parameter plus a small header
    assert 0 < report.student.cost.disk_bytes - 4 * report.student.cost.num_parameters < 20_000
    assert report.student.cost.dtype == "float32" and report.student.cost.device == "cpu"


def _reference_scores(student, teacher, tokenizer, dataset):
    """Completion-token cross-entropy, forward KL, top-1 agreement and token accuracy, from full logits, one example
    at a time."""
    ce, kl, agree, correct, count = 0.0, 0.0, 0, 0, 0
    for row in dataset:
        prompt_ids = tokenizer(row["prompt"])["input_ids"]
        ids = torch.tensor([tokenizer(row["prompt"] + row["completion"] + tokenizer.eos_token)["input_ids"]])
        with torch.no_grad():
            student_logp = student(ids).logits[0, :-1].float().log_softmax(-1)
            teacher_logp = teacher(ids).logits[0, :-1].float().log_softmax(-1)
        span = slice(len(prompt_ids) - 1, ids.shape[1] - 1)
        labels = ids[0, 1:][span]
        ce -= student_logp[span].gather(-1, labels[:, None]).sum().item()
        kl += (teacher_logp[span].exp() * (teacher_logp[span] - student_logp[span])).sum().item()
        agree += (student_logp[span].argmax(-1) == teacher_logp[span].argmax(-1)).sum().item()
        correct += (student_logp[span].argmax(-1) == labels).sum().item()
        count += len(labels)
    return ce / count, kl / count, agree / count, correct / count, count


def test_quality_and_fidelity_match_a_reference(setup, tokenizer):
    from transformers import AutoModelForCausalLM

    teacher = AutoModelForCausalLM.from_pretrained(setup["teacher_path"])
    ce, kl, agreement, accuracy, count = _reference_scores(setup["student"], teacher, tokenizer, setup["dataset"])
    report = setup["report"]
    assert report.student.quality.token_accuracy == pytest.approx(accuracy)
    assert report.student.quality.num_tokens == report.student.fidelity.num_tokens == count
    assert report.student.quality.cross_entropy == pytest.approx(ce, rel=1e-5)
    assert report.student.quality.perplexity == pytest.approx(math.exp(ce), rel=1e-5)
    assert report.student.fidelity.forward_kl == pytest.approx(kl, rel=1e-4, abs=1e-7)
    assert report.student.fidelity.top1_agreement == pytest.approx(agreement)


def test_teacher_gap_recovered_per_metric(setup):
    report = setup["report"]
    student, teacher, baseline = (m.quality.values() for m in report.models)
    assert set(report.gap_recovered) == set(student)
    for key, gap in report.gap_recovered.items():
        if abs(teacher[key] - baseline[key]) < 1e-12:
            assert gap is None, key
        else:
            assert gap == pytest.approx((student[key] - baseline[key]) / (teacher[key] - baseline[key])), key
    assert report.gap_recovered["cross_entropy"] is not None


@pytest.mark.parametrize(
    ("student", "teacher", "baseline", "expected"),
    [(0.5, 1.0, 0.0, 0.5), (2.0, 1.0, 3.0, 0.5), (1.0, 1.0, 0.0, 1.0), (0.7, 0.4, 0.4, None),
     (0.7, 0.4 + 1e-13, 0.4, None), (math.nan, 1.0, 0.0, None), (1.0, math.inf, 0.0, None)],
)
def test_teacher_gap_recovered_formula(student, teacher, baseline, expected):
    assert teacher_gap_recovered(student, teacher, baseline) == (None if expected is None else pytest.approx(expected))


def test_json_round_trip(setup, tmp_path):
    report = setup["report"]
    assert BenchmarkReport.from_json(report.to_json()) == report
    path = tmp_path / "benchmark.json"
    report.to_json(path)
    assert BenchmarkReport.from_json(path) == report
    assert BenchmarkReport.from_json(str(path)) == report


def test_eval_results_accepted_by_model_card_data(setup):
    results = setup["report"].to_eval_results()
    card = ModelCardData(model_name="tiny-student", eval_results=results).to_dict()
    entries = card["model-index"][0]["results"]
    assert card["model-index"][0]["name"] == "tiny-student"
    assert all(e["task"]["type"] == "text-generation" for e in entries)
    assert {e["dataset"]["type"] for e in entries} == {"tiny/arith"}
    metrics = {m["type"]: m for e in entries for m in e["metrics"]}
    assert {"perplexity", "exact_match", "f1", "rouge", "chrf", "bleu", "teacher_top1_agreement"} <= set(metrics)
    assert metrics["perplexity"]["value"] == setup["report"].student.quality.perplexity
    assert all("verified" not in m for m in metrics.values())
    assert all(r.verified is None for r in results)


def test_markdown_table(setup):
    text = setup["report"].to_markdown()
    header, rule, *rows = text.split("\n\n")[0].splitlines()
    assert header == "| Metric | student | teacher | baseline | Teacher gap recovered |"
    assert all(row.count("|") == header.count("|") for row in rows)
    labels = [row.split("|")[1].strip() for row in rows]
    expected = (
        "Perplexity ↓", "ROUGE-L ↑", "BLEU ↑", "Top-1 agreement with teacher ↑", "Parameters", "Weights on disk",
        "Time to first token, batch 2 (ms) ↓", "Tokens/s, batch 1 ↑", "Peak memory, batch 2",
    )
    assert set(expected) <= set(labels)
    assert f"{setup['report'].student.quality.perplexity:.4g}" in text
    assert "`tiny/arith`" in text and "2 timed runs after 1 warm-up" in text


def test_plot_writes_a_png(setup, tmp_path):
    path = BenchmarkReport.from_json(setup["report"].to_json()).plot(tmp_path / "benchmark.png")
    with open(path, "rb") as handle:
        data = handle.read()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 10_000


def test_student_equal_to_teacher_agrees_exactly(model_factory, tokenizer):
    teacher = model_factory("qwen2", hidden=32, seed=5)
    report = benchmark(
        copy.deepcopy(teacher), teacher, tiny.messages_dataset(4), tokenizer=tokenizer, task_metrics=("token_f1",),
        max_new_tokens=3, batch_sizes=(1,), num_latency_runs=2,
    )
    assert report.student.fidelity.top1_agreement == 1.0
    assert report.student.fidelity.forward_kl == pytest.approx(0.0, abs=1e-6)
    assert report.student.quality.cross_entropy == pytest.approx(report.teacher.quality.cross_entropy, rel=1e-6)
    assert report.student.quality.task_metrics == report.teacher.quality.task_metrics
    assert report.dataset.format == "messages" and report.teacher.fidelity is None and report.gap_recovered == {}


def test_teacher_with_another_vocabulary_is_scored_on_its_own_tokens(model_factory, tokenizer, other_tokenizer):
    teacher = tiny.ModelFactory(other_tokenizer)("llama", hidden=32, seed=3)
    report = benchmark(
        model_factory("llama"), teacher, tiny.prompt_completion_dataset(3), tokenizer=tokenizer,
        teacher_tokenizer=other_tokenizer, task_metrics=("exact_match",), max_new_tokens=2, batch_sizes=(1,),
        num_latency_runs=1,
    )
    assert report.student.fidelity is None
    assert report.teacher.quality.num_tokens != report.student.quality.num_tokens  # counted in its own tokens
    assert report.teacher.cost.num_parameters == sum(p.numel() for p in teacher.parameters())


def test_peft_student_counts_adapter_and_base(model_factory, tokenizer):
    from peft import LoraConfig, get_peft_model

    base = model_factory("llama", seed=4)
    base_params = sum(p.numel() for p in base.parameters())
    student = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    report = benchmark(
        student, dataset=tiny.prompt_completion_dataset(3), tokenizer=tokenizer, task_metrics=("exact_match",),
        max_new_tokens=2, batch_sizes=(1,), num_latency_runs=1, model_names={"student": "me/lora-student"},
    )
    cost = report.student.cost
    assert cost.num_parameters == base_params + sum(p.numel() for n, p in student.named_parameters() if "lora_" in n)
    assert cost.disk_source == "adapter saved + base saved merged"
    assert cost.disk_bytes > 4 * base_params
    assert report.student.name == "me/lora-student" and report.teacher is None and report.student.fidelity is None


def test_conversational_prompts_get_the_generation_prompt(tokenizer):
    from hf_distill.benchmark.examples import encode_examples, read_examples

    [example] = read_examples(tiny.messages_dataset(1))
    [encoded] = encode_examples([example], tokenizer)
    assert tokenizer.decode(encoded.prompt_ids).endswith("<|assistant|>")
    assert example.reference == tiny.messages_dataset(1)[0]["messages"][-1]["content"]
    assert encoded.input_ids[: encoded.completion_start] == encoded.prompt_ids
    assert tokenizer.decode(encoded.input_ids[encoded.completion_start :]) == example.reference + "<|end|>"


# -- bad input: each fails before any model work (the student path does not exist, so loading it would fail) ------

_NOT_A_MODEL = "/nonexistent/student"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(dataset=None), r"`dataset` is None"),
        (dict(dataset=Dataset.from_dict({"prompt": [], "completion": []})), r"`dataset` has no rows"),
        (dict(dataset=tiny.text_dataset(2)), r"columns \['text'\] \(a `text` dataset has no reference"),
        (dict(dataset=[{"question": "q", "answer": "a"}]), r"columns \['question', 'answer'\].*prompt.*messages"),
        (dict(dataset=[{"messages": [{"role": "user", "content": "hi"}]}]), r"last message has role 'user'"),
        (dict(dataset=[{"prompt": "a", "completion": [{"role": "assistant", "content": "b"}]}]), r"mixes formats"),
        (dict(batch_sizes=()), r"`batch_sizes` must be a non-empty list of integers >= 1, got \(\)"),
        (dict(batch_sizes=(1, 0)), r"`batch_sizes` must be .* got \(1, 0\)"),
        (dict(batch_sizes=4), r"`batch_sizes` must be .* got 4"),
        (dict(num_latency_runs=0), r"`num_latency_runs` must be an integer >= 1, got 0"),
        (dict(max_new_tokens=0), r"`max_new_tokens` must be an integer >= 1, got 0"),
        (dict(task_metrics=("exact_match", "meteor")), r"Unknown task metric 'meteor'.*exact_match, token_f1"),
        (dict(task_metrics="rouge_l"), r"must be a list of metric names, got the string 'rouge_l'"),
        (dict(device="banana"), r"`device` 'banana' is not a torch device"),
        (dict(max_samples=0), r"`max_samples` must be at least 1"),
        (dict(teacher=3), r"`teacher` must be a Hub id, a local path or a model, got int"),
    ],
)
def test_bad_input_fails_before_model_work(tokenizer, kwargs, message):
    arguments = dict(dataset=tiny.prompt_completion_dataset(2), tokenizer=tokenizer) | kwargs
    with pytest.raises(BenchmarkInputError, match=message):
        benchmark(_NOT_A_MODEL, **arguments)


def test_every_argument_problem_is_reported_at_once(tokenizer):
    with pytest.raises(BenchmarkInputError) as error:
        benchmark(_NOT_A_MODEL, dataset=tiny.prompt_completion_dataset(2), tokenizer=tokenizer, batch_sizes=(),
                  num_latency_runs=0, task_metrics=("nope",))
    assert all(name in str(error.value) for name in ("batch_sizes", "num_latency_runs", "'nope'"))


def test_conversation_without_chat_template_fails_before_loading(tokenizer):
    plain = copy.deepcopy(tokenizer)
    plain.chat_template = None
    with pytest.raises(BenchmarkInputError, match="student's tokenizer has no chat template"):
        benchmark(_NOT_A_MODEL, dataset=tiny.messages_dataset(2), tokenizer=plain)


def test_missing_tokenizer_is_named(model_factory):
    with pytest.raises(BenchmarkInputError, match=r"No tokenizer found for the student .*pass `tokenizer=`"):
        benchmark(model_factory("llama"), dataset=tiny.prompt_completion_dataset(2))


# -- task metrics -----------------------------------------------------------------------------------------------------


def _squad_normalize(text):
    """The official SQuAD v1.1 script's `normalize_answer`."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())


def _squad_f1(prediction, reference):
    prediction_tokens, reference_tokens = _squad_normalize(prediction).split(), _squad_normalize(reference).split()
    if not prediction_tokens or not reference_tokens:
        return float(prediction_tokens == reference_tokens)
    common = collections.Counter(prediction_tokens) & collections.Counter(reference_tokens)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(prediction_tokens), overlap / len(reference_tokens)
    return 2 * precision * recall / (precision + recall)


def test_task_metrics_in_the_report_equal_independent_scores_of_the_teachers_greedy_answers(setup, tokenizer):
    sacrebleu = pytest.importorskip("sacrebleu")
    rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")
    from transformers import AutoModelForCausalLM

    teacher = AutoModelForCausalLM.from_pretrained(setup["teacher_path"])
    rows = tiny.prompt_completion_dataset(6, seed=9)
    answers = []
    for prompt in rows["prompt"]:  # the teacher's own greedy answers, one unpadded prompt at a time
        ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
        output = teacher.generate(ids, max_new_tokens=4, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        answers.append(tokenizer.decode(output[0, ids.shape[1]:], skip_special_tokens=True))
    predictions = [answer.strip() for answer in answers]
    # References: the teacher's answer itself, its answer with more words (case, punctuation and an article for the
    # SQuAD normalisation to handle), or the dataset's completion; so no score is trivially 0 or 1.
    references = [
        answer if index % 3 == 0 else f"{answer} The cat, sat!" if index % 3 == 1 else completion
        for index, (answer, completion) in enumerate(zip(answers, rows["completion"], strict=True))
    ]
    dataset = Dataset.from_dict({"prompt": rows["prompt"], "completion": references})
    report = benchmark(teacher, dataset=dataset, tokenizer=tokenizer, task_metrics=ALL_METRICS, max_new_tokens=4,
                       batch_sizes=(1,), num_latency_runs=1, eval_batch_size=4)
    stripped = [reference.strip() for reference in references]
    pairs = list(zip(predictions, stripped, strict=True))
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    expected = {
        "exact_match": sum(_squad_normalize(p) == _squad_normalize(r) for p, r in pairs) / len(pairs),
        "token_f1": sum(_squad_f1(p, r) for p, r in pairs) / len(pairs),
        "rouge_l": sum(scorer.score(r, p)["rougeL"].fmeasure for p, r in pairs) / len(pairs),
        "chrf": sacrebleu.corpus_chrf(predictions, [stripped]).score,
        "bleu": sacrebleu.corpus_bleu(predictions, [stripped]).score,
    }
    assert 0 < expected["exact_match"] < 1 and 0 < expected["chrf"] < 100  # not a value a broken metric gives
    assert report.student.quality.task_metrics == pytest.approx(expected, rel=1e-9, abs=1e-12)
    # Teacher-forced on references that are partly its own greedy answers: a token accuracy strictly inside (0, 1).
    ce, _, _, accuracy, count = _reference_scores(teacher, teacher, tokenizer, dataset)
    assert 0 < accuracy < 1 and report.student.quality.num_tokens == count
    assert report.student.quality.token_accuracy == pytest.approx(accuracy)
    assert report.student.quality.cross_entropy == pytest.approx(ce, rel=1e-5)


def test_task_metrics_follow_their_definitions():
    assert exact_match(["The Answer!", "no"], ["answer", "yes"]) == 0.5
    # prediction tokens {cat, sat}, reference {cat, sat, on, mat}: precision 1, recall 0.5
    assert token_f1(["the cat sat"], ["a cat sat on mat"]) == pytest.approx(2 / 3)
    assert token_f1([""], [""]) == 1.0 and token_f1(["x"], [""]) == 0.0
    scores = score_predictions(["the cat sat on the mat"], ["the cat sat on the mat"], ALL_METRICS)
    assert scores == pytest.approx({"exact_match": 1.0, "token_f1": 1.0, "rouge_l": 1.0, "chrf": 100.0, "bleu": 100.0})


@pytest.mark.parametrize(
    ("prediction", "reference"),
    [("the cat sat on the mat", "the cat is on the mat"), ("a b c d", "d c b a"), ("", "x"), ("Hi, World!", "hi")],
)
def test_local_rouge_l_equals_rouge_score(prediction, reference):
    pytest.importorskip("rouge_score")
    assert _rouge_l_local(prediction, reference) == pytest.approx(rouge_l([prediction], [reference]))


# -- trainer ----------------------------------------------------------------------------------------------------------


def test_trainer_benchmark_and_training_curves(tmp_path, model_factory, tokenizer):
    data = tiny.prompt_completion_dataset(8)
    trainer = DistillationTrainer(
        model=model_factory("llama", seed=1), teacher_model=model_factory("llama", hidden=48, seed=2),
        args=DistillationConfig(
            output_dir=str(tmp_path / "tiny-distilled"), report_to="none", save_strategy="no", max_steps=2,
            per_device_train_batch_size=4, logging_steps=1, eval_strategy="steps", eval_steps=1, max_length=64,
        ),
        train_dataset=data, eval_dataset=data, processing_class=tokenizer,
    )
    trainer.train()
    was_training = trainer.model.training
    report = trainer.benchmark(max_new_tokens=2, batch_sizes=(1,), num_latency_runs=1, task_metrics=("exact_match",))
    assert trainer.model.training == was_training
    assert report.student.name == "tiny-distilled" and report.teacher is not None
    assert report.dataset.num_examples == 8 and report.dataset.format == "prompt_completion"
    assert 0.0 <= report.student.fidelity.top1_agreement <= 1.0 and report.student.fidelity.forward_kl > 0
    path = trainer.plot_training_curves(tmp_path / "curves.png")
    with open(path, "rb") as handle:
        assert handle.read().startswith(PNG_SIGNATURE)


def test_training_curves_need_logged_metrics(tmp_path):
    from hf_distill.benchmark import plot_training_curves

    with pytest.raises(ValueError, match="none of \\['kd_loss', 'ce_loss', 'teacher_agreement'\\]"):
        plot_training_curves([{"step": 1, "loss": 2.0}], tmp_path / "curves.png")
