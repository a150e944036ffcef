#!/usr/bin/env bash
# The GPU check of issue #22 (about 5 minutes on one H100, estimated): GPT-2 small tokens/s and MFU in bf16
# with compile, and nanoGPT's GPU recipe beside nanoGPT's own train.py, in one table. Offline.
#   benchmarks/gpu_check.sh --nanogpt <nanoGPT checkout> [--data <folder with input.txt>] [--iters 5000]
#   benchmarks/gpu_check.sh --nanogpt <nanoGPT checkout> --dry-run   # the same steps on CPU, tiny shapes
# PYTHON: the interpreter that has lmexp installed (default: python).
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 WANDB_MODE=offline WANDB_SILENT=true
"${PYTHON:-python}" -c 'import torch; print("torch", torch.__version__, "|", torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU")'
exec "${PYTHON:-python}" benchmarks/gpu_check.py "$@"
