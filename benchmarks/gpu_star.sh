#!/usr/bin/env bash
# The STAR benchmark on a CUDA GPU at 1024 px: the star-1024 d30 shape (random weights, 14 scales to 64 x 64),
# vistok NextScaleTextToImagePipeline vs the original autoregressive_infer_cfg in the same run, fp32, batch 1
# (pass --batch N to change). The paper reports 2.21 s per 1024x1024 image on an A100 (its own precision settings).
# Needs a CUDA torch and a Davinci-XLab/STAR-T2I checkout (UPSTREAM, default /tmp/star). Not yet run on a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
python benchmarks/bench_star.py --device cuda --size 1024 --batch 1 --upstream "${UPSTREAM:-/tmp/star}" --repeats 3 \
    --out benchmarks/results/star_gpu_1024.json "$@"
