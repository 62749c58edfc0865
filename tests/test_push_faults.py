"""A push killed before its commit leaves the Hub repo exactly as it was; pushing again then lands in one commit.

The Hub only changes a repo at the commit call; everything before it (LFS uploads) lands outside any revision. The
test kills a pushing process with SIGKILL while the local Hub server holds its weights upload, then checks that the
repo's history and files are unchanged. And `push_to_hub=True` in the arguments sends nothing while training (no repo
created at init, no checkpoint uploads), so nothing reaches the Hub before the licence pre-flight.
"""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from hf_distill.hub import push_student
from tests import hub_server as hub_server_module
from tests import tiny
from tests.hub_server import HubRequestHandler

ROOT = Path(__file__).resolve().parents[1]
PUSH = "import sys; from hf_distill.hub import push_student; push_student(sys.argv[1], sys.argv[2])"


class HeldUploads:
    """Makes the local Hub hold LFS uploads: `arrived` is set when one comes in; it is dropped unanswered and
    unstored once `release()` is called, and later uploads go through as usual."""

    def __init__(self):
        self.arrived, self.released = threading.Event(), threading.Event()
        self.real_upload = HubRequestHandler.lfs_upload

    def handle(self, handler, oid, *, query):
        if self.released.is_set():
            return self.real_upload(handler, oid, query=query)
        self.arrived.set()
        self.released.wait(timeout=300)  # the handler holds the server's lock meanwhile: release before inspecting
        handler.close_connection = True  # the client is gone: answer nothing, store nothing

    def release(self):
        self.released.set()


@pytest.fixture
def held_uploads(monkeypatch):
    held = HeldUploads()
    routes = [(method, pattern, held.handle if handler is held.real_upload else handler)
              for method, pattern, handler in hub_server_module.ROUTES]
    monkeypatch.setattr(hub_server_module, "ROUTES", routes)
    yield held
    held.release()


@pytest.mark.slow
def test_push_killed_before_its_commit_leaves_the_repo_unchanged(
    hub_server, held_uploads, model_factory, tokenizer, tmp_path
):
    from hf_distill import DistillationConfig, DistillationTrainer

    repo_id = "tester/interrupted"
    hub_server.seed_repo(repo_id, {"README.md": "---\nlicense: mit\n---\n# earlier version\n",
                                   "model.safetensors": b"earlier weights"})
    history = [commit.oid for commit in hub_server.commits(repo_id)]
    before = {path: stored.content for path, stored in hub_server.files(repo_id).items()}
    args = DistillationConfig(output_dir=str(tmp_path / "student"), report_to="none", save_strategy="no",
                              max_steps=1, per_device_train_batch_size=4, max_length=64)
    teacher = model_factory.save(tmp_path / "teacher", "llama", hidden=48, seed=2)
    trainer = DistillationTrainer(model=model_factory("llama", seed=1), teacher_model=teacher, args=args,
                                  train_dataset=tiny.prompt_completion_dataset(4), processing_class=tokenizer)
    trainer.save_model()

    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_TOKEN": hub_server.token}
    log = tmp_path / "push.log"
    with open(log, "wb") as output:
        process = subprocess.Popen([sys.executable, "-c", PUSH, args.output_dir, repo_id], cwd=ROOT, env=env,
                                   stdout=output, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300
        while not held_uploads.arrived.wait(timeout=0.2):
            assert process.poll() is None, f"the push ended before its upload:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, "the push never reached its weights upload"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
        held_uploads.release()
    assert hub_server.calls("POST", rf"^/{repo_id}\.git/info/lfs/objects/batch$")  # it was mid-upload

    assert [commit.oid for commit in hub_server.commits(repo_id)] == history
    assert {path: stored.content for path, stored in hub_server.files(repo_id).items()} == before
    assert not hub_server.calls("POST", rf"^/api/models/{repo_id}/commit/")

    # Nothing half-done blocks the next attempt: it lands as one commit on top of the untouched one.
    result = push_student(args.output_dir, repo_id, token=hub_server.token)
    assert [commit.oid for commit in hub_server.commits(repo_id)] == [result.commit_oid, *history]
    stored = hub_server.files(repo_id)["model.safetensors"].content
    assert stored == (Path(args.output_dir) / "model.safetensors").read_bytes()


def test_push_to_hub_argument_sends_nothing_before_the_checked_push(hub_server, model_factory, tokenizer, tmp_path,
                                                                    caplog):
    from hf_distill import DistillationConfig, DistillationTrainer
    from hf_distill.publish.licenses import LicenseConflictError

    args = DistillationConfig(output_dir=str(tmp_path / "out"), report_to="none", max_steps=2, save_steps=1,
                              per_device_train_batch_size=4, max_length=64, push_to_hub=True,
                              hub_model_id="tester/checked", hub_token=hub_server.token, hub_strategy="every_save")
    teacher = model_factory.save(tmp_path / "teacher", "llama", hidden=48, seed=2)
    trainer = DistillationTrainer(model=model_factory("llama", seed=1), teacher_model=teacher, args=args,
                                  train_dataset=tiny.prompt_completion_dataset(8), processing_class=tokenizer)
    trainer.train()  # two checkpoint saves: Trainer would create the repo and upload output_dir twice
    assert hub_server.requests == []
    assert "Checkpoints are not pushed to the Hub during training" in caplog.text
    with pytest.raises(LicenseConflictError):
        trainer.push_to_hub(teacher_license="gemma", student_license="mit")
    assert hub_server.requests == []  # the licence pre-flight still comes first
    result = trainer.push_to_hub(teacher_license="mit", dataset_licenses="mit")
    assert [commit.oid for commit in hub_server.commits("tester/checked")][0] == result.commit_oid
