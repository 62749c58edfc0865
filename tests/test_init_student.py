"""`init_student` / `hf-distill init-student`: a shallower copy of the teacher whose layers, embeddings, norm and
head are the teacher's own tensors, bit for bit; its layer map in config, provenance and card."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer

from hf_distill import DistillationConfig, DistillationTrainer
from hf_distill.cli import main
from hf_distill.publish.card import build_model_card, check_card
from hf_distill.publish.provenance import Provenance
from hf_distill.students import StudentInitError, init_student
from hf_distill.students.layers import decoder_layers
from tests import tiny

# (strategy, teacher layers, student layers, the teacher layers kept, written out by hand)
LAYER_MAPS = [
    ("every_other", 6, None, [0, 2, 4]),
    ("every_other", 5, 3, [0, 2, 4]),
    ("uniform", 6, 3, [0, 2, 5]),  # 0, 2.5 -> 2 (round half to even), 5
    ("uniform", 7, 4, [0, 2, 4, 6]),
    ("first", 6, 2, [0, 1]),
    ("last", 6, 2, [4, 5]),
]


def _layer_tensors(model, index):
    prefix, layers = decoder_layers(model, model.config.num_hidden_layers)
    return dict(layers[index].state_dict())


def _outside_layers(model):
    prefix, _ = decoder_layers(model, model.config.num_hidden_layers)
    return {k: v for k, v in model.state_dict().items() if not k.startswith(prefix + ".")}


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gemma2", "gpt2"])
@pytest.mark.parametrize(("strategy", "teacher_layers", "num_layers", "kept"), LAYER_MAPS)
def test_student_layers_are_the_teachers_chosen_layers_bit_for_bit(
    model_factory, arch, strategy, teacher_layers, num_layers, kept
):
    teacher = model_factory(arch, layers=teacher_layers, seed=4)
    student = init_student(teacher, num_layers=num_layers, strategy=strategy)
    assert type(student) is type(teacher) and student.config.num_hidden_layers == len(kept)
    assert student.config.student_init["layer_map"] == kept
    for student_index, teacher_index in enumerate(kept):
        ours, theirs = _layer_tensors(student, student_index), _layer_tensors(teacher, teacher_index)
        assert ours.keys() == theirs.keys()
        assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
    ours, theirs = _outside_layers(student), _outside_layers(teacher)  # embeddings, final norm, head
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in theirs)


def test_every_layer_kept_gives_the_teachers_logits(model_factory, tokenizer):
    teacher = model_factory("gemma2", layers=3, seed=5).eval()
    student = init_student(teacher, num_layers=3, strategy="first").eval()
    ids = tokenizer(tiny.CORPUS[:2], return_tensors="pt", padding=True)
    assert torch.equal(student(**ids).logits, teacher(**ids).logits)


def test_per_layer_config_fields_follow_the_layers(model_factory):
    teacher = model_factory("gemma2", layers=4, seed=5)  # alternating sliding / full attention
    student = init_student(teacher, strategy="every_other")
    assert student.config.layer_types == [teacher.config.layer_types[0], teacher.config.layer_types[2]]
    assert student.config.layer_types != teacher.config.layer_types[:2]  # not merely truncated


def test_tied_embeddings_stay_tied(model_factory):
    teacher = model_factory("gpt2", layers=4, seed=6)
    assert teacher.config.tie_word_embeddings
    student = init_student(teacher)
    assert student.lm_head.weight.data_ptr() == student.transformer.wte.weight.data_ptr()
    with torch.no_grad():
        student.transformer.wte.weight[0, 0] += 1.0  # one tensor, not two copies
    assert torch.equal(student.lm_head.weight, student.transformer.wte.weight)


def test_teacher_passed_in_is_left_as_it_was(model_factory):
    teacher = model_factory("llama", layers=4).train()
    init_student(teacher)
    assert teacher.training and all(p.requires_grad for p in teacher.parameters())


def test_saved_student_reloads_generates_and_records_its_origin(model_factory, tokenizer, tmp_path):
    teacher_dir = model_factory.save(tmp_path / "teacher", "llama", layers=4, seed=7)
    student = init_student(teacher_dir, num_layers=2, strategy="uniform", output_dir=tmp_path / "student").eval()
    folder = tmp_path / "student"
    config = json.loads((folder / "config.json").read_text())
    assert config["num_hidden_layers"] == 2
    assert config["student_init"] == {"teacher": "teacher", "strategy": "uniform", "teacher_num_layers": 4,
                                      "layer_map": [0, 3]}
    record = json.loads((folder / "student_init.json").read_text())
    assert record["layer_map"] == [0, 3] and record["teacher_record"]["kind"] == "local"
    assert record["num_parameters"] == sum(p.numel() for p in student.parameters())
    reloaded = AutoModelForCausalLM.from_pretrained(folder).eval()
    loaded_tokenizer = AutoTokenizer.from_pretrained(folder)
    assert loaded_tokenizer.get_vocab() == tokenizer.get_vocab()
    ids = tokenizer(["the cat sat"], return_tensors="pt")
    assert torch.equal(reloaded(**ids).logits, student(**ids).logits)
    out = reloaded.generate(**ids, max_new_tokens=5, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert out.shape == (1, ids["input_ids"].shape[1] + 5)


def test_card_names_the_hub_teacher_as_base_model(hub_server, model_factory, tmp_path):
    teacher_dir = Path(model_factory.save(tmp_path / "teacher", "llama", layers=4, seed=7))
    files = {p.name: p.read_bytes() for p in teacher_dir.iterdir()}
    files["README.md"] = "---\nlicense: apache-2.0\n---\n# tiny teacher\n"
    commit = hub_server.seed_repo("org/tiny-teacher", files)
    init_student("org/tiny-teacher", output_dir=tmp_path / "student")
    text = (tmp_path / "student" / "README.md").read_text()
    metadata = yaml.safe_load(text.split("---")[1])
    assert metadata["base_model"] == "org/tiny-teacher"
    assert metadata["base_model_relation"] == "finetune"  # the Hub's relation for weights derived and changed
    assert metadata["license"] == "apache-2.0"
    from huggingface_hub import ModelCard

    check_card(ModelCard(text))
    record = json.loads((tmp_path / "student" / "student_init.json").read_text())
    assert record["teacher_record"]["revision"] == commit


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(num_layers=0), "`num_layers` (--num_layers) is 0, but the teacher has 4 layers: choose a whole number "
                             "from 1 to 4"),
        (dict(num_layers=5, strategy="first"), "`num_layers` (--num_layers) is 5, but the teacher has 4 layers"),
        (dict(num_layers=2.5, strategy="first"), "`num_layers` (--num_layers) is 2.5"),
        (dict(num_layers=3), "`strategy='every_other'` keeps layers 0, 2, 4, ... of the teacher's 4: that is 2 "
                             "layers, but `num_layers` (--num_layers) is 3. Use num_layers=2, or strategy='uniform'"),
        (dict(strategy="random"), "`strategy` (--strategy) is 'random'; choose one of every_other, uniform, first, "
                                  "last."),
    ],
)
def test_bad_arguments_are_refused_before_the_weights_load(model_factory, tmp_path, kwargs, message):
    folder = tmp_path / "teacher"
    model_factory("llama", layers=4).config.save_pretrained(folder)  # a config and no weights: loading would fail
    with pytest.raises(StudentInitError) as error:
        init_student(str(folder), **kwargs)
    assert message in str(error.value)


def test_cli_writes_the_student(model_factory, tmp_path, capsys):
    teacher_dir = model_factory.save(tmp_path / "teacher", "qwen2", layers=4, seed=8)
    out = tmp_path / "student"
    argv = ["init-student", "--teacher", teacher_dir, "--num_layers", "2", "--strategy", "last",
            "--output_dir", str(out)]
    assert main(argv) == 0
    assert "2-layer student (teacher layers [2, 3])" in capsys.readouterr().out
    student = AutoModelForCausalLM.from_pretrained(out)
    teacher = AutoModelForCausalLM.from_pretrained(teacher_dir)
    assert torch.equal(student.model.layers[0].mlp.up_proj.weight, teacher.model.layers[2].mlp.up_proj.weight)
    assert main(["init-student", "--teacher", teacher_dir, "--num_layers", "9", "--output_dir", str(out)]) == 1
    assert "`num_layers` (--num_layers) is 9" in capsys.readouterr().err


def test_distilled_init_student_card_names_the_teacher_as_base_model(hub_server, model_factory, tokenizer, tmp_path):
    teacher_dir = Path(model_factory.save(tmp_path / "teacher", "llama", layers=4, seed=7))
    # its own repo id: the session-wide Hub cache still holds the other test's commit of org/tiny-teacher
    hub_server.seed_repo("org/tiny-teacher-card", {p.name: p.read_bytes() for p in teacher_dir.iterdir()})
    init_student("org/tiny-teacher-card", output_dir=tmp_path / "student")
    args = DistillationConfig(output_dir=str(tmp_path / "out"), report_to="none", save_strategy="no", max_steps=1,
                              per_device_train_batch_size=2, max_length=64)
    trainer = DistillationTrainer(model=str(tmp_path / "student"), teacher_model="org/tiny-teacher-card", args=args,
                                  train_dataset=tiny.prompt_completion_dataset(4), processing_class=tokenizer)
    trainer.train()
    trainer.save_model()
    card = build_model_card(Provenance.load(tmp_path / "out"), student_license="apache-2.0")
    assert (card.data.base_model, card.data.base_model_relation) == ("org/tiny-teacher-card", "finetune")
    assert "`init_student` copy of teacher layers `[0, 2]` (strategy `every_other`)" in str(card)
