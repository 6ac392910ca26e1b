#!/usr/bin/env bash
# LlamaGen GPT-B (256 px, batch 8, guidance 4.0, top_k 2000) on a CUDA GPU: vistok's sampler vs the
# original KV-cached generate, eager and with torch.compile, plus peak CUDA memory; fp32.
# Usage (repository root, with a LlamaGen checkout): benchmarks/gpu_llamagen.sh /path/to/LlamaGen [BATCH]
set -euo pipefail
UPSTREAM=${1:?usage: benchmarks/gpu_llamagen.sh /path/to/LlamaGen [BATCH]}
BATCH=${2:-8}
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
for part in eager memory compile; do
    python benchmarks/bench_llamagen.py --upstream "$UPSTREAM" --device cuda --batch "$BATCH" --repeats 3 --part "$part"
done
echo "results: benchmarks/results/llamagen_cuda.json"
