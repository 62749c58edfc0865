"""Evaluate a tiny student against a tiny teacher at several eval batch sizes, with and without packing, and write
the metrics (and, on one process, the independent reference); run by `tests/test_metrics.py` once as one process
and once as two (`python -m torch.distributed.run --nproc_per_node 2`, gloo on CPU).

python -m tests.scripts.eval_metrics OUTPUT_DIR
"""

import json
import sys

from hf_distill import DistillationConfig, DistillationTrainer
from tests import kd_reference, tiny

EVAL_ROWS, ALPHA = 13, 0.7
RUNS = {"unpacked_bs3": (False, 3), "unpacked_bs8": (False, 8), "packed_bs1": (True, 1), "packed_bs3": (True, 3)}


def main():
    output_dir = sys.argv[1]
    tokenizer = tiny.build_tokenizer()
    factory = tiny.ModelFactory(tokenizer)
    data = tiny.prompt_completion_dataset(EVAL_ROWS, seed=11)
    record = {"runs": {}}
    for name, (packing, batch_size) in RUNS.items():
        args = DistillationConfig(
            output_dir=output_dir, report_to="none", save_strategy="no", max_length=64, alpha=ALPHA, seed=0,
            packing=packing, per_device_eval_batch_size=batch_size, use_cpu=True, disable_tqdm=True,
        )
        trainer = DistillationTrainer(
            model=factory("llama", seed=1), teacher_model=factory("qwen2", hidden=48, seed=2), args=args,
            train_dataset=data, eval_dataset=data, processing_class=tokenizer,
        )
        record["runs"][name] = trainer.evaluate()
        record["num_processes"] = trainer.accelerator.num_processes
    if record["num_processes"] == 1:
        rows = kd_reference.prompt_completion_rows(tokenizer, data)
        reference = kd_reference.reference_means(trainer.model, trainer.teacher.model, rows, alpha=ALPHA)
        record["reference"] = reference
    if trainer.is_world_process_zero():
        with open(f"{output_dir}/metrics.json", "w") as handle:
            json.dump(record, handle)


if __name__ == "__main__":
    main()
