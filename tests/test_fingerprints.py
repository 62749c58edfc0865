"""One fingerprint per thing: a teacher gets the same `sha256:` revision in a cached-logits dataset, in a generated
dataset and in the student's provenance, and a tokenizer the same hashes in a cache and in the provenance."""

import hashlib
import json

from hf_distill import DistillationConfig, DistillationTrainer
from hf_distill.data import cache_teacher_logits
from hf_distill.fingerprints import folder_sha256, path_provenance, teacher_provenance
from hf_distill.formats import CacheInfo
from hf_distill.publish.provenance import model_record, tokenizer_hashes
from tests import tiny


def _args(tmp_path, name):
    return DistillationConfig(output_dir=str(tmp_path / name), report_to="none", save_strategy="no", max_steps=1,
                              per_device_train_batch_size=2, max_length=64)


def test_a_teacher_folder_gets_one_revision_everywhere(tmp_path, model_factory, tokenizer):
    folder = tmp_path / "teacher"
    model_factory.save(folder, "qwen2", seed=5)
    tokenizer.save_pretrained(folder)
    (folder / "README.md").write_text("# a teacher\n")  # not config or weights: not part of the fingerprint
    # The reference: SHA-256 over "name\0sha256(file)\n" of config.json and model.safetensors, hashed here.
    expected = hashlib.sha256("".join(
        f"{name}\0{hashlib.sha256((folder / name).read_bytes()).hexdigest()}\n"
        for name in sorted(p.name for p in folder.iterdir() if p.name in ("config.json", "model.safetensors"))
    ).encode()).hexdigest()
    assert folder_sha256(folder) == expected
    cached = cache_teacher_logits(str(folder), tiny.prompt_completion_dataset(4), tokenizer=tokenizer,
                                  output_dir=tmp_path / "cache", top_k=4)
    cache_revision = CacheInfo.from_json(cached.info.description).teacher_revision
    live = DistillationTrainer(model=model_factory("llama", seed=1), teacher_model=str(folder),
                               args=_args(tmp_path, "live"), train_dataset=tiny.prompt_completion_dataset(4),
                               processing_class=tokenizer)
    offline = DistillationTrainer(model=model_factory("llama", seed=1), teacher_model=None,
                                  args=_args(tmp_path, "offline"), train_dataset=cached, processing_class=tokenizer)
    revisions = {
        "cached dataset": cache_revision,
        "vLLM path": path_provenance(folder).revision,
        "loaded model": teacher_provenance(live.teacher.model, folder).revision,
        "live teacher provenance": "sha256:" + live.collect_provenance().teacher.content_sha256,
        "cached teacher provenance": "sha256:" + offline.collect_provenance().teacher.content_sha256,
    }
    assert set(revisions.values()) == {"sha256:" + expected}, revisions


def test_an_in_memory_teacher_gets_its_parameters_hash_everywhere(model_factory):
    model = model_factory("qwen2", seed=6)
    assert teacher_provenance(model, model).revision == "sha256:" + model_record("teacher", model).content_sha256


def test_a_tokenizer_has_the_same_hashes_in_a_cache_and_in_the_provenance(tmp_path, model_factory, tokenizer):
    cached = cache_teacher_logits(model_factory("qwen2", seed=7), tiny.prompt_completion_dataset(2),
                                  tokenizer=tokenizer, output_dir=tmp_path / "cache", top_k=4)
    info = CacheInfo.from_json(cached.info.description)
    hashes = tokenizer_hashes(tokenizer)
    assert (hashes["sha256"], hashes["chat_template_sha256"]) == (info.tokenizer_hash, info.chat_template_hash)
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    assert hashes["sha256"] == hashlib.sha256(json.dumps(vocab, ensure_ascii=False).encode()).hexdigest()
