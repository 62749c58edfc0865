"""`DistillationTrainer` with `cross_tokenizer=`: a tiny student (byte-level BPE) and a tiny teacher with a
SentencePiece-style tokenizer trained on the same corpus. The first step's loss is checked against a float64
reference from plain `model(...).logits` and the definitions; training moves only the student; the provenance and
the card say how the student was distilled; one tokenizer through the cross-tokenizer path gives today's loss."""

from __future__ import annotations

import json

import pytest
import torch

from hf_distill import DistillationConfig, DistillationTrainer
from hf_distill.alignment import align_text, shared_vocabulary
from hf_distill.fingerprints import tokenizer_hash
from hf_distill.losses.cross_tokenizer import VocabularyPairs
from hf_distill.training.token_stats import window_means
from tests import tiny
from tests.test_cross_tokenizer_loss import span_reference, uld_reference

ALPHA = 0.6


@pytest.fixture(scope="module")
def teacher_tokenizer():
    return tiny.build_sentencepiece_tokenizer()


def _args(tmp_path, method, **kwargs):
    defaults = dict(output_dir=str(tmp_path / "out"), report_to="none", save_strategy="no", max_steps=1,
                    per_device_train_batch_size=4, max_length=64, seed=0, cross_tokenizer=method, alpha=ALPHA,
                    divergence="jsd", beta=0.3, shuffle_dataset=False)
    return DistillationConfig(**{**defaults, **kwargs})


def _trainer(tmp_path, tokenizer, teacher_tokenizer, method, data=None, **kwargs):
    student = tiny.ModelFactory(tokenizer)("llama", hidden=32, layers=2, seed=0)
    teacher = tiny.ModelFactory(teacher_tokenizer)("qwen2", hidden=48, layers=2, seed=1).eval()
    return DistillationTrainer(model=student, teacher_model=teacher, args=_args(tmp_path, method, **kwargs),
                               train_dataset=data if data is not None else tiny.prompt_completion_dataset(8),
                               processing_class=tokenizer, teacher_processing_class=teacher_tokenizer)


def _reference_rows(tokenizer, teacher_tokenizer, rows):
    """Per row, each model's own ids (prompt, completion tokenized alone, EOS), the student's prompt length, and the
    paired positions: the token before every matched span and the last completion token (predicting EOS)."""
    for prompt, completion in zip(rows["prompt"], rows["completion"], strict=True):
        alignment = align_text(tokenizer, teacher_tokenizer, completion)
        s_prompt, t_prompt = tokenizer(prompt)["input_ids"], teacher_tokenizer(prompt)["input_ids"]
        s_ids = s_prompt + list(alignment.student.ids) + [tokenizer.eos_token_id]
        t_ids = t_prompt + list(alignment.teacher.ids) + [teacher_tokenizer.eos_token_id]
        s_at = [len(s_prompt) + span.student.start - 1 for span in alignment.spans] + [len(s_ids) - 2]
        t_at = [len(t_prompt) + span.teacher.start - 1 for span in alignment.spans] + [len(t_ids) - 2]
        yield s_ids, t_ids, len(s_prompt), s_at, t_at


def _reference_loss(trainer, tokenizer, teacher_tokenizer, rows, method) -> float:
    """alpha * KD + (1 - alpha) * CE over the rows, divided by the trained tokens: each model reads its own ids
    (prompt, completion tokenized alone, EOS); KD at the token before every matched span and at the last completion
    token (predicting EOS), from plain logits in float64."""
    student, teacher = trainer.model, trainer.teacher.model
    student_ids, teacher_ids = shared_vocabulary(tokenizer, teacher_tokenizer)
    pairs = VocabularyPairs.from_lists([*student_ids, tokenizer.eos_token_id],
                                       [*teacher_ids, teacher_tokenizer.eos_token_id],
                                       student_vocab=len(tokenizer), teacher_vocab=len(teacher_tokenizer))
    kd = ce = 0.0
    count = 0
    for s_ids, t_ids, s_prompt_length, s_at, t_at in _reference_rows(tokenizer, teacher_tokenizer, rows):
        with torch.no_grad():
            s_logits = student(input_ids=torch.tensor([s_ids])).logits[0].double()
            t_logits = teacher(input_ids=torch.tensor([t_ids])).logits[0].double()
        p_s, p_t = torch.softmax(s_logits[s_at], -1), torch.softmax(t_logits[t_at], -1)
        per_position = (uld_reference(p_s, p_t) if method == "uld"
                        else span_reference(p_s, p_t, pairs, "jsd", beta=0.3))
        kd += float(per_position.sum())
        trained = range(s_prompt_length - 1, len(s_ids) - 1)
        log_p = torch.log_softmax(s_logits, -1)
        ce += float(-sum(log_p[i, s_ids[i + 1]] for i in trained))
        count += len(trained)
    return (ALPHA * kd + (1 - ALPHA) * ce) / count


@pytest.mark.parametrize("method", ["uld", "span"])
def test_first_loss_equals_a_float64_reference(tmp_path, tokenizer, teacher_tokenizer, method):
    data = tiny.prompt_completion_dataset(4)
    trainer = _trainer(tmp_path, tokenizer, teacher_tokenizer, method, data=data)
    batch = trainer._prepare_inputs(trainer.data_collator([trainer.train_dataset[i] for i in range(4)]))
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, batch)
    expected = _reference_loss(trainer, tokenizer, teacher_tokenizer, data, method)
    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_teacher_agreement_is_counted_over_the_matched_positions(tmp_path, tokenizer, other_tokenizer):
    """The logged `teacher_agreement` is the share of matched positions (the only ones with a teacher prediction)
    where the teacher's argmax, read as a student token, is the student's argmax. The teacher's byte-level tokenizer
    was trained on other text (and the completions end with two of its words), so the two split the completions
    differently: fewer matched positions than trained tokens."""
    from datasets import Dataset

    teacher_tokenizer = other_tokenizer
    rows = tiny.prompt_completion_dataset(4)
    data = Dataset.from_dict({"prompt": rows["prompt"],
                              "completion": [c + " zeta omega" for c in rows["completion"]]})
    trainer = _trainer(tmp_path, tokenizer, teacher_tokenizer, "span", data=data, max_steps=40, learning_rate=3e-2,
                       alpha=1.0, lr_scheduler_type="constant")
    with torch.no_grad():  # a confident teacher the student learns from for 40 steps, so that some argmaxes agree
        trainer.teacher.model.lm_head.weight.mul_(20.0)
    trainer.train()
    batch = trainer._prepare_inputs(trainer.data_collator([trainer.train_dataset[i] for i in range(4)]))
    trainer._stat_sums = {}
    with torch.no_grad():
        trainer.compute_loss(trainer.model, batch)
    logged = window_means(trainer._stat_sums["train"])

    student_ids, teacher_ids = shared_vocabulary(tokenizer, teacher_tokenizer)
    as_student = dict(zip(teacher_ids, student_ids, strict=True))
    as_student[teacher_tokenizer.eos_token_id] = tokenizer.eos_token_id
    agree = matched = trained = 0
    for s_ids, t_ids, s_prompt_length, s_at, t_at in _reference_rows(tokenizer, teacher_tokenizer, data):
        with torch.no_grad():
            s_top = trainer.model(input_ids=torch.tensor([s_ids])).logits[0].argmax(-1)
            t_top = trainer.teacher.model(input_ids=torch.tensor([t_ids])).logits[0].argmax(-1)
        agree += sum(as_student.get(int(t_top[t]), -1) == int(s_top[i]) for i, t in zip(s_at, t_at, strict=True))
        matched += len(s_at)
        trained += len(s_ids) - s_prompt_length
    assert 0 < agree <= matched < trained  # the old count (out of all trained tokens) would be lower
    assert logged["teacher_agreement"] == pytest.approx(agree / matched, abs=1e-9)


@pytest.mark.parametrize("method", ["uld", "span"])
def test_training_lowers_the_loss_and_moves_only_the_student(tmp_path, tokenizer, teacher_tokenizer, method):
    data = tiny.prompt_completion_dataset(4)  # one batch, seen at every step
    trainer = _trainer(tmp_path, tokenizer, teacher_tokenizer, method, data=data, max_steps=12, learning_rate=1e-2,
                       logging_steps=1, alpha=1.0, lr_scheduler_type="constant")
    with torch.no_grad():  # a confident teacher (a random one is near uniform, as is the student)
        trainer.teacher.model.lm_head.weight.mul_(20.0)
    teacher_before = {name: p.detach().clone() for name, p in trainer.teacher.model.named_parameters()}
    student_before = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
    trainer.train()
    kd = [entry["kd_loss"] for entry in trainer.state.log_history if "kd_loss" in entry]
    assert len(kd) == 12 and kd[-1] < kd[0] * 0.8
    assert all(not p.requires_grad for p in trainer.teacher.model.parameters())
    for name, p in trainer.teacher.model.named_parameters():
        assert torch.equal(p, teacher_before[name]), f"teacher parameter {name} changed"
    assert any(not torch.equal(p, student_before[name]) for name, p in trainer.model.named_parameters())


def test_one_tokenizer_through_the_span_path_gives_todays_loss(tmp_path, tokenizer):
    """Teacher and student share the tokenizer: every completion token is its own span and every token is shared,
    so `cross_tokenizer="span"` gives the ordinary loss (fused, from hidden states) on the same models."""
    data = tiny.prompt_completion_dataset(4)
    losses = {}
    for method in (None, "span"):
        trainer = _trainer(tmp_path / str(method), tokenizer, tokenizer, method, data=data)
        batch = trainer._prepare_inputs(trainer.data_collator([trainer.train_dataset[i] for i in range(4)]))
        with torch.no_grad():
            losses[method] = float(trainer.compute_loss(trainer.model, batch))
    assert losses["span"] == pytest.approx(losses[None], rel=1e-5)


def test_conversational_rows_use_each_models_own_chat_template(tmp_path, tokenizer, teacher_tokenizer):
    teacher_tokenizer = teacher_tokenizer.__class__.from_pretrained(_saved(teacher_tokenizer, tmp_path))
    teacher_tokenizer.chat_template = "{% for m in messages %}[{{ m['role'] }}]: {{ m['content'] }}\n{% endfor %}" \
                                      "{% if add_generation_prompt %}[assistant]:{% endif %}"
    data = tiny.conversational_prompt_completion_dataset(2)
    trainer = _trainer(tmp_path, tokenizer, teacher_tokenizer, "uld", data=data)
    row = trainer.train_dataset[0]
    prompt, completion = data[0]["prompt"], data[0]["completion"][0]["content"]
    teacher_prompt = teacher_tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
    assert teacher_tokenizer.decode(row["teacher_input_ids"]) == teacher_prompt + completion + "<eos>"
    student_prompt = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
    assert tokenizer.decode(row["input_ids"]) == student_prompt + completion + "<eos>"


def _saved(tok, tmp_path):
    tok.save_pretrained(tmp_path / "teacher_tokenizer")
    return tmp_path / "teacher_tokenizer"


def test_provenance_and_card_say_distilled_across_tokenizers(tmp_path, tokenizer, teacher_tokenizer):
    trainer = _trainer(tmp_path, tokenizer, teacher_tokenizer, "span")
    trainer.save_model()
    record = json.loads((tmp_path / "out" / "distillation_provenance.json").read_text())["cross_tokenizer"]
    assert record["method"] == "span"
    assert record["student_tokenizer"]["sha256"] == tokenizer_hash(tokenizer)
    assert record["teacher_tokenizer"]["sha256"] == tokenizer_hash(teacher_tokenizer)
    assert tokenizer_hash(tokenizer) != tokenizer_hash(teacher_tokenizer)
    card = trainer.create_model_card().content
    assert "distilled across tokenizers (`span`)" in card
    assert tokenizer_hash(teacher_tokenizer) in card and "cross-tokenizer" in card


@pytest.mark.real_model
@pytest.mark.parametrize("method", ["uld", "span"])
def test_real_tokenizers_first_loss_equals_the_reference(tmp_path, method):
    """A SmolLM2-tokenizer student (49,152) and a Gemma-3-tokenizer teacher (262,144), tiny random models of those
    vocabularies: the first step's loss equals the float64 reference, on text with emoji, CJK and numbers."""
    from datasets import Dataset
    from transformers import AutoTokenizer

    from tests.real_checkpoints import CHECKPOINTS, tokenizer_folder

    student_tokenizer = AutoTokenizer.from_pretrained(tokenizer_folder(CHECKPOINTS["smollm2-135m-instruct"]))
    teacher_tokenizer = AutoTokenizer.from_pretrained(tokenizer_folder(CHECKPOINTS["gemma-3-270m"]))
    data = Dataset.from_dict({
        "prompt": ["Question: what is 12345 plus 1?", "Say hello in Japanese."],
        "completion": [" 12346, or 1.2346e4 🤗", " こんにちは  (konnichiwa)\n\nDone."],
    })
    student = tiny.ModelFactory(student_tokenizer)("llama", hidden=16, layers=1, seed=0)
    teacher = tiny.ModelFactory(teacher_tokenizer)("llama", hidden=16, layers=1, seed=1).eval()
    trainer = DistillationTrainer(model=student, teacher_model=teacher, args=_args(tmp_path, method),
                                  train_dataset=data, processing_class=student_tokenizer,
                                  teacher_processing_class=teacher_tokenizer)
    batch = trainer._prepare_inputs(trainer.data_collator([trainer.train_dataset[i] for i in range(2)]))
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, batch)
    expected = _reference_loss(trainer, student_tokenizer, teacher_tokenizer, data, method)
    assert float(loss) == pytest.approx(expected, rel=1e-5)
