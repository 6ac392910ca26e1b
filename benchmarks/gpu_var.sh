#!/usr/bin/env bash
# The VAR benchmark on a CUDA GPU: VAR-d16 generation (random weights), vistok NextScalePipeline vs the
# original autoregressive_infer_cfg in the same run, fp32, batch 8 by default (pass --batch N to change).
# Needs a CUDA torch and a FoundationVision/VAR checkout (UPSTREAM, default /work/upstream/VAR).
set -euo pipefail
cd "$(dirname "$0")/.."
python benchmarks/bench_var.py --device cuda --upstream "${UPSTREAM:-/work/upstream/VAR}" --repeats 5 \
    --out benchmarks/results/var_gpu.json "$@"
