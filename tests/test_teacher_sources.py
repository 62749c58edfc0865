"""A teacher source is a `TeacherSource` subclass: the base class declares every hook the trainer, the benchmark and
the provenance read, so a source that implements only `setup` and `targets` trains, saves and records provenance."""

import torch

from hf_distill import DistillationConfig, DistillationTrainer
from hf_distill.heads import OutputHead, backbone_hidden_states
from hf_distill.teachers import TEACHER_SOURCES, TeacherHidden, TeacherSource
from tests import tiny


class _PrivateTeacher(TeacherSource):
    """Holds its model privately (not as the `model` hook) and sets no other hook."""

    def __init__(self, model):
        self._teacher = model.eval().requires_grad_(False)

    def setup(self, trainer) -> None:
        self._head = OutputHead.from_model(self._teacher)

    @torch.no_grad()
    def targets(self, inputs, position_mask):
        hidden = backbone_hidden_states(self._teacher, input_ids=inputs["input_ids"],
                                        attention_mask=inputs["attention_mask"])
        return TeacherHidden(hidden=hidden[:, :-1][position_mask], head=self._head)


def test_a_source_with_only_setup_and_targets_trains_and_records_no_teacher(tmp_path, model_factory, tokenizer,
                                                                             monkeypatch):
    teacher = model_factory("qwen2", hidden=48, seed=2)
    factory = lambda teacher_model, args, columns, **kw: _PrivateTeacher(teacher)  # noqa: E731
    monkeypatch.setattr("hf_distill.teachers.TEACHER_SOURCES", [factory, *TEACHER_SOURCES])
    args = DistillationConfig(output_dir=str(tmp_path), report_to="none", save_strategy="no", max_steps=2,
                              per_device_train_batch_size=4, logging_steps=1, max_length=64, seed=0)
    trainer = DistillationTrainer(model=model_factory("llama", seed=1), args=args,
                                  train_dataset=tiny.DATASETS["prompt_completion"](8), processing_class=tokenizer)
    assert isinstance(trainer.teacher, _PrivateTeacher)
    trainer.train()
    assert "kd_loss" in trainer.state.log_history[0]
    provenance = trainer.collect_provenance()
    assert provenance.teacher is None  # no `source`, `model` or `teacher_provenance` hook says where it came from


def test_the_base_class_declares_every_hook_and_requires_setup_and_targets():
    source = TeacherSource()
    hooks = {"dataset_columns": (), "collator_columns": {}, "decode_batch": None, "model": None,
             "teacher_tokenizer": None, "source": None, "teacher_provenance": None}
    assert {name: getattr(source, name) for name in hooks} == hooks
    for call in (lambda: source.setup(None), lambda: source.targets({}, torch.ones(1, 1, dtype=torch.bool))):
        try:
            call()
        except NotImplementedError as error:
            assert "TeacherSource must implement" in str(error)
        else:
            raise AssertionError("the base class must not give targets")
