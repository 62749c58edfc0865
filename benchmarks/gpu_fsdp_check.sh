#!/usr/bin/env bash
# FSDP2 on one CUDA GPU (NCCL, bf16): benchmarks/gpu_fsdp_check.py in one process; the JSON record goes to
# $OUT/gpu_fsdp_check.json (OUT defaults to benchmarks/results). Needs torch, transformers, accelerate only.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-benchmarks/results}"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" python -m torch.distributed.run --nproc_per_node 1 \
    --master_addr 127.0.0.1 --master_port "${MASTER_PORT:-29517}" \
    benchmarks/gpu_fsdp_check.py --output "$OUT/gpu_fsdp_check.json" "$@"
