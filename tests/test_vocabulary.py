"""The vocabulary rule (`hf_distill.vocabulary`): which teacher is accepted, how its tokenizer is found (Hub ids and
folders without tokenizer files, from an empty cache), and over which rows the loss runs when both models pad their
embeddings. References are the models' own `model(...).logits` in float64."""

import json
from pathlib import Path

import pytest
import torch

from hf_distill import DistillationConfig, DistillationTrainer
from hf_distill.benchmark import benchmark
from hf_distill.data import cache_teacher_logits
from hf_distill.offline.teacher import load_offline_teacher
from hf_distill.vocabulary import (
    MissingTokenizerError,
    VocabularyMismatchError,
    check_shared_vocabulary,
    find_tokenizer,
    padded_sizes,
    same_tokenization,
)
from tests import tiny

FIX = r".*teacher_processing_class=.*hf-distill generate"  # the message names both ways out


def _args(tmp_path, **kwargs):
    defaults = dict(output_dir=str(tmp_path), report_to="none", save_strategy="no", max_steps=1,
                    per_device_train_batch_size=4, learning_rate=1e-3, max_length=64, seed=0, alpha=1.0)
    return DistillationConfig(**{**defaults, **kwargs})


def _trainer(tmp_path, student, teacher, tokenizer, *, dataset=None, **kwargs):
    args = _args(tmp_path, **{k: v for k, v in kwargs.items() if k != "teacher_processing_class"})
    extra = {k: v for k, v in kwargs.items() if k == "teacher_processing_class"}
    return DistillationTrainer(model=student, teacher_model=teacher, args=args, processing_class=tokenizer,
                               train_dataset=dataset if dataset is not None else tiny.text_dataset(4), **extra)


@pytest.fixture(scope="module")
def byte_tokenizer():
    """Byte-level, no merges: the 256 bytes and the special tokens."""
    return tiny.build_tokenizer(vocab_size=263)


@pytest.fixture(scope="module")
def bpe_tokenizer():
    """Trained on the same text with 141 merges: every byte-level token keeps its id, yet text splits otherwise."""
    return tiny.build_tokenizer(vocab_size=263 + 141)


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    """A Hugging Face cache with nothing in it, as on a fresh machine."""
    from huggingface_hub import constants

    cache = tmp_path / "hf_cache"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def _files(folder) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in Path(folder).iterdir()}


# -- item 2: the teacher's tokenizer is found like the model ---------------------------------------------------------


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gemma2"])
def test_hub_teacher_tokenizer_is_fetched_from_an_empty_cache(arch, hub_server, empty_cache, model_factory, tokenizer,
                                                              tmp_path):
    hub_server.seed_repo("acme/tiny-teacher", _files(model_factory.save(tmp_path / "teacher", arch, hidden=48)))
    trainer = _trainer(tmp_path / "out", model_factory("llama", seed=1), "acme/tiny-teacher", tokenizer)
    found = trainer.teacher.teacher_tokenizer  # Qwen2's class adds <|endoftext|>: a teacher may add tokens
    assert found is not None and found.get_vocab().items() >= tokenizer.get_vocab().items()
    assert hub_server.calls("GET", r"^/acme/tiny-teacher/resolve/[^/]+/tokenizer\.json$")
    assert trainer.student_head.vocab_size == trainer.teacher.head.vocab_size == len(tokenizer)


def test_hub_teacher_tokenizer_follows_revision_and_cache_dir(hub_server, empty_cache, model_factory, tokenizer,
                                                              other_tokenizer, tmp_path):
    # The first commit holds the student's tokenizer; main then replaces it with another one of the same size.
    first = hub_server.seed_repo("acme/tiny-teacher", _files(model_factory.save(tmp_path / "teacher", "qwen2")))
    other_tokenizer.save_pretrained(tmp_path / "other")
    hub_server.seed_repo("acme/tiny-teacher", _files(tmp_path / "other"))
    with pytest.raises(VocabularyMismatchError, match="does not match the student's.*other token ids"):
        _trainer(tmp_path / "out", model_factory("llama", seed=1), "acme/tiny-teacher", tokenizer)
    cache_dir = tmp_path / "own_cache"
    trainer = _trainer(tmp_path / "out", model_factory("llama", seed=1), "acme/tiny-teacher", tokenizer,
                       teacher_model_init_kwargs={"revision": first, "cache_dir": str(cache_dir)})
    assert trainer.teacher.teacher_tokenizer.get_vocab().items() >= tokenizer.get_vocab().items()
    assert list(cache_dir.rglob(f"snapshots/{first}/tokenizer.json"))


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gemma2"])
def test_teacher_folder_without_tokenizer_files(arch, model_factory, tokenizer, tmp_path):
    # What `save_pretrained` of a (for instance 8-bit) teacher writes: the model's files only.
    model_factory(arch, hidden=48, seed=2).save_pretrained(tmp_path / "teacher")
    trainer = _trainer(tmp_path / "out", model_factory("llama", seed=1), str(tmp_path / "teacher"), tokenizer)
    assert trainer.teacher.teacher_tokenizer is None  # the 1-token (Qwen2) / 5-token (Gemma) stand-in is not trusted
    assert trainer.student_head.vocab_size == trainer.teacher.head.vocab_size == len(tokenizer)
    assert find_tokenizer(tmp_path / "teacher") is None


def test_folder_without_tokenizer_of_another_size_is_refused(model_factory, tokenizer, tmp_path):
    model_factory("qwen2", hidden=48, vocab_size=len(tokenizer) + 66).save_pretrained(tmp_path / "teacher")
    with pytest.raises(VocabularyMismatchError, match=r"(?s)450 embedding rows, where the student's tokenizer of "
                                                      r"384 tokens pads to 384" + FIX):
        _trainer(tmp_path, model_factory("llama", seed=1), str(tmp_path / "teacher"), tokenizer)


def test_offline_teacher_without_tokenizer_files_is_named(model_factory, tmp_path):
    model_factory("qwen2", hidden=48).save_pretrained(tmp_path / "teacher")
    with pytest.raises(MissingTokenizerError, match="No tokenizer is stored with the teacher.*`tokenizer=`, --tokeni"):
        load_offline_teacher(str(tmp_path / "teacher"))


# -- item 3: a teacher with another tokenizer is refused -----------------------------------------------------------


def test_in_memory_teacher_of_a_bigger_tokenizer_is_refused(model_factory, tokenizer, tmp_path):
    bigger = tiny.build_tokenizer(vocab_size=450)
    match = rf"(?s)tokenizer could not be found.*{len(bigger)} embedding rows{FIX}"
    with pytest.raises(VocabularyMismatchError, match=match):
        _trainer(tmp_path, model_factory("llama", seed=1), tiny.ModelFactory(bigger)("llama", hidden=48), tokenizer)


def test_padding_is_a_round_up_to_64_or_128(tmp_path):
    tokenizer = tiny.build_tokenizer(vocab_size=300)
    assert len(tokenizer) == 300 and padded_sizes(300) == {300, 320, 384}
    factory = tiny.ModelFactory(tokenizer)
    for rows in (320, 384):
        trainer = _trainer(tmp_path, factory("llama", seed=1), factory("llama", vocab_size=rows), tokenizer)
        assert trainer.student_head.vocab_size == trainer.teacher.head.vocab_size == 300
    for rows in (330, 448):  # larger, but no checkpoint pads 300 tokens to it
        with pytest.raises(VocabularyMismatchError, match=f"(?s)the teacher has {rows} embedding rows{FIX}"):
            _trainer(tmp_path, factory("llama", seed=1), factory("llama", vocab_size=rows), tokenizer)
    teacher = factory("llama")
    teacher.config.eos_token_id = 100  # an ordinary token of the student's tokenizer
    with pytest.raises(VocabularyMismatchError, match=r"special-token ids \[100\] that are no special tokens"):
        _trainer(tmp_path, factory("llama", seed=1), teacher, tokenizer)


def test_byte_level_student_and_bpe_teacher_are_refused(byte_tokenizer, bpe_tokenizer, tmp_path):
    assert all(bpe_tokenizer.get_vocab()[token] == index for token, index in byte_tokenizer.get_vocab().items())
    text = tiny.CORPUS[0]
    assert byte_tokenizer(text)["input_ids"] != bpe_tokenizer(text)["input_ids"]
    teacher = tiny.ModelFactory(bpe_tokenizer)("llama", hidden=48)
    with pytest.raises(VocabularyMismatchError, match="does not match the student's.*other token ids" + FIX):
        _trainer(tmp_path, tiny.ModelFactory(byte_tokenizer)("llama"), teacher, byte_tokenizer,
                 teacher_processing_class=bpe_tokenizer)


def test_teacher_tokenizer_may_add_tokens(tokenizer, model_factory, tmp_path):
    teacher_tokenizer = tiny.build_tokenizer()
    teacher_tokenizer.add_tokens(["<tool_call>", "</tool_call>"], special_tokens=True)
    teacher = model_factory("llama", hidden=48, vocab_size=len(teacher_tokenizer))
    trainer = _trainer(tmp_path, model_factory("llama", seed=1), teacher, tokenizer,
                       teacher_processing_class=teacher_tokenizer)
    assert trainer.student_head.vocab_size == trainer.teacher.head.vocab_size == len(tokenizer)
    # The other way round, the student's added token would mean nothing to the teacher.
    assert not same_tokenization(teacher_tokenizer, tokenizer)


def test_same_ids_on_the_training_text_prove_the_same_tokenization(byte_tokenizer, bpe_tokenizer, tokenizer):
    # Another tokenizer definition (a normalizer that changes nothing in this text) splits this text the same way.
    from tokenizers import normalizers

    relabelled = tiny.build_tokenizer()
    relabelled.backend_tokenizer.normalizer = normalizers.Replace("\u00a0", " ")
    assert not same_tokenization(tokenizer, relabelled)
    assert same_tokenization(tokenizer, relabelled, texts=tiny.CORPUS[:8])
    assert not same_tokenization(byte_tokenizer, bpe_tokenizer, texts=tiny.CORPUS[:8])
    with pytest.raises(VocabularyMismatchError, match=r"teacher's vocabulary \(300 embedding rows\) is smaller"):
        check_shared_vocabulary(tokenizer, student_rows=384, teacher_rows=300, teacher_tokenizer=tokenizer)


def test_cache_refuses_a_teacher_of_another_tokenizer(tokenizer, other_tokenizer, tmp_path):
    teacher = tiny.ModelFactory(other_tokenizer).save(tmp_path / "teacher", "llama", hidden=32)
    with pytest.raises(VocabularyMismatchError, match="does not match the student's.*other token ids"):
        cache_teacher_logits(teacher, tiny.text_dataset(2), tokenizer=tokenizer, output_dir=tmp_path / "cache")


def test_cache_compares_tokenizers_on_the_data(model_factory, tokenizer, tmp_path):
    # transformers loads the tokenizer of a qwen2 folder as a Qwen2Tokenizer (NFC normalizer, Qwen's split): another
    # definition, which splits this data exactly as the student's does.
    teacher = model_factory.save(tmp_path / "teacher", "qwen2", hidden=32)
    assert not same_tokenization(tokenizer, find_tokenizer(teacher))
    cached = cache_teacher_logits(teacher, tiny.text_dataset(2), tokenizer=tokenizer, output_dir=tmp_path / "cache",
                                  top_k=4)
    assert len(cached) == 2


# -- item 4: both vocabularies padded --------------------------------------------------------------------------------


def _trained_positions(tokenizer, texts, seq_len):
    """Positions `(rows, seq_len - 1)` that predict a token of the row (its text and the appended eos), counted from
    the tokenizer alone."""
    mask = torch.zeros(len(texts), seq_len - 1, dtype=torch.bool)
    for row, text in enumerate(texts):
        mask[row, : len(tokenizer(text)["input_ids"])] = True  # n text tokens + eos: n positions predict one
    return mask


def _kd_reference(student, teacher, input_ids, attention_mask, mask, num_tokens):
    """Forward KL(p_teacher || p_student) per trained position, float64, over the first `num_tokens` logits."""
    with torch.no_grad():
        inputs = dict(input_ids=input_ids, attention_mask=attention_mask)
        student_log_probs = student(**inputs).logits[:, :-1, :num_tokens].double().log_softmax(-1)[mask]
        teacher_log_probs = teacher(**inputs).logits[:, :-1, :num_tokens].double().log_softmax(-1)[mask]
    return (teacher_log_probs.exp() * (teacher_log_probs - student_log_probs)).sum(-1).mean()


def _with_live_padding(model, num_tokens, seed):
    """Give the rows beyond the tokenizer weights of their own, so that leaving them in a softmax shows."""
    generator = torch.Generator().manual_seed(seed)
    weight = model.get_output_embeddings().weight
    with torch.no_grad():
        weight[num_tokens:] = torch.randn(weight[num_tokens:].shape, generator=generator) / 4
    return model


def _first_batch(trainer):
    return trainer._prepare_inputs(trainer.data_collator([trainer.train_dataset[i] for i in range(4)]))


@pytest.mark.parametrize("path", ["fused", "dense", "cached"])
def test_both_padded_vocabularies_are_cut_to_the_tokenizer(path, tokenizer, model_factory, tmp_path):
    num_tokens = len(tokenizer)
    student = _with_live_padding(model_factory("llama", seed=1, vocab_size=num_tokens + 16), num_tokens, seed=3)
    teacher = _with_live_padding(model_factory("llama", hidden=48, seed=2, vocab_size=num_tokens + 40), num_tokens, 4)
    dataset = tiny.text_dataset(4)
    if path == "cached":
        data = cache_teacher_logits(teacher, dataset, tokenizer=tokenizer, output_dir=tmp_path / "cache",
                                    top_k=num_tokens)
        trainer = _trainer(tmp_path, student, None, tokenizer, dataset=data)
    else:
        trainer = _trainer(tmp_path, student, teacher, tokenizer, dataset=dataset,
                           teacher_processing_class=tokenizer, use_fused_kd_loss=path == "fused")
    batch = _first_batch(trainer)
    mask = _trained_positions(tokenizer, dataset["text"], batch["input_ids"].shape[1])
    reference = _kd_reference(student, teacher, batch["input_ids"], batch["attention_mask"], mask, num_tokens)
    over_student_rows = _kd_reference(student, teacher, batch["input_ids"], batch["attention_mask"], mask,
                                      num_tokens + 16)
    loss = trainer.compute_loss(trainer.model, dict(batch)).double()
    # The cache's encoding costs at most k / (6 * 384**2) nats per position; the padded rows cost far more.
    tolerance = 5e-4 if path == "cached" else 1e-5
    assert abs(reference - over_student_rows) > 20 * tolerance
    assert loss.item() == pytest.approx(reference.item(), abs=tolerance)


# -- the benchmark uses the same rule -------------------------------------------------------------------------------


def test_benchmark_fidelity_follows_the_training_rule(model_factory, tokenizer, byte_tokenizer, bpe_tokenizer):
    run = dict(task_metrics=("exact_match",), max_new_tokens=2, batch_sizes=(1,), num_latency_runs=1)
    teacher_tokenizer = tiny.build_tokenizer()
    teacher_tokenizer.add_tokens(["<tool_call>"], special_tokens=True)
    teacher = model_factory("llama", hidden=48, seed=3, vocab_size=len(teacher_tokenizer))
    report = benchmark(model_factory("llama"), teacher, tiny.prompt_completion_dataset(3), tokenizer=tokenizer,
                       teacher_tokenizer=teacher_tokenizer, **run)
    assert report.student.fidelity is not None  # training accepts this teacher, so fidelity is measured
    bpe_teacher = tiny.ModelFactory(bpe_tokenizer)("llama", hidden=48)
    report = benchmark(tiny.ModelFactory(byte_tokenizer)("llama"), bpe_teacher, tiny.prompt_completion_dataset(3),
                       tokenizer=byte_tokenizer, teacher_tokenizer=bpe_tokenizer, **run)
    assert report.student.fidelity is None


def test_benchmark_teacher_without_a_tokenizer_is_checked_like_in_training(model_factory, tokenizer):
    run = dict(task_metrics=("exact_match",), max_new_tokens=2, batch_sizes=(1,), num_latency_runs=1)
    data = tiny.prompt_completion_dataset(3)
    fitting = benchmark(model_factory("llama"), model_factory("llama", hidden=48), data, tokenizer=tokenizer, **run)
    assert fitting.student.fidelity is not None
    # 8 extra rows is no 64/128 round-up of 384 tokens: training refuses this teacher, so no fidelity either.
    teacher = model_factory("llama", hidden=48, vocab_size=len(tokenizer) + 8)
    assert benchmark(model_factory("llama"), teacher, data, tokenizer=tokenizer, **run).student.fidelity is None


def test_tokenizer_saved_without_config_is_checked_alone(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert find_tokenizer(tmp_path).get_vocab() == tokenizer.get_vocab()
