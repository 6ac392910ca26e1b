#!/usr/bin/env bash
# The decoding strategies (SJD, GSD, ZipAR) against standard KV-cached decoding on a CUDA GPU, fp32: LlamaGen GPT-B at
# release width (random weights, 256 tokens) at batch 1 and 8, and the trained default AR model of the package
# (32 1D tokens; SJD and GSD) with its class-agreement quality figure when a photo dataset folder is given.
# Usage (repository root): benchmarks/gpu_decoding.sh [PHOTOS_DIR]   (PHOTOS_DIR: python -m vistok.demo.photos output)
set -euo pipefail
PHOTOS=${1:-}
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
for batch in 1 8; do
    python benchmarks/bench_decoding.py --device cuda --batch "$batch" --pairs 5
    python benchmarks/bench_decoding.py --device cuda --model default --batch "$batch" --pairs 5 \
        ${PHOTOS:+--photos "$PHOTOS"}
done
echo "results: benchmarks/results/decoding_cuda.json"
