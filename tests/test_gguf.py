"""GGUF checkpoints as teachers and students: a tiny Llama written as a Q8_0 GGUF file here (`tests/tiny_gguf.py`,
llama.cpp's layout), loaded by every hf_distill entry point that loads a model, with its tokenizer from the file and
the file's SHA-256 and quantisation type in the provenance and card."""

from __future__ import annotations

import collections
import hashlib
import json
from types import SimpleNamespace

import pytest
import torch
from datasets import load_from_disk

from hf_distill import DistillationConfig, DistillationTrainer
from hf_distill.cli import main
from hf_distill.data import cache_teacher_logits, generate_completions
from hf_distill.formats.cache import CacheInfo
from hf_distill.gguf import GgufFileError, convert_gguf
from hf_distill.publish.card import build_model_card
from hf_distill.publish.provenance import Provenance
from hf_distill.teachers.local_model import LocalModelTeacher, load_teacher_model
from tests import tiny

pytest.importorskip("gguf")
from tests.tiny_gguf import quantized_copy, write_llama_gguf  # noqa: E402

FILE = "teacher.Q8_0.gguf"


@pytest.fixture(scope="module")
def tokenizer():
    """The tiny tokenizer with `<|endoftext|>`, as GPT-2-style GGUF vocabularies have it: transformers' GGUF reader
    adds that token when a byte-level file lacks it, which would give the file's tokenizer a token the tiny model has
    no row for (the vocabulary rule rightly refuses that)."""
    tokenizer = tiny.build_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|endoftext|>"]})
    return tokenizer


@pytest.fixture(scope="module")
def model_factory(tokenizer):
    return tiny.ModelFactory(tokenizer)


@pytest.fixture(scope="module")
def gguf_teacher(tmp_path_factory, tokenizer, model_factory):
    """The GGUF folder, and a plain model holding the weights a loader must return (the Q8_0 round trip)."""
    folder = tmp_path_factory.mktemp("gguf_teacher")
    model = model_factory("llama", hidden=32, layers=2, seed=3)
    path = write_llama_gguf(model, tokenizer, folder / FILE)
    reference = model_factory("llama", hidden=32, layers=2, seed=3)
    reference.load_state_dict(quantized_copy(model))
    return SimpleNamespace(folder=str(folder), path=path, reference=reference.eval())


def _args(tmp_path, **kwargs):
    defaults = dict(output_dir=str(tmp_path / "out"), report_to="none", save_strategy="no", max_steps=1,
                    per_device_train_batch_size=2, max_length=64, seed=0)
    return DistillationConfig(**{**defaults, **kwargs})


def test_gguf_teacher_loads_dequantised_weights_and_records_the_file(gguf_teacher):
    teacher = load_teacher_model(gguf_teacher.folder, {"gguf_file": FILE})
    expected = gguf_teacher.reference.state_dict()
    assert teacher.state_dict().keys() == expected.keys()
    assert all(torch.equal(teacher.state_dict()[k].float(), v) for k, v in expected.items())
    source = teacher.gguf_source
    assert source.sha256 == hashlib.sha256(gguf_teacher.path.read_bytes()).hexdigest()
    dims = collections.Counter("Q8_0" if t.dim() == 2 else "F32" for t in expected.values())
    assert (source.file_name, source.file_type, source.tensor_types) == (FILE, "MOSTLY_Q8_0", dict(dims))
    assert getattr(teacher.config, "quantization_config", None) is None  # plain floats: no GGUF marker left


def test_gguf_teacher_tokenizer_comes_from_the_file(gguf_teacher, tokenizer):
    teacher_tokenizer = LocalModelTeacher(gguf_teacher.folder, {"gguf_file": FILE}).teacher_tokenizer
    text = tiny.CORPUS[5]
    assert teacher_tokenizer(text).input_ids == tokenizer(text).input_ids
    messages = [{"role": "user", "content": "what is 2 add 3"}, {"role": "assistant", "content": "5"}]
    assert teacher_tokenizer.apply_chat_template(messages, tokenize=False) == tokenizer.apply_chat_template(
        messages, tokenize=False
    )


def test_gguf_online_teacher_trains_like_its_dequantised_weights_and_is_carded(
    gguf_teacher, tokenizer, model_factory, tmp_path
):
    def first_loss(teacher, **kwargs):
        trainer = DistillationTrainer(
            model=model_factory("llama", hidden=16, layers=1), teacher_model=teacher, processing_class=tokenizer,
            args=_args(tmp_path, **kwargs), train_dataset=tiny.prompt_completion_dataset(4),
        )
        batch = trainer._prepare_inputs(trainer.data_collator([trainer.train_dataset[i] for i in range(2)]))
        return trainer, trainer.compute_loss(trainer.model, batch).item()

    trainer, loss = first_loss(gguf_teacher.folder, teacher_model_init_kwargs={"gguf_file": FILE})
    _, reference_loss = first_loss(gguf_teacher.reference)
    assert loss == pytest.approx(reference_loss, rel=1e-6)
    trainer.train()
    trainer.save_model()
    provenance = json.loads((tmp_path / "out" / "distillation_provenance.json").read_text())
    gguf = provenance["teacher"]["details"]["gguf"]
    assert gguf["sha256"] == hashlib.sha256(gguf_teacher.path.read_bytes()).hexdigest()
    assert gguf["file_type"] == "MOSTLY_Q8_0"
    card = str(build_model_card(Provenance.load(tmp_path / "out")))
    assert f"dequantised from the GGUF file `{FILE}` (MOSTLY_Q8_0, sha256 `{gguf['sha256']}`)" in card


def test_gguf_student_is_dequantised_and_trains(gguf_teacher, tokenizer, model_factory, tmp_path):
    """A GGUF student is dequantised before TRL sees it (a model with the GGUF quantizer attached cannot train).
    The tokenizer is passed: transformers appends `<|endoftext|>` as the unknown token to a GGUF gpt2 vocabulary
    that lacks one (real files have it), which the tiny model has no row for."""
    trainer = DistillationTrainer(
        model=gguf_teacher.folder, teacher_model=model_factory("llama", hidden=16, layers=1).eval(),
        args=_args(tmp_path, model_init_kwargs={"gguf_file": FILE}), train_dataset=tiny.prompt_completion_dataset(4),
        processing_class=tokenizer,
    )
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    assert all(torch.equal(before[k], v) for k, v in gguf_teacher.reference.state_dict().items())
    trainer.train()
    assert any(not torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())


def test_gguf_teacher_through_the_cli(gguf_teacher, tmp_path):
    data = tmp_path / "data"
    tiny.prompt_completion_dataset(4).save_to_disk(str(data))
    out = tmp_path / "cli"
    argv = ["generate", "--teacher", gguf_teacher.folder, "--dataset_name", str(data), "--output_dir", str(out),
            "--max_new_tokens", "4", "--temperature", "0",
            "--teacher_model_init_kwargs", json.dumps({"gguf_file": FILE})]
    assert main(argv) == 0
    assert load_from_disk(str(out))[0]["teacher_revision"].startswith("sha256:")
    cached = tmp_path / "cached"
    argv = ["cache-logits", "--teacher", gguf_teacher.folder, "--dataset_name", str(data), "--output_dir",
            str(cached), "--top_k", "4", "--teacher_model_init_kwargs", json.dumps({"gguf_file": FILE})]
    assert main(argv) == 0
    info = CacheInfo.from_json(load_from_disk(str(cached)).info.description)
    assert info.teacher_gguf["sha256"] == hashlib.sha256(gguf_teacher.path.read_bytes()).hexdigest()


def test_generate_completions_from_gguf_equals_the_dequantised_model(gguf_teacher, tokenizer, tmp_path):
    prompts = tiny.prompt_completion_dataset(4).remove_columns("completion")
    settings = dict(max_new_tokens=6, temperature=0.0, batch_size=2)
    from_gguf = generate_completions(gguf_teacher.folder, prompts, output_dir=tmp_path / "a",
                                     model_kwargs={"gguf_file": FILE}, **settings)  # tokenizer read from the file
    reference = generate_completions(gguf_teacher.reference, prompts, tokenizer=tokenizer, output_dir=tmp_path / "b",
                                     **settings)
    assert from_gguf["completion"] == reference["completion"]
    assert from_gguf["teacher_revision"] == reference["teacher_revision"]  # same parameters, same hash
    assert "teacher_gguf" in (tmp_path / "a" / "README.md").read_text()


def test_cached_logits_from_gguf_equal_the_dequantised_model_and_reach_the_card(
    gguf_teacher, tokenizer, model_factory, tmp_path
):
    data = tiny.prompt_completion_dataset(4)
    from_gguf = cache_teacher_logits(gguf_teacher.folder, data, tokenizer=tokenizer, output_dir=tmp_path / "a",
                                     top_k=8, model_kwargs={"gguf_file": FILE})
    reference = cache_teacher_logits(gguf_teacher.reference, data, tokenizer=tokenizer, output_dir=tmp_path / "b",
                                     top_k=8)
    assert from_gguf["teacher_topk"] == reference["teacher_topk"]
    trainer = DistillationTrainer(model=model_factory("llama", hidden=16, layers=1), args=_args(tmp_path),
                                  train_dataset=from_gguf, processing_class=tokenizer)
    trainer.train()
    trainer.save_model()
    card = str(build_model_card(Provenance.load(tmp_path / "out")))
    assert f"dequantised from the GGUF file `{FILE}`" in card


def test_convert_gguf_writes_a_safetensors_folder_that_loads_without_the_file(gguf_teacher, tmp_path):
    folder = convert_gguf(gguf_teacher.folder, FILE, tmp_path / "converted")
    assert not any(folder.glob("*.gguf")) and (folder / "model.safetensors").is_file()
    teacher = load_teacher_model(folder)
    assert all(torch.equal(teacher.state_dict()[k], v) for k, v in gguf_teacher.reference.state_dict().items())
    assert teacher.config.gguf_source["sha256"] == hashlib.sha256(gguf_teacher.path.read_bytes()).hexdigest()


def test_a_missing_gguf_file_is_named_before_loading(gguf_teacher):
    with pytest.raises(GgufFileError, match=r"`gguf_file` 'missing.Q4_K_M.gguf' is not in .*\['teacher.Q8_0.gguf'\]"):
        load_teacher_model(gguf_teacher.folder, {"gguf_file": "missing.Q4_K_M.gguf"})
