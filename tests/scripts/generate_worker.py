"""Worker of tests/test_generation.py: `generate_completions` in its own process, alone or under
`python -m torch.distributed.run` (gloo, CPU), optionally slowed down so that the test can SIGKILL it mid-run.

    python -m tests.scripts.generate_worker TEACHER_DIR DATASET_DIR OUTPUT_DIR [--batch-delay S]

Prints how many `generate` batches this process ran, so the test can see what a resume or each rank did.
"""

import argparse
import time

import datasets
import torch

from hf_distill.data import ProcessGroup, generate_completions
from hf_distill.data import generation as generation_module

# Sampling (per-sequence seeds), several samples, shards of 3 rows, batches of 2 sequences.
SETTINGS = dict(max_new_tokens=5, temperature=1.0, top_p=0.9, num_samples=2, seed=11, batch_size=2, shard_size=3)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("teacher_dir")
    parser.add_argument("dataset_dir")
    parser.add_argument("output_dir")
    parser.add_argument("--batch-delay", type=float, default=0.0)
    cli = parser.parse_args()
    torch.set_num_threads(1)  # the same kernels whatever the number of processes
    batches = []
    generate = generation_module._TransformersGenerator.__call__

    def counting_generate(self, prompts, seeds):
        batches.append(len(prompts))
        time.sleep(cli.batch_delay)
        return generate(self, prompts, seeds)

    generation_module._TransformersGenerator.__call__ = counting_generate
    result = generate_completions(cli.teacher_dir, datasets.load_from_disk(cli.dataset_dir),
                                  output_dir=cli.output_dir, **SETTINGS)
    group = ProcessGroup.current()
    print(f"rank {group.rank} of {group.world_size} generated {len(batches)} batches; {len(result)} rows", flush=True)
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
