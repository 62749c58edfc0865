"""`cache_teacher_logits` from a served teacher: the local vLLM/SGLang-speaking test server's top-k prompt log-probs,
cached in the same format, equal the in-process cache for the same k and the teacher's own log-softmax."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from hf_distill import DistillationConfig, DistillationTrainer
from hf_distill.data import cache_teacher_logits, decode_topk
from hf_distill.formats.cache import TOPK_COLUMN, CacheInfo
from hf_distill.teachers import ServedTeacher
from tests import tiny
from tests.served_teacher_server import TeacherServer

TOP_K = 8


@pytest.fixture(scope="module")
def teacher_folder(tmp_path_factory, model_factory):
    return model_factory.save(tmp_path_factory.mktemp("served-cache") / "teacher", "llama", hidden=32, seed=2)


@pytest.mark.parametrize("kind", ["vllm", "sglang"])
def test_a_served_cache_equals_the_in_process_cache(tmp_path, teacher_folder, tokenizer, kind):
    data = tiny.prompt_completion_dataset(6, seed=4)
    local = cache_teacher_logits(teacher_folder, data, tokenizer=tokenizer, output_dir=tmp_path / "local",
                                 top_k=TOP_K, batch_size=4)
    server = TeacherServer(teacher_folder)
    try:
        served = cache_teacher_logits(ServedTeacher(server.url, kind=kind, top_k=TOP_K), data, tokenizer=tokenizer,
                                      output_dir=tmp_path / "served", top_k=TOP_K, batch_size=4)
    finally:
        server.stop()

    assert served["input_ids"] == local["input_ids"]
    assert served["completion_mask"] == local["completion_mask"]
    teacher = AutoModelForCausalLM.from_pretrained(teacher_folder).eval()
    for ids, local_blob, served_blob in zip(local["input_ids"], local[TOPK_COLUMN], served[TOPK_COLUMN], strict=True):
        ours, reference = decode_topk(served_blob), decode_topk(local_blob)
        np.testing.assert_array_equal(ours.covered, reference.covered)
        np.testing.assert_array_equal(ours.token_ids, reference.token_ids)
        np.testing.assert_allclose(ours.log_probs, reference.log_probs, atol=1e-3)
        np.testing.assert_allclose(ours.tail_log_probs, reference.tail_log_probs, atol=1e-3)
        # And the teacher's own distribution, from plain logits: its top-k at the covered positions.
        with torch.no_grad():
            log_probs = torch.log_softmax(teacher(torch.tensor([ids])).logits[0].double(), -1)
        values, indices = log_probs[torch.from_numpy(ours.covered)].topk(TOP_K, -1)
        order = indices.argsort(-1)  # the codec stores each position's ids sorted
        np.testing.assert_array_equal(ours.token_ids, indices.gather(-1, order).numpy())
        np.testing.assert_allclose(ours.log_probs, values.gather(-1, order).numpy(), atol=1e-2)  # codec's precision

    info = CacheInfo.from_json(served.info.description)
    assert (info.teacher, info.top_k, info.vocab_size) == (str(teacher_folder), TOP_K, len(tokenizer))
    trainer = DistillationTrainer(
        model=tiny.ModelFactory(tokenizer)("llama", hidden=16, layers=1), teacher_model=None, train_dataset=served,
        args=DistillationConfig(output_dir=str(tmp_path / "student"), report_to="none", save_strategy="no",
                                max_steps=1, max_length=64, per_device_train_batch_size=2, disable_tqdm=True),
        processing_class=tokenizer,
    )
    assert trainer.teacher.teacher_provenance.name == str(teacher_folder)
    trainer.train()
