"""Independent float64 references for the trainer's loss and metrics: token ids from the tokenizer (not from the
trainer's dataset or collator), logits from plain `model(...).logits`, one row at a time (no padding, no packing),
and forward KL / cross-entropy written from their definitions."""

from __future__ import annotations

import torch


def prompt_completion_rows(tokenizer, dataset) -> list[tuple[list[int], int]]:
    """`(token ids, prompt length)` of each prompt/completion row, tokenized as SFT does: the completion gets an EOS
    and only its tokens are trained on."""
    rows = []
    for prompt, completion in zip(dataset["prompt"], dataset["completion"], strict=True):
        prompt_ids = tokenizer(prompt)["input_ids"]
        ids = tokenizer(prompt + completion + tokenizer.eos_token)["input_ids"]
        assert ids[: len(prompt_ids)] == prompt_ids, "the prompt's tokens must be a prefix of the row's"
        rows.append((ids, len(prompt_ids)))
    return rows


def text_rows(tokenizer, dataset) -> list[tuple[list[int], int]]:
    """`(token ids, 0)` of each plain-text row with its EOS: every token is trained on."""
    return [(tokenizer(text + tokenizer.eos_token)["input_ids"], 0) for text in dataset["text"]]


def _per_token(student, teacher, ids: list[int], first_target: int, temperature: float):
    """Forward KL, cross-entropy, teacher-argmax agreement and label accuracy at each trained position of one row."""
    input_ids = torch.tensor([ids])
    student_logits = student(input_ids=input_ids).logits[0, :-1].double()
    with torch.no_grad():
        teacher_logits = teacher(input_ids=input_ids).logits[0, :-1].double()
    targets = torch.tensor(ids[1:])
    keep = torch.arange(1, len(ids)) >= max(first_target, 1)  # position i predicts token i + 1
    student_logits, teacher_logits, targets = student_logits[keep], teacher_logits[keep], targets[keep]
    p_teacher = torch.softmax(teacher_logits / temperature, -1)
    log_p_student_t = torch.log_softmax(student_logits / temperature, -1)
    kd = (p_teacher * (torch.log(p_teacher) - log_p_student_t)).sum(-1)
    ce = -torch.log_softmax(student_logits, -1).gather(-1, targets[:, None]).squeeze(-1)
    top1 = student_logits.argmax(-1)
    return kd, ce, (top1 == teacher_logits.argmax(-1)).double(), (top1 == targets).double()


def reference_sums(student, teacher, rows, *, alpha: float, temperature: float = 1.0) -> dict:
    """Token sums over `rows` (differentiable in the student's weights): `loss`, `kd`, `ce`, `agreement`,
    `accuracy`, and `count` (trained positions)."""
    sums = dict(kd=0.0, ce=0.0, agreement=0.0, accuracy=0.0, count=0)
    for ids, prompt_length in rows:
        kd, ce, agree, correct = _per_token(student, teacher, ids, prompt_length, temperature)
        sums["kd"] = sums["kd"] + kd.sum()
        sums["ce"] = sums["ce"] + ce.sum()
        sums["agreement"] += float(agree.sum())
        sums["accuracy"] += float(correct.sum())
        sums["count"] += kd.numel()
    sums["loss"] = alpha * sums["kd"] + (1 - alpha) * sums["ce"]
    return sums


def reference_means(student, teacher, rows, *, alpha: float, temperature: float = 1.0) -> dict[str, float]:
    """Token-weighted means over every trained position of `rows`, keyed like the trainer's logs."""
    with torch.no_grad():
        sums = reference_sums(student, teacher, rows, alpha=alpha, temperature=temperature)
    count = sums["count"]
    return {
        "loss": float(sums["loss"]) / count,
        "kd_loss": float(sums["kd"]) / count,
        "ce_loss": float(sums["ce"]) / count,
        "teacher_agreement": sums["agreement"] / count,
        "mean_token_accuracy": sums["accuracy"] / count,
    }
