#!/usr/bin/env bash
# LlamaGen GPT-B (256 px, batch 8, guidance 4.0, top_k 2000) on a CUDA GPU: vistok's sampler vs the
# original KV-cached generate, eager and with both sides compiled (the original as sample_c2i.py --compile), in fp32
# and in bf16 (the original cast as sample_c2i.py --precision bf16), plus peak CUDA memory. Not yet run on a GPU.
# Usage (repository root, with a LlamaGen checkout): benchmarks/gpu_llamagen.sh /path/to/LlamaGen [BATCH]
set -euo pipefail
UPSTREAM=${1:?usage: benchmarks/gpu_llamagen.sh /path/to/LlamaGen [BATCH]}
BATCH=${2:-8}
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
for precision in fp32 bf16; do
    for part in eager compile; do
        python benchmarks/bench_llamagen.py --upstream "$UPSTREAM" --device cuda --batch "$BATCH" --repeats 5 --part "$part" \
            --precision "$precision"
    done
done
python benchmarks/bench_llamagen.py --upstream "$UPSTREAM" --device cuda --batch "$BATCH" --part memory
echo "results: benchmarks/results/llamagen_cuda.json"
