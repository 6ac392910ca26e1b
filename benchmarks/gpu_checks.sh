#!/usr/bin/env bash
# Everything vistok checks on a CUDA GPU, in one run, in order of importance, each step under its own time limit so
# that a slow or failing step cannot take the others with it:
#   1. the CUDA tests (Triton kernels compiled for the GPU; every pipeline on CUDA, in fp16/bf16 and with model CPU
#      offload) - skipped on machines without CUDA;
#   2. benchmarks/gpu_decoding.sh's comparison (SJD/GSD/ZipAR vs standard decoding, GPT-B and the default AR model);
#   3. STAR at 1024 px (d30) vs the original (benchmarks/gpu_star.sh);
#   4. LlamaGen GPT-B vs the original, fp32 and bf16 (the original cast as its sample_c2i.py --precision bf16);
#   5. VAR-d16 vs the original with the original's fused kernels requested (benchmarks/gpu_var.sh);
#   6. LlamaGen with both sides compiled (the original as its sample_c2i.py --compile);
#   7. the quantizer benchmark with the fused Triton nearest-code kernel (benchmarks/gpu_quantizers.sh, --quick).
# Results land in benchmarks/results/*cuda*.json / *gpu*.json; logs and results are also packed into
# $OUT_DIR/gpu_results.tar.gz after every step.
# Usage (repository root; upstream checkouts of LlamaGen, VAR and STAR-T2I under UPSTREAM_ROOT):
#   UPSTREAM_ROOT=/path/to/checkouts BUDGET_S=560 benchmarks/gpu_checks.sh OUT_DIR
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${1:-gpu-out}
UPSTREAM_ROOT=${UPSTREAM_ROOT:-.upstream}
BUDGET_S=${BUDGET_S:-560}
mkdir -p "$OUT_DIR/logs"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRITON_INTERPRET=0
START=$(date +%s)

pack() { tar -czf "$OUT_DIR/gpu_results.tar.gz" -C . benchmarks/results -C "$OUT_DIR" logs 2>/dev/null; }

# step NAME CAP_S COMMAND...: runs COMMAND for at most min(CAP_S, what is left of BUDGET_S) seconds
step() {
    local name=$1 cap=$2; shift 2
    local left=$((BUDGET_S - ($(date +%s) - START) - 5))
    if [ "$left" -lt 15 ]; then echo "SKIPPED $name (budget spent)" | tee -a "$OUT_DIR/logs/summary.txt"; return; fi
    [ "$cap" -gt "$left" ] && cap=$left
    local t0=$(date +%s)
    timeout -k 5 "$cap" "$@" > "$OUT_DIR/logs/$name.log" 2>&1
    local rc=$?
    echo "$name rc=$rc seconds=$(($(date +%s) - t0)) cap=$cap" | tee -a "$OUT_DIR/logs/summary.txt"
    pack
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import torch, transformers, diffusers, triton; print(torch.__version__, torch.version.cuda, transformers.__version__, diffusers.__version__, triton.__version__)"
} > "$OUT_DIR/logs/machine.txt" 2>&1

step tests 90 python3 -m pytest -q -p no:cacheprovider --maxfail=25 -k "cuda" tests/test_kernels.py tests/test_conformance_pipelines.py
step decoding 140 bash -c 'for b in 1 8; do python3 benchmarks/bench_decoding.py --device cuda --batch $b --pairs 5 && python3 benchmarks/bench_decoding.py --device cuda --model default --batch $b --pairs 5 || exit 1; done'
step star_1024 110 python3 benchmarks/bench_star.py --device cuda --size 1024 --batch 1 --upstream "$UPSTREAM_ROOT/STAR" --repeats 3 \
    --parts eager --out benchmarks/results/star_gpu_1024.json
step llamagen_fp32 50 python3 benchmarks/bench_llamagen.py --upstream "$UPSTREAM_ROOT/LlamaGen" --device cuda --batch 8 --repeats 5 --part eager
step llamagen_bf16 50 python3 benchmarks/bench_llamagen.py --upstream "$UPSTREAM_ROOT/LlamaGen" --device cuda --batch 8 --repeats 5 --part eager --precision bf16
step var 60 python3 benchmarks/bench_var.py --device cuda --upstream "$UPSTREAM_ROOT/VAR" --repeats 5 --parts eager memory \
    --out benchmarks/results/var_gpu.json
step llamagen_compile 100 python3 benchmarks/bench_llamagen.py --upstream "$UPSTREAM_ROOT/LlamaGen" --device cuda --batch 8 --repeats 5 --part compile
step quantizers 60 python3 benchmarks/bench_quantizers.py --device cuda --quick --out benchmarks/results/quantizers_gpu.json
pack
cat "$OUT_DIR/logs/summary.txt"
