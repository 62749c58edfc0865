"""`cross_tokenizer=` with a cached teacher: `cache_teacher_logits(..., student_tokenizer=)` stores the teacher's
top-k at the student positions matched by text, and the top-k losses (`hf_distill.losses.cross_tokenizer_topk`).

With the whole teacher vocabulary as top-k, the loss is the live cross-tokenizer loss; with a smaller k it equals a
float64 reference written from the documented definition (tail spread evenly, shared tokens of the top-k plus a
bucket)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hf_distill import DistillationConfig, DistillationTrainer
from hf_distill.data import cache_teacher_logits, decode_topk
from hf_distill.fingerprints import tokenizer_hash
from hf_distill.formats.cache import TOPK_COLUMN, CacheInfo
from hf_distill.losses.cross_tokenizer import cross_tokenizer_kd_terms
from hf_distill.losses.cross_tokenizer_topk import cross_tokenizer_topk_kd_terms
from hf_distill.losses.terms import LossSettings
from hf_distill.offline.logit_cache import topk_log_probs
from hf_distill.publish.provenance.collect import cross_tokenizer_record
from hf_distill.teachers import ServedTeacher
from hf_distill.teachers.cached_topk import LOG_PROBS_COLUMN
from hf_distill.teachers.cross_tokenizer import CrossTokenizerError
from tests import tiny
from tests.served_teacher_server import TeacherServer
from tests.test_cross_tokenizer_loss import STUDENT_VOCAB, TEACHER_VOCAB, _heads, _pairs, uld_reference
from tests.test_losses import REFERENCES

SETTINGS = dict(divergence="jsd", beta=0.3, skew=0.2)


def _teacher_topk(teacher_hidden, teacher_head, k):
    return topk_log_probs(teacher_head.logits(teacher_hidden), k)


def _batch(seed=5, rows=10, matched=(0, 3, 4, 9)):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(rows, 8, generator=g)
    teacher_hidden = torch.randn(len(matched), 12, generator=g)
    labels = torch.randint(0, STUDENT_VOCAB, (rows,), generator=g)
    return hidden, teacher_hidden, labels, torch.tensor(matched)


@pytest.mark.parametrize("method", ["uld", "span"])
def test_whole_vocabulary_topk_equals_the_live_loss(method):
    """k = the teacher's vocabulary: value, counts and gradient of the live (hidden-state) cross-tokenizer loss."""
    student_head, teacher_head = _heads(seed=4)
    hidden, teacher_hidden, labels, index = _batch()
    pairs, settings = _pairs(seed=4), LossSettings(**SETTINGS, chunk_size=3)
    live_hidden, cached_hidden = hidden.clone().requires_grad_(True), hidden.clone().requires_grad_(True)
    live = cross_tokenizer_kd_terms(live_hidden, student_head, labels, teacher_hidden, teacher_head, index, settings,
                                    method=method, pairs=pairs)
    ids, log_probs, tail = _teacher_topk(teacher_hidden, teacher_head, TEACHER_VOCAB)
    cached = cross_tokenizer_topk_kd_terms(cached_hidden, student_head, labels, ids, log_probs, tail, index,
                                           settings, method=method, teacher_vocab=TEACHER_VOCAB, pairs=pairs)
    torch.testing.assert_close(cached.kd_sum, live.kd_sum, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(cached.ce_sum, live.ce_sum, rtol=1e-6, atol=1e-6)
    assert int(cached.num_teacher_agree) == int(live.num_teacher_agree)
    live.kd_sum.backward()
    cached.kd_sum.backward()
    torch.testing.assert_close(cached_hidden.grad, live_hidden.grad, rtol=1e-4, atol=1e-6)


def topk_reference(p_student, ids, log_probs, tail, *, method, teacher_vocab, pairs=None):
    """Float64, one position at a time, from the definition: the teacher's tail mass spread evenly over its tokens
    outside the top-k; ULD on sorted vectors; span: [shared top-k tokens, 1 - their sum] on both sides with the
    configured divergence (renormalised over them when exactly one vocabulary has no unshared token), plus ULD
    between the unshared tokens of each side."""
    total = torch.zeros((), dtype=torch.float64)
    for n in range(p_student.shape[0]):
        k = ids.shape[1]
        completed = torch.full((teacher_vocab,), float(tail[n].double().exp()) / (teacher_vocab - k),
                               dtype=torch.float64)
        completed[ids[n].long()] = log_probs[n].double().exp()
        p_s = p_student[n]
        if method == "uld":
            total = total + uld_reference(p_s[None], completed[None])[0]
            continue
        to_student = dict(zip(pairs.teacher_ids.tolist(), pairs.student_ids.tolist(), strict=True))
        shared = [j for j in ids[n].tolist() if j in to_student]
        s_shared, t_shared = p_s[[to_student[j] for j in shared]], completed[shared]
        s_rest = [i for i in range(p_s.shape[0]) if i not in set(pairs.student_ids.tolist())]
        t_rest = [j for j in range(teacher_vocab) if j not in set(pairs.teacher_ids.tolist())]
        if bool(s_rest) == bool(t_rest):
            s_vec = torch.cat([s_shared, (1 - s_shared.sum()).reshape(1)])
            t_vec = torch.cat([t_shared, (1 - t_shared.sum()).reshape(1)])
        else:
            s_vec, t_vec = s_shared / s_shared.sum(), t_shared / t_shared.sum()
        matched = REFERENCES[SETTINGS["divergence"]](s_vec[None], t_vec[None], SETTINGS["beta"], SETTINGS["skew"])
        total = total + matched.reshape(()) + uld_reference(p_s[s_rest][None], completed[t_rest][None])[0]
    return total


@pytest.mark.parametrize("method", ["uld", "span"])
@pytest.mark.parametrize("k", [3, 8])
@pytest.mark.parametrize("shared", [7, STUDENT_VOCAB])  # both sides with unshared tokens; the student's inside
def test_small_topk_equals_a_float64_reference(method, k, shared):
    student_head, teacher_head = _heads(seed=6)
    hidden, teacher_hidden, labels, index = _batch(seed=7)
    pairs = _pairs(seed=6, shared=shared)
    ids, log_probs, tail = _teacher_topk(teacher_hidden, teacher_head, k)
    ours_hidden = hidden.clone().requires_grad_(True)
    terms = cross_tokenizer_topk_kd_terms(ours_hidden, student_head, labels, ids, log_probs, tail, index,
                                          LossSettings(**SETTINGS, chunk_size=3), method=method,
                                          teacher_vocab=TEACHER_VOCAB, pairs=pairs)
    terms.kd_sum.backward()
    ref_hidden = hidden.double().clone().requires_grad_(True)
    p_student = torch.softmax(ref_hidden[index] @ student_head.weight.double().T, -1)
    expected = topk_reference(p_student, ids, log_probs, tail, method=method, teacher_vocab=TEACHER_VOCAB,
                              pairs=pairs)
    torch.testing.assert_close(terms.kd_sum.double(), expected, rtol=1e-5, atol=1e-6)
    expected.backward()
    torch.testing.assert_close(ours_hidden.grad.double(), ref_hidden.grad, rtol=1e-4, atol=1e-6)


# -- through the cache and the trainer -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def teacher_tokenizer():
    return tiny.build_sentencepiece_tokenizer()


@pytest.fixture(scope="module")
def teacher(teacher_tokenizer):
    return tiny.ModelFactory(teacher_tokenizer)("qwen2", hidden=48, layers=2, seed=1).eval()


def _args(tmp_path, method, **kwargs):
    return DistillationConfig(**{**dict(output_dir=str(tmp_path / "out"), report_to="none", save_strategy="no",
                                        max_steps=1, per_device_train_batch_size=4, max_length=64, seed=0,
                                        cross_tokenizer=method, alpha=0.6, shuffle_dataset=False, **SETTINGS),
                                 **kwargs})


def _first_loss(trainer, replace_log_probs=None):
    batch = trainer._prepare_inputs(trainer.data_collator([trainer.train_dataset[i] for i in range(4)]))
    if replace_log_probs is not None:
        batch = replace_log_probs(batch)
    with torch.no_grad():
        return float(trainer.compute_loss(trainer.model, batch))


def _exact_log_probs(live_trainer, teacher_vocab):
    """The teacher's exact log-probabilities at the matched positions of the live trainer's first batch, in
    row-major order of the pairs: the cache's rows of the same pairs (same rows, same order) get them."""
    batch = live_trainer._prepare_inputs(live_trainer.data_collator([live_trainer.train_dataset[i] for i in range(4)]))
    with torch.no_grad():
        logits = live_trainer.teacher.model(input_ids=batch["teacher_input_ids"],
                                            attention_mask=batch["teacher_attention_mask"]).logits
    at = batch["aligned_teacher_positions"]
    rows = torch.arange(at.shape[0]).unsqueeze(1).expand_as(at)[at >= 0]
    return torch.log_softmax(logits[rows, at[at >= 0]][:, :teacher_vocab].float(), -1)


@pytest.mark.parametrize("method", ["uld", "span"])
def test_cached_first_loss_equals_the_live_loss(tmp_path, tokenizer, teacher_tokenizer, teacher, method):
    """Same rows, same student, first step: a cache of the whole teacher vocabulary gives the live trainer's loss
    (1e-5) once its quantized log-probabilities are replaced by the teacher's exact ones; as decoded from the
    blobs, within the codec's quantization error. `"uld"` needs no teacher tokenizer at training."""
    data = tiny.prompt_completion_dataset(4)
    cached = cache_teacher_logits(teacher, data, tokenizer=teacher_tokenizer, student_tokenizer=tokenizer,
                                  output_dir=tmp_path / "cache", top_k=len(teacher_tokenizer), max_length=64)
    info = CacheInfo.from_json(cached.info.description)
    assert info.cross_tokenizer["teacher_tokenizer"]["sha256"] == tokenizer_hash(teacher_tokenizer)
    assert info.cross_tokenizer["student_tokenizer"]["sha256"] == tokenizer_hash(tokenizer)

    def student():
        return tiny.ModelFactory(tokenizer)("llama", hidden=32, layers=2, seed=0)

    live = DistillationTrainer(model=student(), teacher_model=teacher, args=_args(tmp_path / "live", method),
                               train_dataset=data, processing_class=tokenizer,
                               teacher_processing_class=teacher_tokenizer)
    offline = DistillationTrainer(model=student(), teacher_model=None, args=_args(tmp_path / "cached", method),
                                  train_dataset=cached, processing_class=tokenizer,
                                  teacher_processing_class=teacher_tokenizer if method == "span" else None)
    assert type(offline.teacher).__name__ == "CachedCrossTokenizerTeacher"
    exact = _exact_log_probs(live, info.vocab_size)

    def with_exact_log_probs(batch):
        log_probs = batch[LOG_PROBS_COLUMN].clone()
        covered = ~torch.isneginf(log_probs).all(-1)
        assert int(covered.sum()) == exact.shape[0]  # the cache holds targets at exactly the matched positions
        log_probs[covered] = exact
        return {**batch, LOG_PROBS_COLUMN: log_probs}

    live_loss = _first_loss(live)
    assert _first_loss(offline, with_exact_log_probs) == pytest.approx(live_loss, rel=1e-5, abs=1e-5)
    assert _first_loss(offline) == pytest.approx(live_loss, rel=2e-3)  # measured: 2.7e-4 (uld), 1.4e-5 (span)
    record = cross_tokenizer_record(offline)  # the provenance names both tokenizers, from the cache if need be
    assert record["method"] == method and record["teacher_tokenizer"]["sha256"] == tokenizer_hash(teacher_tokenizer)
    assert record["student_tokenizer"]["sha256"] == tokenizer_hash(tokenizer)


@pytest.mark.parametrize("kind", ["vllm", "sglang"])
def test_a_served_teacher_writes_the_in_process_cross_tokenizer_cache(tmp_path, tokenizer, teacher_tokenizer, kind):
    """The local vLLM/SGLang-speaking server, backed by the teacher, scores the teacher's own ids: its cache across
    tokenizers holds the in-process cache's top-k at the same student positions (same ids, same values to the
    float32 rounding of the server's log-softmax), and trains to the same first-step loss."""
    folder = tiny.ModelFactory(teacher_tokenizer).save(tmp_path / "teacher", "llama", hidden=48, seed=2)
    data, k = tiny.prompt_completion_dataset(6, seed=4), 8
    settings = dict(tokenizer=teacher_tokenizer, student_tokenizer=tokenizer, top_k=k, batch_size=4, max_length=64)
    local = cache_teacher_logits(folder, data, output_dir=tmp_path / "local", **settings)
    server = TeacherServer(folder)
    try:
        served = cache_teacher_logits(ServedTeacher(server.url, kind=kind, top_k=k), data,
                                      output_dir=tmp_path / "served", **settings)
    finally:
        server.stop()

    assert served["input_ids"] == local["input_ids"] and served["completion_mask"] == local["completion_mask"]
    for served_blob, local_blob in zip(served[TOPK_COLUMN], local[TOPK_COLUMN], strict=True):
        ours, reference = decode_topk(served_blob), decode_topk(local_blob)
        assert ours.covered.any()
        np.testing.assert_array_equal(ours.covered, reference.covered)
        np.testing.assert_array_equal(ours.token_ids, reference.token_ids)
        np.testing.assert_allclose(ours.log_probs, reference.log_probs, atol=1e-3)
        np.testing.assert_allclose(ours.tail_log_probs, reference.tail_log_probs, atol=1e-3)
    served_info, local_info = (CacheInfo.from_json(cache.info.description) for cache in (served, local))
    assert served_info.cross_tokenizer == local_info.cross_tokenizer
    assert served_info.num_cached_positions == local_info.num_cached_positions

    def first_loss(cache, name):
        return _first_loss(DistillationTrainer(
            model=tiny.ModelFactory(tokenizer)("llama", hidden=32, layers=2, seed=0), teacher_model=None,
            args=_args(tmp_path / name, "span"), train_dataset=cache, processing_class=tokenizer,
            teacher_processing_class=teacher_tokenizer))

    assert first_loss(served, "from-served") == pytest.approx(first_loss(local, "from-local"), rel=1e-4)


@pytest.mark.parametrize("given", ["teacher_model", "teacher_server"])
def test_online_training_against_a_served_teacher_is_refused_with_the_cache_as_fix(tmp_path, tokenizer, given):
    """A `ServedTeacher` object (not only its URL) is refused with `cross_tokenizer=` before anything loads, and the
    message names the served cache across tokenizers as the way to use it."""
    served = ServedTeacher("http://127.0.0.1:9", top_k=4)  # nothing listens: refused before any request
    teacher = {"teacher_model": served} if given == "teacher_model" else {"teacher_model": None,
                                                                          "teacher_server": served}
    with pytest.raises(CrossTokenizerError, match=r"let the server write a cache across tokenizers first "
                                                   r"\(`cache_teacher_logits\(ServedTeacher\(url, top_k=k\)"):
        DistillationTrainer(model=str(tmp_path / "no-student"), args=_args(tmp_path, "uld"),
                            processing_class=tokenizer, train_dataset=tiny.prompt_completion_dataset(4), **teacher)
