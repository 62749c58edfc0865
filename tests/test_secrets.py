"""Secrets: the Hub token appears in no file, log line, card or error message; only safetensors are loaded; nothing
is unpickled on the way from local folders through training, resume, benchmark and push."""

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch

from hf_distill import DistillationConfig, DistillationTrainer
from hf_distill.benchmark import benchmark
from hf_distill.hub import create_space, push_student
from hf_distill.safe_loading import PickledWeightsError
from tests import tiny
from tests.no_pickle import refuse_unpickling
from tests.scripts.resume_probe import ResumeProbe


def _args(output_dir, **kwargs):
    settings = dict(output_dir=str(output_dir), report_to="none", max_steps=2, per_device_train_batch_size=4,
                    max_length=64, logging_steps=1, save_strategy="steps", save_steps=1)
    return DistillationConfig(**{**settings, **kwargs})


@pytest.mark.parametrize("role", ["teacher_model", "model"])
def test_pickled_weights_are_refused_before_loading(role, model_factory, tokenizer, tmp_path):
    pickled = model_factory.save_pickled(tmp_path / "pickled", "llama", seed=3)
    safe = model_factory.save(tmp_path / "safe", "llama", seed=4)
    models = {"model": safe, "teacher_model": safe} | {role: pickled}
    fix = "teacher_model_init_kwargs" if role == "teacher_model" else "model_init_kwargs"
    with pytest.raises(PickledWeightsError, match=rf"`{role}` .* holds pickled weights only \(pytorch_model.bin\).*"
                       rf"save_pretrained.*`{fix}=\{{'use_safetensors': False\}}`"):
        DistillationTrainer(**models, args=_args(tmp_path / "out"), train_dataset=tiny.prompt_completion_dataset(4),
                            processing_class=tokenizer)

    # Opting out explicitly loads the pickle (transformers reads it with torch.load(weights_only=True)).
    opt_out = {"use_safetensors": False}
    kwargs = {"teacher_model_init_kwargs": opt_out} if role == "teacher_model" else {"model_init_kwargs": opt_out}
    trainer = DistillationTrainer(**models, args=_args(tmp_path / "out", **kwargs),
                                  train_dataset=tiny.prompt_completion_dataset(4), processing_class=tokenizer)
    assert trainer.args.model_init_kwargs.get("use_safetensors") is (role != "model")


def test_nothing_is_unpickled_from_folders_to_resume_benchmark_and_push(
    model_factory, tokenizer, tmp_path, hub_server, monkeypatch
):
    student = Path(model_factory.save(tmp_path / "student", "llama", seed=1))
    config = json.loads((student / "config.json").read_text())
    (student / "config.json").write_text(json.dumps(config | {"attention_dropout": 0.3}))  # the RNG restore matters
    teacher = model_factory.save(tmp_path / "teacher", "llama", hidden=48, seed=2)
    dataset = tiny.prompt_completion_dataset(8)

    refuse_unpickling(monkeypatch.setattr)  # torch.load too: not even PyTorch's allow-list unpickler

    def trainer(output_dir, callbacks=None, **kwargs):
        return DistillationTrainer(model=str(student), teacher_model=teacher, args=_args(output_dir, **kwargs),
                                   train_dataset=dataset, processing_class=tokenizer, callbacks=callbacks)

    first_probe = ResumeProbe(snapshot_step=1)
    uninterrupted = trainer(tmp_path / "run", callbacks=[first_probe])
    uninterrupted.train()
    shutil.rmtree(tmp_path / "run" / "checkpoint-2")  # resume from step 1
    probe = ResumeProbe()
    resumed = trainer(tmp_path / "run", callbacks=[probe])
    resumed.train(resume_from_checkpoint=True)
    assert probe.executed_steps == [2]  # only the step after the checkpoint, from the moments saved after step 1
    assert probe.moments_at_start.keys() == first_probe.moments_at_snapshot.keys() != set()
    for name, moment in first_probe.moments_at_snapshot.items():
        assert torch.equal(probe.moments_at_start[name], moment), name
    for name, weight in uninterrupted.model.state_dict().items():  # dropout masks included: bit for bit
        assert torch.equal(resumed.model.state_dict()[name], weight), name
    # Optimizer, scheduler and RNG state are safetensors + JSON (hf_distill.checkpoint_state): no pickle at all.
    checkpoint = Path(resumed.args.output_dir) / "checkpoint-1"
    names = {path.name for path in checkpoint.iterdir()}
    assert {"optimizer.safetensors", "scheduler.json", "rng_state.safetensors"} <= names
    assert not [p.name for p in Path(resumed.args.output_dir).rglob("*") if p.suffix in (".pt", ".pth", ".bin")]
    resumed.save_model()
    saved = Path(resumed.args.output_dir)
    assert (saved / "model.safetensors").is_file() and not list(saved.glob("pytorch_model*.bin"))
    benchmark(str(saved), teacher, tiny.prompt_completion_dataset(2), max_new_tokens=2, batch_sizes=(1,),
              num_latency_runs=1)
    push_student(saved, "tester/no-pickles", token=hub_server.token)
    assert not {"training_args.bin", "training_args.json"} & set(hub_server.files("tester/no-pickles"))


def test_hub_token_is_in_no_file_log_card_or_error(model_factory, tokenizer, tmp_path, hub_server, caplog, capfd):
    token = hub_server.token
    caplog.set_level(logging.DEBUG)  # every logger, transformers' and huggingface_hub's included
    teacher = model_factory.save(tmp_path / "teacher", "llama", hidden=48, seed=2)
    args = _args(tmp_path / "out", hub_token=token, hub_model_id="tester/secret-check")
    trainer = DistillationTrainer(model=model_factory("llama", seed=1), teacher_model=teacher, args=args,
                                  train_dataset=tiny.prompt_completion_dataset(8), processing_class=tokenizer)
    trainer.train()
    result = trainer.push_to_hub()
    create_space("tester/secret-check", space_id="tester/secret-check-demo", output_dir=tmp_path / "space", push=True,
                 token=token)

    # Errors raised after the token is known: a server refusal and a licence conflict.
    errors = []
    shutil.rmtree(tmp_path / "out" / "checkpoint-1")
    hub_server.token = "hf_another_token_the_server_now_wants"
    try:
        with pytest.raises(Exception) as refused:
            push_student(tmp_path / "out", "tester/secret-check", token=token)
        errors.append(refused.value)
    finally:
        hub_server.token = token
    with pytest.raises(Exception) as conflict:
        push_student(tmp_path / "out", "tester/other", token=token, teacher_license="gemma", student_license="mit")
    errors.append(conflict.value)

    captured = capfd.readouterr()
    texts = {"logs": caplog.text, "stdout": captured.out, "stderr": captured.err, "card": str(result.card),
             **{f"error {i}": f"{e!r} {e}" for i, e in enumerate(errors)}}
    assert not [name for name, text in texts.items() if token in text]
    files = [p for root in (tmp_path / "out", tmp_path / "space") for p in root.rglob("*") if p.is_file()]
    assert any(p.name == "training_args.json" for p in files)  # the checkpoint kept one: scanned too
    assert not [str(p) for p in files if token.encode() in p.read_bytes()]
    pushed = [*hub_server.files("tester/secret-check").items(),
              *hub_server.files("tester/secret-check-demo", repo_type="space").items()]
    assert not [path for path, stored in pushed if token.encode() in stored.content]
