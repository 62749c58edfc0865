"""Worker of tests/test_multiprocess_cache.py: `cache_teacher_logits` under torchrun (gloo, CPU).

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/scripts/cache_logits_worker.py \
        TEACHER_DIR DATASET_DIR OUTPUT_DIR

Prints how many teacher batches this rank scored, so the test can see that every rank did its share.
"""

import sys

import datasets
import torch
from transformers import AutoTokenizer

from hf_distill.data import ProcessGroup, cache_teacher_logits, logit_cache


def main(teacher_dir: str, dataset_dir: str, output_dir: str) -> None:
    torch.set_num_threads(1)  # the same kernels whatever the number of processes
    batches = []
    score = logit_cache._Scorer.__call__

    def counting_score(self, *args, **kwargs):
        batches.append(len(args[0]))
        return score(self, *args, **kwargs)

    logit_cache._Scorer.__call__ = counting_score
    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    result = cache_teacher_logits(teacher_dir, datasets.load_from_disk(dataset_dir), tokenizer=tokenizer,
                                  output_dir=output_dir, top_k=8, batch_size=2, shard_size=3)
    group = ProcessGroup.current()
    print(f"rank {group.rank} of {group.world_size} scored {len(batches)} batches; {len(result)} rows", flush=True)
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:4])
