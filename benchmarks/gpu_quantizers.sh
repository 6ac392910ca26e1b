#!/usr/bin/env bash
# The quantizer benchmark on a CUDA GPU: adds the fused Triton nearest-code kernel ("vistok-triton");
# goal: fused VQ >= 2x torch.cdist+argmin. Needs a CUDA torch, triton and vector-quantize-pytorch.
set -euo pipefail
cd "$(dirname "$0")/.."
python benchmarks/bench_quantizers.py --device cuda --out benchmarks/results/quantizers_gpu.json "$@"
