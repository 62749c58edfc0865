"""Build a tiny student and teacher under DeepSpeed's `zero.Init` (ZeRO-3 partitioned parameters, one gloo process on
DeepSpeed's CPU accelerator) and write what `tests/test_fsdp.py` checks: the shapes DeepSpeed leaves on the heads'
weights, the rows `OutputHead` reads, and the vocabulary the heads are aligned to.

python -m tests.scripts.fsdp_zero3_rows OUTPUT_JSON
"""

import json
import os
import sys

import deepspeed

from hf_distill.heads import OutputHead
from hf_distill.teachers.local_model import align_vocabularies
from tests import tiny

ZERO3 = {"zero_optimization": {"stage": 3}, "train_batch_size": 1}


def main():
    for name, value in {"MASTER_ADDR": "127.0.0.1", "RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"}.items():
        os.environ.setdefault(name, value)
    deepspeed.init_distributed(dist_backend="gloo")
    tokenizer = tiny.build_tokenizer()
    factory = tiny.ModelFactory(tokenizer)
    # Built whole, then partitioned in place (`zero.Init(module=...)`): transformers' init of the padding row cannot
    # run on the empty partitions `from_config` would get inside the context.
    student, teacher = factory("llama", seed=1), factory("qwen2", hidden=48, seed=2)
    for model in (student, teacher):
        deepspeed.zero.Init(module=model, config_dict_or_path=ZERO3)
    student_head, teacher_head = OutputHead.from_model(student), OutputHead.from_model(teacher)
    record = {
        "local_rows": [student.lm_head.weight.shape[0], teacher.lm_head.weight.shape[0]],
        "ds_rows": [student.lm_head.weight.ds_shape[0], teacher.lm_head.weight.ds_shape[0]],
        "head_rows": [student_head.num_rows, teacher_head.num_rows],
        "aligned": align_vocabularies(student_head, teacher_head, tokenizer),
        "num_tokens": len(tokenizer),
    }
    with open(sys.argv[1], "w") as handle:
        json.dump(record, handle)


if __name__ == "__main__":
    main()
