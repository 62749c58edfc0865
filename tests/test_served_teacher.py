"""The served teacher (vLLM / SGLang over HTTP), against a local server backed by a tiny model: the loss equals the
in-process cached and dense losses, temperature is exact where documented, prefetch is used, and every fault
(500s, timeouts, malformed JSON, a killed server, another tokenizer, top_k above the server's cap) gives the
documented behaviour."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hf_distill import DistillationConfig, DistillationTrainer
from hf_distill.data import cache_teacher_logits
from hf_distill.losses.sparse import sparse_kd_terms
from hf_distill.losses.terms import LossSettings, dense_kd_terms
from hf_distill.teachers import ServedTeacher
from hf_distill.teachers.served import TemperedTopK, tempered_buckets
from hf_distill.teachers.served_client import ServedTeacherError, ServedTeacherUnavailable, ServerClient
from tests import tiny
from tests.distributed import two_process_launcher
from tests.served_teacher_server import TeacherServer
from tests.test_cached_teacher_training import _head

KINDS = ("vllm", "sglang")


@pytest.fixture(scope="module")
def teacher_dir(model_factory, tmp_path_factory):
    return model_factory.save(tmp_path_factory.mktemp("served") / "teacher", "llama", hidden=32, layers=2, seed=11)


@pytest.fixture(scope="module")
def server(teacher_dir):
    server = TeacherServer(teacher_dir, max_logprobs=1000)
    yield server
    server.stop()


@pytest.fixture
def clean_server(server):
    yield server
    server.set_faults(status=None, count=0, malformed=0, delay=0.0, max_logprobs=1000)


def _args(tmp_path, **kwargs):
    defaults = dict(output_dir=str(tmp_path), report_to="none", save_strategy="no", per_device_train_batch_size=4,
                    logging_steps=1, max_steps=2, learning_rate=1e-3, seed=0, data_seed=0)
    return DistillationConfig(**{**defaults, **kwargs})


def _trainer(model_factory, tokenizer, tmp_path, teacher, **kwargs):
    return DistillationTrainer(model=model_factory("llama", hidden=16, layers=1, seed=3), teacher_model=teacher,
                               args=_args(tmp_path, **kwargs), train_dataset=tiny.prompt_completion_dataset(16),
                               processing_class=tokenizer)


def _kd_losses(trainer):
    trainer.train()
    return [entry["kd_loss"] for entry in trainer.state.log_history if "kd_loss" in entry]


# -- the loss ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_served_loss_equals_the_cached_top_k_loss(kind, clean_server, teacher_dir, model_factory, tokenizer,
                                                  tmp_path):
    """Same k, same rows: the served teacher's loss is the in-process cached teacher's (up to the cache's
    quantization), on every step."""
    from transformers import AutoModelForCausalLM

    teacher = AutoModelForCausalLM.from_pretrained(teacher_dir)
    cached = cache_teacher_logits(teacher, tiny.prompt_completion_dataset(16), tokenizer=tokenizer,
                                  output_dir=tmp_path / "cache", top_k=8)
    offline = DistillationTrainer(model=model_factory("llama", hidden=16, layers=1, seed=3), teacher_model=None,
                                  args=_args(tmp_path / "offline"), train_dataset=cached, processing_class=tokenizer)
    served = _trainer(model_factory, tokenizer, tmp_path / "served", ServedTeacher(clean_server.url, kind, top_k=8))
    assert offline.train_dataset["labels"] == served.train_dataset["labels"]
    assert _kd_losses(served) == pytest.approx(_kd_losses(offline), abs=5e-4)


def test_served_loss_equals_the_dense_loss_when_k_is_the_vocabulary(clean_server, teacher_dir, model_factory,
                                                                    tokenizer, tmp_path):
    online = _trainer(model_factory, tokenizer, tmp_path / "online", teacher_dir)
    served = _trainer(model_factory, tokenizer, tmp_path / "served",
                      ServedTeacher(clean_server.url, top_k=len(tokenizer)))
    assert _kd_losses(served) == pytest.approx(_kd_losses(online), abs=1e-5)


def test_a_url_or_teacher_server_picks_the_served_teacher(clean_server, model_factory, tokenizer, tmp_path):
    by_url = _trainer(model_factory, tokenizer, tmp_path / "a", clean_server.url)
    assert isinstance(by_url.teacher, ServedTeacher) and by_url.teacher.top_k == 20
    by_argument = DistillationTrainer(
        model=model_factory("llama", hidden=16, layers=1), args=_args(tmp_path / "b"),
        teacher_server=ServedTeacher(clean_server.url, "sglang", top_k=4),
        train_dataset=tiny.prompt_completion_dataset(4), processing_class=tokenizer)
    assert by_argument.teacher.kind == "sglang"
    by_config = _trainer(model_factory, tokenizer, tmp_path / "c", None, teacher_model_name_or_path=clean_server.url)
    assert isinstance(by_config.teacher, ServedTeacher)  # --teacher_model_name_or_path http://... on the CLI


@pytest.mark.parametrize(("kind", "revision"), [("vllm", "unresolved"), ("sglang", "default")])
def test_provenance_names_the_served_model(kind, revision, clean_server, teacher_dir, model_factory, tokenizer,
                                           tmp_path):
    trainer = _trainer(model_factory, tokenizer, tmp_path, ServedTeacher(clean_server.url, kind, top_k=4))
    assert trainer.teacher.teacher_provenance.name == teacher_dir
    assert trainer.teacher.teacher_provenance.revision == revision
    assert trainer.collect_provenance().teacher.name == Path(teacher_dir).name  # what the card names
    pinned = ServedTeacher(clean_server.url, kind, top_k=4, revision="abc123")
    assert _trainer(model_factory, tokenizer, tmp_path, pinned).teacher.teacher_provenance.revision == "abc123"


def test_requests_are_prefetched_while_the_student_trains(clean_server, model_factory, tokenizer, tmp_path):
    trainer = _trainer(model_factory, tokenizer, tmp_path, ServedTeacher(clean_server.url, top_k=4), max_steps=4)
    trainer.train()
    prefetcher = trainer.teacher._prefetcher
    assert prefetcher.hits == 4 and prefetcher.misses == 0


# -- temperature ------------------------------------------------------------------------------------------------------


def _dense_teacher(seed=2, tokens=9, vocab=40, hidden=8):
    torch.manual_seed(seed)
    return _head(seed), torch.randn(tokens, hidden) * 2


@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_temperature_is_exact_when_k_is_the_vocabulary(temperature):
    teacher_head, teacher_hidden = _dense_teacher()
    student_head, labels = _head(1), torch.randint(0, 40, (9,))
    student_hidden = torch.randn(9, 8, requires_grad=True)
    log_probs = torch.log_softmax(teacher_head.logits(teacher_hidden), -1)
    values, ids = log_probs.topk(40, -1)
    settings = LossSettings(temperature=temperature)
    served = TemperedTopK(token_ids=ids, log_probs=values).kd_terms(student_hidden, student_head, labels, settings)
    dense = dense_kd_terms(student_hidden, teacher_hidden, student_head, teacher_head, labels,
                           temperature=temperature)
    torch.testing.assert_close(served.kd_sum, dense.kd_sum, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(served.ce_sum, dense.ce_sum)
    grad_served = torch.autograd.grad(served.kd_sum + served.ce_sum, student_hidden)[0]
    grad_dense = torch.autograd.grad(dense.kd_sum + dense.ce_sum, student_hidden)[0]
    torch.testing.assert_close(grad_served, grad_dense, rtol=1e-4, atol=1e-6)


def test_temperature_one_is_the_sparse_loss_exactly():
    teacher_head, teacher_hidden = _dense_teacher()
    student_head, labels, student_hidden = _head(1), torch.randint(0, 40, (9,)), torch.randn(9, 8)
    values, ids = torch.log_softmax(teacher_head.logits(teacher_hidden), -1).topk(6, -1)
    served = TemperedTopK(token_ids=ids, log_probs=values).kd_terms(student_hidden, student_head, labels,
                                                                    LossSettings())
    sparse = sparse_kd_terms(student_hidden, student_head, ids, values, labels)
    assert served.kd_sum == sparse.kd_sum and served.ce_sum == sparse.ce_sum


@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_tempered_tail_bounds_the_true_tail(temperature):
    """Against the dense teacher at T: the even-tail assumption gives the tail the most mass possible for T > 1 and
    the least for T < 1 (power-mean inequality), and the error vanishes as k grows to the vocabulary."""
    teacher_head, teacher_hidden = _dense_teacher()
    log_probs = torch.log_softmax(teacher_head.logits(teacher_hidden).double(), -1)
    true_at_t = torch.log_softmax(teacher_head.logits(teacher_hidden).double() / temperature, -1)
    errors = []
    for k in (4, 16, 39, 40):
        values, ids = log_probs.topk(k, -1)
        tail = torch.logsumexp(log_probs.scatter(-1, ids, float("-inf")), -1)
        top_t, tail_t = tempered_buckets(values, tail, 40, temperature)
        true_tail = torch.logsumexp(true_at_t.scatter(-1, ids, float("-inf")), -1)
        if k < 40:
            assert ((tail_t.double() >= true_tail - 1e-5) if temperature > 1 else
                    (tail_t.double() <= true_tail + 1e-5)).all()
        errors.append((top_t.double() - true_at_t.gather(-1, ids)).abs().max().item())
    assert errors[-2] <= 1e-5 and errors[-1] <= 1e-5  # one token in the tail, or none: exact
    assert errors[0] > 1e-4  # a real approximation at small k (this test can fail)


# -- faults -----------------------------------------------------------------------------------------------------------


def _client(server, **kwargs):
    return ServerClient(server.url, kwargs.pop("kind", "vllm"), backoff=0.01, **kwargs)


def test_500s_are_retried_then_answered_exactly(clean_server):
    expected = _client(clean_server).top_k([[5, 6, 7, 8]], 4, "tiny-teacher")[0]
    clean_server.set_faults(status=500, count=2)
    answer = _client(clean_server, max_retries=2).top_k([[5, 6, 7, 8]], 4, "tiny-teacher")[0]
    assert torch.equal(answer.token_ids, expected.token_ids) and torch.equal(answer.log_probs, expected.log_probs)


@pytest.mark.parametrize("status", [429, 500, 503])
def test_persistent_failures_name_the_server_and_the_last_status(status, clean_server):
    clean_server.set_faults(status=status, count=10)
    with pytest.raises(ServedTeacherUnavailable, match=rf"at {clean_server.url} did not answer POST /v1/completions "
                                                       rf"after 3 tries; last: HTTP {status}: injected failure"):
        _client(clean_server, max_retries=2).top_k([[5, 6, 7]], 4, "tiny-teacher")


def test_timeouts_are_retried_then_reported(clean_server):
    clean_server.set_faults(delay=1.0)
    with pytest.raises(ServedTeacherUnavailable, match=r"after 2 tries; last: timed out after 0.2 s"):
        _client(clean_server, timeout=0.2, max_retries=1).top_k([[5, 6, 7]], 4, "tiny-teacher")


def test_malformed_json_is_refused_at_once(clean_server):
    clean_server.set_faults(malformed=1)
    with pytest.raises(ServedTeacherUnavailable, match=r"a body that is not JSON .*it starts '\{\"choices\": \[ this"):
        _client(clean_server).top_k([[5, 6, 7]], 4, "tiny-teacher")


def test_top_k_above_the_servers_cap_names_the_flag(clean_server, model_factory, tokenizer, tmp_path):
    clean_server.set_faults(max_logprobs=20)
    with pytest.raises(ServedTeacherError, match=r"`top_k` is 21, but the vLLM server at .* returns at most 20 "
                                                 r"log-probs per position \(its `--max-logprobs`\)"):
        _trainer(model_factory, tokenizer, tmp_path, ServedTeacher(clean_server.url, top_k=21))


def test_a_server_with_another_tokenizer_is_refused(other_tokenizer, tmp_path, model_factory, tokenizer):
    other = tiny.ModelFactory(other_tokenizer).save(tmp_path / "other", "llama", hidden=16, layers=1)
    server = TeacherServer(other)
    try:
        with pytest.raises(ServedTeacherError, match=r"tokenizes the probe .* they are different tokenizers"):
            _trainer(model_factory, tokenizer, tmp_path, ServedTeacher(server.url, top_k=4))
    finally:
        server.stop()


def test_the_api_key_is_read_from_the_environment(teacher_dir, monkeypatch):
    server = TeacherServer(teacher_dir, api_key="sekret")
    try:
        with pytest.raises(ServedTeacherError, match=r"refused .*/v1/models with HTTP 401: Unauthorized"):
            ServedTeacher(server.url).client.model_info()
        monkeypatch.setenv("TEACHER_KEY", "sekret")
        assert ServedTeacher(server.url, api_key_env="TEACHER_KEY").client.model_info().served_name == "tiny-teacher"
    finally:
        server.stop()


def _weights(folder):
    return load_file(str(next(folder.glob("model.safetensors"))))


def test_a_server_killed_mid_run_stops_training_and_resume_gives_the_uninterrupted_student(
        teacher_dir, model_factory, tokenizer, tmp_path):
    """The server dies after a few requests: training stops with the server named, before an optimizer step on
    missing targets; the checkpoints already written are complete, and resuming against a fresh server gives the
    student of an uninterrupted run."""
    settings = dict(max_steps=4, save_strategy="steps", save_steps=1)
    healthy = TeacherServer(teacher_dir, max_logprobs=1000)
    dying = TeacherServer(teacher_dir, max_logprobs=1000)
    dying.set_faults(die_after=3)  # the set-up probe, then two batches
    try:
        clean = _trainer(model_factory, tokenizer, tmp_path / "clean", ServedTeacher(healthy.url, top_k=16),
                         **settings)
        clean.train()
        run = _trainer(model_factory, tokenizer, tmp_path / "run", ServedTeacher(dying.url, top_k=16, max_retries=1),
                       **settings)
        with pytest.raises(ServedTeacherUnavailable, match=rf"The teacher server at {dying.url} did not answer.*"
                                                           r"connection failed"):
            run.train()
        checkpoints = sorted(p.name for p in (tmp_path / "run").glob("checkpoint-*"))
        assert checkpoints and "checkpoint-4" not in checkpoints
        resumed = _trainer(model_factory, tokenizer, tmp_path / "run", ServedTeacher(healthy.url, top_k=16),
                           **settings)
        resumed.train(resume_from_checkpoint=True)
    finally:
        healthy.stop()
        dying.stop()
    expected, got = _weights(tmp_path / "clean" / "checkpoint-4"), _weights(tmp_path / "run" / "checkpoint-4")
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=1e-5, msg=name)


# -- settings ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(url="localhost:8000"), "`url` is 'localhost:8000'; a served teacher needs an http(s) URL"),
    (dict(kind="tgi"), "`kind` is 'tgi'; choose one of vllm, sglang"),
    (dict(top_k=0), "`top_k` is 0; it must be a positive integer"),
    (dict(api_key_env="HF_DISTILL_TEST_UNSET_KEY"), "`api_key_env` is 'HF_DISTILL_TEST_UNSET_KEY', but that"),
])
def test_bad_settings_are_refused_before_any_request(kwargs, message):
    with pytest.raises(ServedTeacherError) as raised:
        ServedTeacher(**{"url": "http://127.0.0.1:9", **kwargs})
    assert message in str(raised.value)


# -- two processes ----------------------------------------------------------------------------------------------------

_DDP_SCRIPT = '''
import json, sys
from hf_distill import DistillationConfig, DistillationTrainer
from hf_distill.teachers import ServedTeacher
from tests import tiny

url, output_dir, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
tokenizer = tiny.build_tokenizer()
args = DistillationConfig(output_dir=output_dir, report_to="none", save_strategy="no", max_steps=3,
                          per_device_train_batch_size=batch, learning_rate=1e-2, lr_scheduler_type="constant",
                          logging_steps=1, seed=0, max_length=64, use_cpu=True, alpha=0.5, disable_tqdm=True)
trainer = DistillationTrainer(model=tiny.ModelFactory(tokenizer)("llama", seed=1), args=args,
                              teacher_server=ServedTeacher(url, top_k=len(tokenizer)),
                              train_dataset=tiny.prompt_completion_dataset(24, seed=5), processing_class=tokenizer)
trainer.train()
rank = trainer.accelerator.process_index
record = {"kd_losses": [e["kd_loss"] for e in trainer.state.log_history if "kd_loss" in e],
          "prefetched": trainer.teacher._prefetcher.hits, "on_the_spot": trainer.teacher._prefetcher.misses}
with open(f"{output_dir}/rank{rank}.json", "w") as handle:
    json.dump(record, handle)
'''


@pytest.mark.slow
def test_two_processes_each_ask_for_their_own_rows(clean_server, tmp_path):
    """Under DDP each rank sends its own rows: two processes of batch 2 log the losses of one process of batch 4."""
    import json
    import os
    import subprocess
    import sys
    script = tmp_path / "ddp_served.py"
    script.write_text(_DDP_SCRIPT)
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(repo)}
    runs = {"one": [sys.executable, str(script)], "two": [*two_process_launcher(), str(script)]}
    for name, command in runs.items():
        (tmp_path / name).mkdir()
        batch = "4" if name == "one" else "2"
        done = subprocess.run(command + [clean_server.url, str(tmp_path / name), batch], cwd=repo, env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
    one = json.loads((tmp_path / "one" / "rank0.json").read_text())
    ranks = [json.loads((tmp_path / "two" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["kd_losses"] == pytest.approx(one["kd_losses"], rel=1e-5)
    assert [r["prefetched"] + r["on_the_spot"] for r in ranks] == [3, 3]  # one request per step on each rank
