"""Distil a tiny teacher into a tiny student, optionally with both sharded by FSDP2 or ZeRO-3, and write what
`tests/test_fsdp.py` compares: the logged losses, the gradients of the first step (gathered from the shards), the
first student's `lm_head` before training, the student saved with `save_model` (a full state dict) and the logits
of the trained in-memory student on fixed token ids.

python -m tests.scripts.fsdp_train OUTPUT_DIR --per-device-batch-size B [--fsdp2 | --zero3] [--max-steps N]
    [--state-dict-type FULL_STATE_DICT | SHARDED_STATE_DICT] [--save-steps K] [--resume CHECKPOINT]
Run once as one plain process and once under `python -m torch.distributed.run --nproc_per_node 2 ... --fsdp2`
(or `--zero3`); `--save-steps` writes checkpoints in the engine's format, `--resume` continues from one.
"""

import argparse
import json
import os
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, PartialState
from accelerate.utils import DistributedType
from safetensors.torch import save_file
from transformers import TrainerCallback

from hf_distill import DistillationConfig, DistillationTrainer
from hf_distill.publish.provenance import PROVENANCE_FILE
from tests import tiny

# FSDP2 as examples/accelerate/fsdp2.yaml sets it (transformer-layer units, resharded after forward, full state dict
# on save), on CPU and in float32 so the runs compare to rounding. The student's decoder layers are units; trl
# wraps the teacher whole.
FSDP2_CONFIG = {
    "version": 2,
    "transformer_layer_cls_to_wrap": ["LlamaDecoderLayer"],
    "reshard_after_forward": True,
    "state_dict_type": "FULL_STATE_DICT",
    "cpu_ram_efficient_loading": False,
}


# ZeRO-3 as examples/accelerate/deepspeed_zero3.yaml sets it (student partitioned; the teacher, loaded after the
# arguments exist, partitioned while it loads and run as a ZeRO-3 inference engine), with the Trainer's own AdamW.
ZERO3_CONFIG = {
    "zero_optimization": {"stage": 3, "stage3_gather_16bit_weights_on_model_save": True},
    "train_micro_batch_size_per_gpu": "auto",
    "train_batch_size": "auto",
    "gradient_accumulation_steps": "auto",
    "gradient_clipping": "auto",
}


def allow_deepspeed_on_cpu() -> None:
    """accelerate (1.16) turns DeepSpeed on only when `use_cpu` is off; DeepSpeed itself runs on its CPU accelerator
    over gloo. Switch the state to DeepSpeed there, as it does on GPUs."""
    import deepspeed

    deepspeed.init_distributed(dist_backend="gloo")  # before accelerate's, so DeepSpeed sees both ranks
    original_init = AcceleratorState.__init__

    def init(self, *args, deepspeed_plugin=None, **kwargs):
        original_init(self, *args, deepspeed_plugin=deepspeed_plugin, **kwargs)
        if deepspeed_plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
            self.distributed_type = DistributedType.DEEPSPEED
            deepspeed_plugin.set_mixed_precision("no")
            deepspeed_plugin.select(_from_accelerator_state=True)
            self.deepspeed_plugins = deepspeed_plugin
            PartialState._shared_state["distributed_type"] = self.distributed_type  # as accelerate's own init does

    AcceleratorState.__init__ = init


def allow_fsdp_on_cpu() -> None:
    """accelerate (1.16) turns its FSDP plugin on for accelerator devices only and leaves CPU processes in plain DDP;
    `fully_shard` itself runs on CPU over gloo. Switch the state to FSDP there, which is what it does on GPUs."""
    original_init = AcceleratorState.__init__

    def init(self, *args, fsdp_plugin=None, **kwargs):
        original_init(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
        if fsdp_plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
            self.distributed_type = DistributedType.FSDP
            self.fsdp_plugin = fsdp_plugin
            PartialState._shared_state["distributed_type"] = self.distributed_type  # as accelerate's own init does

    AcceleratorState.__init__ = init


def full_state_dict_on_cpu(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The full state dict `Trainer.save_model` saves under FSDP2. accelerate asks torch for it with
    `cpu_offload=True`, which on a CPU mesh (torch 2.13) returns the shards as `DTensor`s over freed storage;
    without offloading (the tensors are on CPU already) torch gathers them."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))


def gather_fsdp2_state_dict_on_cpu() -> None:
    """Every `Accelerator.get_state_dict` of an FSDP2 model (final saves and full-state-dict checkpoints) gathers
    with [`full_state_dict_on_cpu`]."""
    original = Accelerator.get_state_dict

    def get_state_dict(self, model, unwrap=True):
        return full_state_dict_on_cpu(model) if self.is_fsdp2 else original(self, model, unwrap)

    Accelerator.get_state_dict = get_state_dict


def _wait_for(path: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} was not written within {timeout} s")
        time.sleep(0.2)


def _full(tensor: torch.Tensor) -> torch.Tensor:
    """The whole tensor from its FSDP2 shards (every rank must call this), or the tensor itself."""
    return tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor


# The teacher's architecture, size and seed (`tiny.ModelFactory` arguments), as a folder or in memory.
TEACHER = {"arch": "qwen2", "hidden": 48, "seed": 2}

# Token ids the trained in-memory student is run on (any 100 ids of the tiny tokenizer's vocabulary).
LOGIT_INPUTS = torch.randint(0, 100, (2, 12), generator=torch.Generator().manual_seed(0))


def trained_logits(model: torch.nn.Module) -> torch.Tensor:
    """The in-memory student's logits on `LOGIT_INPUTS`, through the engine's own forward."""
    model.eval()
    with torch.no_grad():
        return model(input_ids=LOGIT_INPUTS.to(next(model.parameters()).device)).logits.float().cpu().contiguous()


class ExecutedSteps(TrainerCallback):
    """The optimizer steps this process ran (a resumed run starts after its checkpoint's step)."""

    def __init__(self):
        self.steps: list[int] = []

    def on_step_end(self, args, state, control, **kwargs):
        self.steps.append(state.global_step)


class FirstStepGradients(TrainerCallback):
    """Keeps every parameter's full gradient just before the first optimizer step."""

    def __init__(self):
        self.gradients: dict[str, torch.Tensor] = {}

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        if state.global_step != 0:
            return
        if hasattr(model, "ds_id") or any(hasattr(p, "ds_id") for p in model.parameters()):  # ZeRO-3 partitions
            from deepspeed.utils import safe_get_full_grad

            gradients = {name: safe_get_full_grad(p) for name, p in model.named_parameters()}
        else:
            gradients = {name: p.grad for name, p in model.named_parameters()}
        self.gradients = {name: _full(g).detach().clone() for name, g in gradients.items() if g is not None}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("output_dir")
    parser.add_argument("--per-device-batch-size", type=int, required=True)
    parser.add_argument("--max-steps", type=int, default=3)
    parser.add_argument("--fsdp2", action="store_true")
    parser.add_argument("--zero3", action="store_true")
    parser.add_argument("--state-dict-type", default="FULL_STATE_DICT",
                        choices=["FULL_STATE_DICT", "SHARDED_STATE_DICT"])
    parser.add_argument("--save-steps", type=int, default=0, help="checkpoint every K steps (0: no checkpoints)")
    parser.add_argument("--resume", help="a checkpoint folder to resume from")
    parser.add_argument("--in-memory-teacher", action="store_true", help="pass the teacher as a model, not a folder")
    parser.add_argument("--cuda", action="store_true", help="run on the GPUs (NCCL) instead of the CPU")
    cli = parser.parse_args()

    if cli.fsdp2 and not cli.cuda:
        allow_fsdp_on_cpu()
        gather_fsdp2_state_dict_on_cpu()
    if cli.zero3 and not cli.cuda:
        allow_deepspeed_on_cpu()
    tokenizer = tiny.build_tokenizer()
    factory = tiny.ModelFactory(tokenizer)
    student = factory("llama", seed=1)
    initial_head = student.lm_head.weight.detach().clone()
    if cli.in_memory_teacher:  # provenance then hashes the teacher's (sharded) weights
        teacher = factory(**TEACHER)
    else:  # a saved teacher: provenance records it by path; ZeRO-3 partitions it while it loads
        teacher = f"{cli.output_dir}/teacher"
        if int(os.environ.get("LOCAL_RANK", 0)) == 0:
            factory.save(teacher, **TEACHER)
        if torch.distributed.is_torchelastic_launched():  # the other rank waits for the folder
            _wait_for(f"{teacher}/tokenizer_config.json")  # written last
    args = DistillationConfig(
        output_dir=cli.output_dir, report_to="none", max_steps=cli.max_steps,
        save_strategy="steps" if cli.save_steps else "no", save_steps=cli.save_steps or 500,
        per_device_train_batch_size=cli.per_device_batch_size, learning_rate=1e-2, lr_scheduler_type="constant",
        logging_steps=1, seed=0, max_length=64, dataloader_num_workers=0, use_cpu=not cli.cuda, alpha=0.5,
        disable_tqdm=True,
        # No clipping: DeepSpeed clips inside its step, after `on_pre_optimizer_step` reads the gradients, the
        # Trainer before; compared unclipped, every engine's first-step gradients are the same quantity.
        max_grad_norm=0.0,
        # SGD with momentum: an update linear in the gradients, so the engines' different reduction orders stay at
        # float32 rounding in the weights (AdamW's g / sqrt(v) amplifies them on near-zero gradients to ~1e-4 at
        # this lr). The momentum is optimizer state a resumed run must restore (and torch's FSDP2 full-state-dict
        # loader needs some: it takes the device from the state's tensors, and plain SGD keeps none).
        optim="sgd", optim_args="momentum=0.9",
        **({"fsdp": "full_shard auto_wrap", "fsdp_config": {**FSDP2_CONFIG, "state_dict_type": cli.state_dict_type}}
           if cli.fsdp2 else {}),
        **({"deepspeed": ZERO3_CONFIG} if cli.zero3 else {}),
    )
    gradients, executed = FirstStepGradients(), ExecutedSteps()
    trainer = DistillationTrainer(
        model=student,
        teacher_model=teacher,
        args=args,
        train_dataset=tiny.prompt_completion_dataset(32, seed=5),
        processing_class=tokenizer,
        callbacks=[gradients, executed],
    )
    trainer.train(resume_from_checkpoint=cli.resume)
    trainer.save_model(f"{cli.output_dir}/student")
    logits = trained_logits(trainer.model)  # every rank: the engine gathers the shards in the forward
    if trainer.is_world_process_zero():
        logs = [entry for entry in trainer.state.log_history if "loss" in entry]
        record = {
            "num_processes": trainer.accelerator.num_processes,
            "fsdp": trainer.is_fsdp_enabled,
            "deepspeed": trainer.is_deepspeed_enabled,
            "executed_steps": executed.steps,
            "steps": [entry["step"] for entry in logs],
            "losses": [entry["loss"] for entry in logs],
            "kd_losses": [entry["kd_loss"] for entry in logs],
            "teacher_record": json.loads(Path(f"{cli.output_dir}/student/{PROVENANCE_FILE}").read_text())["teacher"],
        }
        with open(f"{cli.output_dir}/result.json", "w") as handle:
            json.dump(record, handle)
        save_file({name: g.contiguous() for name, g in gradients.gradients.items()},
                  f"{cli.output_dir}/gradients.safetensors")
        save_file({"lm_head.weight": initial_head}, f"{cli.output_dir}/initial_head.safetensors")
        save_file({"logits": logits, "input_ids": LOGIT_INPUTS}, f"{cli.output_dir}/logits.safetensors")


if __name__ == "__main__":
    main()
