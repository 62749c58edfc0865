"""FSDP2 on a real GPU: the fused distillation loss trains the student's live `lm_head` under accelerate's FSDP2
(NCCL, bf16 mixed precision), with the teacher sharded by `fully_shard` as trl's `prepare_fsdp` does, on random-weight
Llama models. Writes one JSON record: the losses, how far `lm_head` and the embeddings moved, whether the loss read a
fusable (gathered) head, the fused loss against the dense one on the first batch, and the peak GPU memory.

Needs torch, transformers and accelerate only (no trl, datasets or deepspeed): it drives the trainer's pieces
(`hf_distill.heads.final_hidden_states`, `live_head`, `hf_distill.losses.fused.fused_kd_terms`) directly.

    python -m torch.distributed.run --nproc_per_node 1 benchmarks/gpu_fsdp_check.py --output "$OUT/gpu_fsdp_check.json"

`--cpu` runs the same on CPU over gloo (float32), for checking the script itself; tests/test_gpu_fsdp_check.py does.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import FullyShardedDataParallelPlugin
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard
from transformers import LlamaConfig, LlamaForCausalLM

from hf_distill.heads import final_hidden_states, live_head
from hf_distill.losses.fused import fused_kd_terms, head_is_fusable
from hf_distill.losses.terms import LossSettings, dense_kd_terms

VOCAB = 32_000
STUDENT = {"hidden_size": 256, "intermediate_size": 704, "num_hidden_layers": 2}
TEACHER = {"hidden_size": 512, "intermediate_size": 1408, "num_hidden_layers": 4}
SETTINGS = LossSettings(alpha=0.5)


def build(sizes: dict, seed: int) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=VOCAB, num_attention_heads=4, num_key_value_heads=4, tie_word_embeddings=False,
                         max_position_embeddings=1024, **sizes)
    return LlamaForCausalLM(config)


def shard_teacher(teacher: torch.nn.Module, accelerator: Accelerator) -> torch.nn.Module:
    """The teacher as trl's `prepare_fsdp` shards it under FSDP2: one `fully_shard` unit, frozen, in eval mode."""
    plugin = accelerator.state.fsdp_plugin
    teacher.to(accelerator.device).requires_grad_(False).eval()
    fully_shard(teacher, reshard_after_forward=plugin.reshard_after_forward,
                mp_policy=plugin.mixed_precision_policy or MixedPrecisionPolicy())
    return teacher


def full(tensor: torch.Tensor) -> torch.Tensor:
    return (tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor).detach().float().cpu()


def kd_terms(student, teacher, input_ids: torch.Tensor, *, fused: bool):
    """The trainer's loss terms for one batch: every position but the last predicts the next token."""
    labels = input_ids[:, 1:].reshape(-1)
    student_hidden = final_hidden_states(student, input_ids=input_ids)[:, :-1].reshape(labels.numel(), -1)
    with torch.no_grad():
        teacher_hidden = final_hidden_states(teacher, input_ids=input_ids)[:, :-1].reshape(labels.numel(), -1)
    student_head, teacher_head = live_head(student, vocab_size=VOCAB), live_head(teacher, vocab_size=VOCAB)
    if fused:
        return fused_kd_terms(student_hidden, teacher_hidden, student_head, teacher_head, labels, SETTINGS), \
            head_is_fusable(student_head)
    return dense_kd_terms(student_hidden, teacher_hidden, student_head, teacher_head, labels,
                          **SETTINGS.divergence_kwargs(), ce_type=SETTINGS.ce_type), False


def objective(terms) -> torch.Tensor:
    return (SETTINGS.alpha * terms.kd_sum + (1 - SETTINGS.alpha) * terms.ce_sum) / max(terms.num_positions, 1)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", required=True, help="where to write the JSON record")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--cpu", action="store_true", help="gloo on CPU in float32 (checks the script itself)")
    cli = parser.parse_args(argv)
    if cli.cpu:  # accelerate (1.16) enables FSDP for accelerator devices only; the tests switch it on for CPU
        from tests.scripts.fsdp_train import allow_fsdp_on_cpu

        allow_fsdp_on_cpu()
    elif not torch.cuda.is_available():
        raise SystemExit("No CUDA device: run on a GPU machine, or pass --cpu to check the script on CPU.")

    plugin = FullyShardedDataParallelPlugin(
        fsdp_version=2, auto_wrap_policy="transformer_based_wrap", transformer_cls_names_to_wrap=["LlamaDecoderLayer"],
        reshard_after_forward=True, state_dict_type="FULL_STATE_DICT",
    )
    accelerator = Accelerator(cpu=cli.cpu, mixed_precision="no" if cli.cpu else "bf16", fsdp_plugin=plugin)
    student, teacher = build(STUDENT, seed=1), build(TEACHER, seed=2)
    initial = {"lm_head": full(student.lm_head.weight), "embed": full(student.model.embed_tokens.weight)}
    student, optimizer = accelerator.prepare(student, torch.optim.AdamW(student.parameters(), lr=1e-3))
    teacher = shard_teacher(teacher, accelerator)
    generator = torch.Generator().manual_seed(0)
    batches = [torch.randint(0, VOCAB, (cli.batch_size, cli.seq_len), generator=generator) for _ in range(cli.steps)]

    with torch.no_grad():  # the fused loss against the dense one (full logits), first batch, before any step
        first = batches[0].to(accelerator.device)
        fused_value = objective(kd_terms(student, teacher, first, fused=True)[0]).item()
        dense_value = objective(kd_terms(student, teacher, first, fused=False)[0]).item()
    if accelerator.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    losses, fusable, started = [], [], time.perf_counter()
    for batch in batches:
        terms, was_fused = kd_terms(student, teacher, batch.to(accelerator.device), fused=True)
        loss = objective(terms)
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
        fusable.append(was_fused)
    seconds = time.perf_counter() - started

    moved = {name: (full(weight) - initial[name]).abs().max().item()
             for name, weight in (("lm_head", student.lm_head.weight), ("embed", student.model.embed_tokens.weight))}
    record = {
        "device": torch.cuda.get_device_name() if accelerator.device.type == "cuda" else "cpu",
        "num_processes": accelerator.num_processes,
        "distributed_type": str(accelerator.distributed_type).split(".")[-1],
        "backend": torch.distributed.get_backend() if torch.distributed.is_initialized() else None,
        "mixed_precision": accelerator.mixed_precision,
        "versions": {"torch": torch.__version__, "accelerate": __import__("accelerate").__version__,
                     "transformers": __import__("transformers").__version__},
        "student_weight_is_dtensor": hasattr(student.lm_head.weight, "full_tensor"),
        "teacher_is_fsdp_unit": isinstance(teacher, FSDPModule),
        "losses": losses,
        "fused_head_every_step": all(fusable),
        "first_batch_fused_loss": fused_value,
        "first_batch_dense_loss": dense_value,
        "lm_head_max_abs_change": moved["lm_head"],
        "embed_max_abs_change": moved["embed"],
        "steps": cli.steps, "batch_size": cli.batch_size, "seq_len": cli.seq_len,
        "seconds_for_steps": round(seconds, 3),
        "peak_memory_bytes": torch.cuda.max_memory_allocated() if accelerator.device.type == "cuda" else None,
    }
    record["ok"] = bool(all(math.isfinite(x) for x in losses) and record["fused_head_every_step"]
                        and moved["lm_head"] > 0 and record["student_weight_is_dtensor"])
    if accelerator.is_main_process:
        Path(cli.output).parent.mkdir(parents=True, exist_ok=True)
        Path(cli.output).write_text(json.dumps(record, indent=2))
        print(json.dumps(record, indent=2))
    accelerator.end_training()
    return record


if __name__ == "__main__":
    main()
