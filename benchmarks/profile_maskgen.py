"""Load-tolerant comparison of vistok's MaskGenPipeline sampler with the original ``MaskGen_VQ.generate``: the work each
does, not wall-clock time (which a shared machine makes meaningless).

Same build as benchmarks/bench_maskgen.py (MaskGen-VQ-L at release width, random weights shared through vistok's
converter, fixed random CLIP-shaped text features, guidance 12 with the cosine ramp), at ONE thread:

1. ``torch.profiler`` of one ``--profile-steps`` call of each: calls per aten op, and the matrix products (addmm/mm)
   by input shapes -- what each implementation computes per sampling run. (The profiler's self-CPU times are
   wall-clock per op and are reported only as a rough share.)
2. CPU time (``time.thread_time``, the calling thread only: with one intra-op thread that is all the compute) of
   ``--steps`` calls, interleaved, ``--repeats`` pairs alternating which goes first; token ids compared each time.

    OMP_NUM_THREADS=1 python benchmarks/profile_maskgen.py --upstream-1d /work/upstream/1d-tokenizer [--steps 8]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _measure import machine_info, versions  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "maskgen_cpu_profile.json"


def _profile(run) -> dict:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        run()
    calls, self_us, gemms = Counter(), Counter(), {}
    for e in prof.key_averages(group_by_input_shape=True):
        calls[e.key] += e.count
        self_us[e.key] += e.self_cpu_time_total
        if e.key in ("aten::addmm", "aten::mm"):
            gemms[f"{e.key} {e.input_shapes}"] = {"calls": e.count, "self_cpu_ms": round(e.self_cpu_time_total / 1e3, 1)}
    total = sum(self_us.values())
    top = sorted(self_us, key=self_us.get, reverse=True)[:12]
    return {"aten_calls": sum(calls.values()), "gemm_calls": calls["aten::addmm"] + calls["aten::mm"],
            "self_cpu_total_ms": round(total / 1e3), "gemms_by_shape": gemms,
            "top_ops": {k: {"calls": calls[k], "self_cpu_share": round(self_us[k] / total, 4)} for k in top},
            "calls_per_op": dict(calls)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--upstream-1d", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--profile-steps", type=int, default=2)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=4)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    import bench_maskgen as bench

    original, pipe, feats = bench._build(args.upstream_1d.resolve(), ("original", "vistok"), args.steps)
    impls = ("original", "vistok")
    result = {"benchmark": "MaskGen-VQ-L token sampling: work per implementation (profile) and 1-thread CPU time",
              "device": "cpu", "dtype": "float32", "threads": 1, "machine": machine_info(),
              "versions": versions("torch", "transformers", "diffusers", "vistok"),
              "load_average_at_start": os.getloadavg()[0], "profile": {}, "profile_steps": args.profile_steps}
    with torch.inference_mode():
        for impl in impls:  # warm-up
            bench._run(impl, original, pipe, feats, 1, 1, 0)
        ids = {}
        for impl in impls:
            def run(impl=impl):
                ids[impl] = bench._run(impl, original, pipe, feats, 1, args.profile_steps, bench.SEED)
            result["profile"][impl] = _profile(run)
        result["profile_ids_equal"] = bool(torch.equal(ids["original"].long(), ids["vistok"]))
        cpu, equal = {impl: [] for impl in impls}, []
        for r in range(args.repeats):
            out = {}
            for impl in (impls if r % 2 == 0 else impls[::-1]):
                start = time.thread_time()
                out[impl] = bench._run(impl, original, pipe, feats, 1, args.steps, bench.SEED + 10 + r)
                cpu[impl].append(round(time.thread_time() - start, 3))
            equal.append(bool(torch.equal(out["original"].long(), out["vistok"])))
    ratios = [o / v for o, v in zip(cpu["original"], cpu["vistok"])]
    result.update({"steps": args.steps, "cpu_seconds": cpu, "ids_equal": equal,
                   "median_cpu_seconds": {k: statistics.median(v) for k, v in cpu.items()},
                   "cpu_pair_ratios": [round(x, 3) for x in ratios], "median_cpu_pair_ratio": round(statistics.median(ratios), 3),
                   "load_average_at_end": os.getloadavg()[0]})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("median_cpu_seconds", "median_cpu_pair_ratio", "ids_equal", "profile_ids_equal")}
                     | {f"{i}_gemm_calls": result["profile"][i]["gemm_calls"] for i in impls}))


if __name__ == "__main__":
    main()
