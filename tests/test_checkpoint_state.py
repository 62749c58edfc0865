"""Checkpoints without pickle: optimizer, scheduler, scaler and RNG states round-trip exactly through safetensors
+ JSON; a checkpoint folder holds no .pt/.pth/.bin file; a run resumed with every unpickler disabled ends with the
weights of an uninterrupted run (one process and two); checkpoints written by plain transformers still resume."""

import json
import os
import random
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import Trainer
from transformers.optimization import get_scheduler

from hf_distill import DistillationConfig, DistillationTrainer
from hf_distill import checkpoint_state as cs
from hf_distill.training.checkpoint_state import CheckpointStateError
from tests import tiny
from tests.distributed import two_process_launcher
from tests.no_pickle import refuse_unpickling
from tests.scripts.resume_probe import ResumeProbe, with_dropout

REPO = Path(__file__).resolve().parents[1]
PICKLE_SUFFIXES = {".pt", ".pth", ".bin", ".pkl", ".ckpt"}


def _model(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 8))


def _stepped(optimizer_factory, steps=3):
    model = _model()
    optimizer = optimizer_factory(model.parameters())
    for step in range(steps):
        optimizer.zero_grad()
        model(torch.randn(4, 64, generator=torch.Generator().manual_seed(step))).square().sum().backward()
        optimizer.step()
    return model, optimizer


def _assert_same(actual, expected, path="state"):
    assert type(actual) is type(expected), (path, type(actual), type(expected))
    if isinstance(expected, torch.Tensor):
        assert actual.dtype == expected.dtype and actual.shape == expected.shape, path
        assert torch.equal(actual.cpu(), expected.cpu()), path
    elif isinstance(expected, np.ndarray):
        assert actual.dtype == expected.dtype and np.array_equal(actual, expected), path
    elif isinstance(expected, dict):
        assert list(actual) == list(expected), path
        for key in expected:
            _assert_same(actual[key], expected[key], f"{path}.{key}")
    elif isinstance(expected, (list, tuple)):
        assert len(actual) == len(expected), path
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            _assert_same(a, e, f"{path}.{i}")
    else:
        assert actual == expected or (actual != actual and expected != expected), path  # NaN == NaN here


def _bnb_adamw8bit(params):
    bnb = pytest.importorskip("bitsandbytes")
    return bnb.optim.AdamW8bit(params, lr=1e-3, min_8bit_size=16)


OPTIMIZERS = {
    "adamw": lambda p: torch.optim.AdamW(p, lr=1e-3, betas=(0.8, 0.99)),
    "adamw_foreach": lambda p: torch.optim.AdamW(p, lr=1e-3, foreach=True),
    "adamw_fused": lambda p: torch.optim.AdamW(p, lr=1e-3, fused=True),
    "adamw_tensor_lr": lambda p: torch.optim.AdamW(p, lr=torch.tensor(1e-3), foreach=False),
    "adam_amsgrad": lambda p: torch.optim.Adam(p, lr=1e-3, amsgrad=True),
    "sgd_momentum": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True),
    "bnb_adamw8bit": _bnb_adamw8bit,
}


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_optimizer_state_round_trips_exactly_and_resumes_identically(name, tmp_path):
    model, optimizer = _stepped(OPTIMIZERS[name])
    written = cs.save_state(optimizer.state_dict(), tmp_path, "optimizer")
    assert written == ["optimizer.safetensors", "optimizer.json"]
    tensors = load_file(str(tmp_path / "optimizer.safetensors"))
    assert tensors and all(key.startswith(("state.", "param_groups.")) for key in tensors)
    _assert_same(cs.load_state(tmp_path, "optimizer"), optimizer.state_dict())

    # A fresh optimizer loaded from the files takes the very same next step as the original.
    twin_model = _model()
    twin_model.load_state_dict(model.state_dict())
    twin = OPTIMIZERS[name](twin_model.parameters())
    twin.load_state_dict(cs.load_state(tmp_path, "optimizer"))
    _assert_same(twin.state_dict(), optimizer.state_dict())
    batch = torch.randn(4, 64, generator=torch.Generator().manual_seed(99))
    for m, opt in ((model, optimizer), (twin_model, twin)):
        opt.zero_grad()
        m(batch).square().sum().backward()
        opt.step()
    for a, b in zip(model.parameters(), twin_model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_bnb_state_keeps_its_quantization_tensors(tmp_path):
    _, optimizer = _stepped(_bnb_adamw8bit)
    cs.save_state(optimizer.state_dict(), tmp_path, "optimizer")
    keys = set(load_file(str(tmp_path / "optimizer.safetensors")))
    quant = "state.0.__bnb_optimizer_quant_state__"
    assert {f"{quant}.{k}" for k in ("state1", "state2", "qmap1", "qmap2", "absmax1", "absmax2")} <= keys


@pytest.mark.parametrize(
    "kind", ["linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
             "inverse_sqrt", "reduce_lr_on_plateau", "cosine_with_min_lr", "warmup_stable_decay"],
)
def test_transformers_schedulers_round_trip_as_json(kind, tmp_path):
    optimizer = torch.optim.AdamW(_model().parameters(), lr=1e-3)
    specific = {"cosine_with_min_lr": {"min_lr": 1e-5}, "warmup_stable_decay": {"num_decay_steps": 3}}.get(kind)
    scheduler = get_scheduler(kind, optimizer, num_warmup_steps=2, num_training_steps=10,
                              scheduler_specific_kwargs=specific)
    for _ in range(4):
        optimizer.step()
        scheduler.step(*([1.0] if kind == "reduce_lr_on_plateau" else []))
    assert cs.save_state(scheduler.state_dict(), tmp_path, "scheduler") == ["scheduler.json"]
    _assert_same(cs.load_state(tmp_path, "scheduler"), scheduler.state_dict())

    fresh = get_scheduler(kind, torch.optim.AdamW(_model().parameters(), lr=1e-3), num_warmup_steps=2,
                          num_training_steps=10, scheduler_specific_kwargs=specific)
    fresh.load_state_dict(cs.load_state(tmp_path, "scheduler"))
    assert fresh.state_dict() == scheduler.state_dict()


def test_grad_scaler_round_trips_as_json(tmp_path):
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=7)
    scaler._lazy_init_scale_growth_tracker(torch.device("cpu"))
    cs.save_state(scaler.state_dict(), tmp_path, "scaler")
    assert not (tmp_path / "scaler.safetensors").exists()
    _assert_same(cs.load_state(tmp_path, "scaler"), scaler.state_dict())


def test_rng_states_round_trip_and_replay_the_same_numbers(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    np.random.standard_normal()  # leaves a cached Gaussian in numpy's state
    state = cs.collect_rng_state(distributed=False)
    expected = (random.random(), np.random.standard_normal(3), torch.rand(3))
    cs.save_state(state, tmp_path, "rng_state")
    assert set(load_file(str(tmp_path / "rng_state.safetensors"))) == {"numpy.1", "cpu"}
    _assert_same(cs.load_state(tmp_path, "rng_state"), state)

    random.seed(10)
    np.random.seed(20)
    torch.manual_seed(30)
    cs.restore_rng_state(cs.load_state(tmp_path, "rng_state"), distributed=False)
    replayed = (random.random(), np.random.standard_normal(3), torch.rand(3))
    assert replayed[0] == expected[0]
    assert np.array_equal(replayed[1], expected[1]) and torch.equal(replayed[2], expected[2])


def test_codec_keeps_types_that_json_lacks():
    state = {
        3: {"t": (1, 2.5, None), "inf": float("inf"), "__tensor__": "a plain string key"},
        "nested": [{"x": torch.arange(3)}, (torch.zeros(2), np.arange(4, dtype=np.uint32))],
        (1, "a"): True,
    }
    tree, tensors = cs.encode_state(state, what="test")
    json.dumps(tree)  # JSON-able
    assert set(tensors) == {"nested.0.x", "nested.1.0", "nested.1.1"}
    _assert_same(cs.decode_state(json.loads(json.dumps(tree)), tensors), state)


def test_shared_tensors_are_stored_apart(tmp_path):
    shared = torch.arange(6.0)
    cs.save_state({"a": shared, "b": shared, "view": shared[2:4]}, tmp_path, "shared")
    loaded = cs.load_state(tmp_path, "shared")
    assert torch.equal(loaded["a"], shared) and torch.equal(loaded["b"], shared)
    assert torch.equal(loaded["view"], shared[2:4])


class _Schedule:  # a callable object holding a non-JSON value: LambdaLR stores its __dict__
    def __init__(self):
        self.fn = lambda step: 1.0

    def __call__(self, step):
        return self.fn(step)


def test_unstorable_states_are_refused_with_their_path(tmp_path):
    scheduler = torch.optim.lr_scheduler.LambdaLR(torch.optim.SGD(_model().parameters(), lr=0.1), _Schedule())
    with pytest.raises(CheckpointStateError, match=r"LR scheduler state holds a `function` at `lr_lambdas.0.fn`"
                       r".*cannot be stored without pickle"):
        cs.save_state(scheduler.state_dict(), tmp_path, "scheduler", what="LR scheduler")
    assert not list(tmp_path.iterdir())  # refused before anything was written


def test_damaged_state_files_name_the_fix(tmp_path):
    cs.save_state({"x": torch.ones(2)}, tmp_path, "optimizer")
    (tmp_path / "optimizer.safetensors").unlink()
    with pytest.raises(CheckpointStateError, match=r"optimizer.json refers to .*optimizer.safetensors, which is "
                       "missing.*resume from an earlier checkpoint"):
        cs.load_state(tmp_path, "optimizer")
    (tmp_path / "optimizer.json").write_text("{not json")
    with pytest.raises(CheckpointStateError, match=r"Cannot read .*optimizer.json.*resume from an earlier checkpoint"):
        cs.load_state(tmp_path, "optimizer")



class _TaggedSGD(torch.optim.SGD):  # an optimizer whose state holds a set, which JSON cannot hold
    def state_dict(self):
        state = super().state_dict()
        state["param_groups"][0]["tags"] = {"a"}
        return state


def test_an_unstorable_optimizer_is_left_to_transformers_with_a_warning(tmp_path, caplog):
    from types import SimpleNamespace

    optimizer = _TaggedSGD(_model().parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.ConstantLR(optimizer)
    trainer = SimpleNamespace(optimizer=optimizer, lr_scheduler=scheduler, args=SimpleNamespace(should_save=True),
                              is_deepspeed_enabled=False, is_fsdp_enabled=False)
    with caplog.at_level("WARNING", logger="hf_distill.training.checkpoint_state"):
        assert cs.save_optimizer_and_scheduler(trainer, str(tmp_path)) is False  # the caller runs transformers' save
    assert "optimizer state holds a `set` at `param_groups.0.tags`" in caplog.text and "optimizer.pt" in caplog.text
    assert not list(tmp_path.iterdir())

# -- the trainer ------------------------------------------------------------------------------------------------------


def _args(output_dir, **kwargs):
    settings = dict(output_dir=str(output_dir), report_to="none", max_steps=4, save_strategy="steps", save_steps=2,
                    per_device_train_batch_size=4, learning_rate=5e-3, lr_scheduler_type="cosine", warmup_steps=1,
                    logging_steps=1, max_length=64, seed=0, hub_token="hf_checkpoint_state_secret_token")
    return DistillationConfig(**{**settings, **kwargs})


@pytest.fixture()
def build(model_factory, tokenizer):
    def trainer(output_dir, trainer_class=DistillationTrainer, callbacks=None, **kwargs):
        return trainer_class(model=with_dropout(model_factory("llama", seed=1)),
                             teacher_model=model_factory("llama", seed=2),
                             args=_args(output_dir, **kwargs), processing_class=tokenizer,
                             train_dataset=tiny.prompt_completion_dataset(16, seed=4), callbacks=callbacks)

    return trainer


def test_checkpoints_hold_no_pickle_and_resume_without_unpickling(build, tmp_path, monkeypatch):
    first_probe = ResumeProbe(snapshot_step=2)
    first = build(tmp_path / "run", callbacks=[first_probe])
    first.train()
    checkpoint = tmp_path / "run" / "checkpoint-2"
    names = {path.name for path in checkpoint.iterdir()}
    assert {"optimizer.json", "optimizer.safetensors", "scheduler.json", "rng_state.json", "rng_state.safetensors",
            "training_args.json", "trainer_state.json", "model.safetensors"} <= names
    assert not [name for name in names if Path(name).suffix in PICKLE_SUFFIXES]
    arguments = (checkpoint / "training_args.json").read_text()
    assert json.loads(arguments)["lr_scheduler_type"] == "cosine" and "hf_checkpoint_state_secret" not in arguments

    # Resume from step 2 with every unpickler disabled: the same weights as the uninterrupted run.
    refuse_unpickling(monkeypatch.setattr)
    (tmp_path / "run" / "checkpoint-4").rename(tmp_path / "run" / "uninterrupted-4")
    probe = ResumeProbe()
    resumed = build(tmp_path / "run", callbacks=[probe])
    resumed.train(resume_from_checkpoint=True)
    assert resumed.state.global_step == 4
    assert probe.executed_steps == [3, 4]  # only the steps after the checkpoint
    # It starts from the optimizer moments the first run had after step 2 (held in memory, not read from a file).
    assert probe.moments_at_start.keys() == first_probe.moments_at_snapshot.keys() != set()
    for name, moment in first_probe.moments_at_snapshot.items():
        assert torch.equal(probe.moments_at_start[name], moment), name
    expected = load_file(str(tmp_path / "run" / "uninterrupted-4" / "model.safetensors"))
    actual = load_file(str(tmp_path / "run" / "checkpoint-4" / "model.safetensors"))
    assert expected.keys() == actual.keys()
    for name in expected:  # the same data order, RNG (dropout masks), optimizer moments and LR: bit for bit
        assert torch.equal(actual[name], expected[name]), name
    assert resumed.optimizer.state_dict()["state"][0]["step"].item() == 4
    assert resumed.lr_scheduler.state_dict() == first.lr_scheduler.state_dict()


def test_checkpoints_written_by_plain_transformers_still_resume(build, tmp_path):
    class PlainCheckpoints(DistillationTrainer):  # transformers' own save methods: torch.save pickles
        _save_optimizer_and_scheduler = Trainer._save_optimizer_and_scheduler
        _save_rng_state = Trainer._save_rng_state

    build(tmp_path / "run", trainer_class=PlainCheckpoints, max_steps=2).train()
    names = {path.name for path in (tmp_path / "run" / "checkpoint-2").iterdir()}
    assert {"optimizer.pt", "scheduler.pt", "rng_state.pth"} <= names and "optimizer.json" not in names
    resumed = build(tmp_path / "run", max_steps=4)
    resumed.train(resume_from_checkpoint=True)  # read as transformers reads them, torch.load(weights_only=True)
    assert resumed.state.global_step == 4
    assert resumed.optimizer.state_dict()["state"][0]["step"].item() == 4


def test_an_unstorable_scheduler_is_refused_before_training(build, tmp_path):
    trainer = build(tmp_path / "run")
    optimizer = torch.optim.AdamW(trainer.model.parameters(), lr=1e-3)
    trainer.optimizer = optimizer
    trainer.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _Schedule())
    with pytest.raises(CheckpointStateError, match=r"lr_lambdas.0.fn.*`lr_scheduler_type`.*--save_only_model"):
        trainer.train()
    assert trainer.state.global_step == 0 and not (tmp_path / "run" / "checkpoint-2").exists()


@pytest.mark.slow
def test_two_processes_write_one_rng_file_each_and_resume_to_the_same_weights(tmp_path):
    def torchrun(*extra):
        command = [*two_process_launcher(), "-m", "tests.scripts.resume_train", str(tmp_path / "run"),
                   "--probe-dir", str(tmp_path / "probes"), *extra]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
        done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]

    torchrun()
    run = tmp_path / "run"
    names = {path.name for path in (run / "checkpoint-2").iterdir()}
    assert {"rng_state_0.json", "rng_state_0.safetensors", "rng_state_1.json", "rng_state_1.safetensors"} <= names
    assert not [name for name in names if Path(name).suffix in PICKLE_SUFFIXES]
    (run / "checkpoint-4").rename(run / "uninterrupted-4")
    torchrun("--resume")  # with torch.load and pickle refused in both processes
    expected = load_file(str(run / "uninterrupted-4" / "model.safetensors"))
    actual = load_file(str(run / "checkpoint-4" / "model.safetensors"))
    assert expected.keys() == actual.keys()
    for name in expected:  # dropout masks from each process's own restored RNG
        assert torch.equal(actual[name], expected[name]), name
    probes = tmp_path / "probes"
    for rank in (0, 1):
        assert json.loads((probes / f"probe-resumed-{rank}.json").read_text())["executed_steps"] == [3, 4]
        saved = load_file(str(probes / f"probe-fresh-{rank}-snapshot.safetensors"))  # after step 2, in memory
        started = load_file(str(probes / f"probe-resumed-{rank}-start.safetensors"))
        assert saved.keys() == started.keys() != set()
        for name in saved:
            assert torch.equal(started[name], saved[name]), (rank, name)


def test_weight_sizes_and_hashes_count_the_model_not_the_checkpoint_state(build, tmp_path):
    from hf_distill.benchmark.cost import weights_on_disk
    from hf_distill.publish.provenance.collect import weight_file_hashes

    trainer = build(tmp_path / "run", max_steps=1)
    trainer.train()
    checkpoint = tmp_path / "run" / "checkpoint-1"
    assert {"optimizer.safetensors", "model.safetensors"} <= {path.name for path in checkpoint.iterdir()}
    assert set(weight_file_hashes(checkpoint)) == {"model.safetensors"}
    size, where = weights_on_disk(trainer.model, str(checkpoint))
    assert size == (checkpoint / "model.safetensors").stat().st_size, where
