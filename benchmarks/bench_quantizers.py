"""Quantizer speed and peak memory at real tokenizer sizes, side by side in one run:
vistok vs torch.cdist+argmin vs vector-quantize-pytorch (the `bench` extra: pip install vector-quantize-pytorch).

    python benchmarks/bench_quantizers.py [--quick] [--out benchmarks/results/quantizers_cpu.json]

Peak memory: each (case, method) runs in a fresh process; peak memory is the RSS high-water mark above the
RSS after inputs and modules are built (Linux /proc/self/clear_refs), so it counts what the operation itself
allocates (on CUDA: the allocator's peak above what was allocated before the call).
Time: for each case one process builds every method on the same inputs, warms each up, then times them
interleaved (the order rotates every round); a method's time is its median, and its ratio against the baseline
(cdist for VQ, vector-quantize-pytorch otherwise) is the median of the per-round ratios. (The LFQ cases at full
size run only in the per-process pass: the baseline materialises tokens x 2^bits matrices.)
Goals (issue #3, 2-core CPU): VQ lookup peak memory <= 1/8 of cdist's at equal or better time;
LFQ over 16384 tokens with 2^18 codes, entropy loss included, within 2 GiB.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _measure import machine_info, peak_rss_since_reset_kb, reset_peak_rss, run_child, versions  # noqa: E402

TOKENS = 16384
VQ_CASES = [(k, d) for k in (4096, 16384) for d in (8, 12, 32, 64)]
LFQ_BITS = (16, 18)


# Address-space cap for the baseline library's processes: a clean MemoryError instead of the
# machine's OOM killer (vector-quantize-pytorch's LFQ materialises tokens x 2^bits matrices).
BASELINE_MEMORY_CAP = 12 * 2**30


def _setup(device: str, cap_memory: bool) -> None:
    if cap_memory and device == "cpu":
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (BASELINE_MEMORY_CAP, BASELINE_MEMORY_CAP))
    import torch

    torch.set_num_threads(2)
    if device != "cpu":
        # (on CPU the default-device mode would add per-call dispatch overhead to every method measured)
        torch.set_default_device(device)


def _build_call(case: str, method: str):
    """A no-argument callable running ``method`` on ``case``'s inputs (the same inputs for every method: seed 0)."""
    import torch

    torch.manual_seed(0)
    kind, *params = case.split(":")
    if kind == "vq":
        k, d = map(int, params)
        z, codebook = torch.randn(TOKENS, d), torch.randn(k, d)
        if method == "cdist":
            fn = lambda: torch.cdist(z, codebook).argmin(dim=1)  # noqa: E731
        elif method in ("vistok", "vistok-triton"):
            from vistok.kernels import nearest_code

            backend = "triton" if method == "vistok-triton" else "torch"
            fn = lambda: nearest_code(z, codebook, backend=backend)  # noqa: E731
        else:
            from vector_quantize_pytorch import VectorQuantize

            vq = VectorQuantize(dim=d, codebook_size=k).eval()
            vq._codebook.embed.data.copy_(codebook[None])
            vq._codebook.initted.data.fill_(True)
            x = z[None]
            fn = lambda: vq(x)[1]  # noqa: E731
        grad = False
    elif kind == "fsq":
        levels = [8, 8, 8, 5, 5, 5]
        z = torch.randn(1, TOKENS, len(levels), requires_grad=True)
        if method == "vistok":
            from vistok.modeling.quantizers import FSQ

            q = FSQ(levels)
            fn = lambda: q(z[0]).quantized  # noqa: E731
        else:
            from vector_quantize_pytorch import FSQ as VFSQ

            q = VFSQ(levels)
            fn = lambda: q(z)[0]  # noqa: E731
        grad = True
    elif kind == "lfq":
        bits = int(params[0])
        tokens = int(params[1]) if len(params) > 1 else TOKENS
        z = torch.randn(1, tokens, bits, requires_grad=True)
        if method == "vistok":
            from vistok.modeling.quantizers import LFQ

            q = LFQ(num_bits=bits, entropy_weight=0.1).train()
            def fn():
                out = q(z[0])
                return out.quantized.sum() + out.loss
        else:
            from vector_quantize_pytorch import LFQ as VLFQ

            q = VLFQ(dim=bits, codebook_size=2**bits, entropy_loss_weight=0.1, commitment_loss_weight=0.25).train()
            def fn():
                quantized, _, aux = q(z)
                return quantized.sum() + aux
        grad = True
    else:
        raise ValueError(case)

    def call():
        if grad:
            z.grad = None
            fn().backward() if kind == "lfq" else fn().sum().backward()
        else:
            with torch.inference_mode():
                fn()

    return call


def _child(case: str, method: str, repeats: int, device: str) -> dict:
    """Peak memory (and a time) of one method, alone in this process."""
    _setup(device, cap_memory=method == "vector-quantize-pytorch")
    import torch

    call = _build_call(case, method)
    cuda = device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    call()  # warm-up
    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        baseline = torch.cuda.memory_allocated()
    else:
        baseline = reset_peak_rss()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        sync()
        times.append(time.perf_counter() - start)
    peak = (torch.cuda.max_memory_allocated() - baseline) / 2**20 if cuda else peak_rss_since_reset_kb(baseline) / 1024
    return {"seconds": statistics.median(times), "peak_mib": round(peak, 1), "repeats": repeats}


def _child_interleaved(case: str, methods: list[str], repeats: int, device: str) -> dict:
    """Every method of one case in this process, timed interleaved; ratios per round against methods[0]."""
    _setup(device, cap_memory=True)
    import torch

    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    calls = {m: _build_call(case, m) for m in methods}
    for call in calls.values():  # warm-up
        call()
    sync()
    times = {m: [] for m in methods}
    for r in range(repeats):
        shift = r % len(methods)
        for m in methods[shift:] + methods[:shift]:
            start = time.perf_counter()
            calls[m]()
            sync()
            times[m].append(time.perf_counter() - start)
    base = methods[0]
    return {"baseline": base, "repeats": repeats,
            "seconds": {m: statistics.median(t) for m, t in times.items()},
            "median_round_ratio_baseline_over_method": {m: statistics.median(b / t for b, t in zip(times[base], times[m]))
                                                        for m in methods[1:]}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer cases and repeats (smoke run)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "quantizers_cpu.json"))
    parser.add_argument("--device", default="cpu", help="cpu or cuda (benchmarks/gpu_quantizers.sh)")
    parser.add_argument("--child", nargs=3, metavar=("CASE", "METHOD", "REPEATS"), help=argparse.SUPPRESS)
    parser.add_argument("--child-interleaved", nargs=3, metavar=("CASE", "METHODS", "REPEATS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args.child[0], args.child[1], int(args.child[2]), args.device)))
        return
    if args.child_interleaved:
        case, methods, repeats = args.child_interleaved
        print(json.dumps(_child_interleaved(case, methods.split(","), int(repeats), args.device)))
        return
    cuda = args.device.startswith("cuda")

    vq_cases = VQ_CASES[:2] if args.quick else VQ_CASES
    vq_methods = ("cdist", "vistok", "vistok-triton", "vector-quantize-pytorch") if cuda else ("cdist", "vistok", "vector-quantize-pytorch")
    plan = [(f"vq:{k}:{d}", m, 10 if cuda else 3) for k, d in vq_cases for m in vq_methods]
    plan += [("fsq", m, 3) for m in ("vistok", "vector-quantize-pytorch")]
    bits = LFQ_BITS[:1] if args.quick else LFQ_BITS
    plan += [(f"lfq:{b}", m, 1 if b == 18 else 2) for b in bits for m in ("vistok", "vector-quantize-pytorch")]
    # a size the baseline can finish (reference notes: ~7 GiB), for a like-for-like time
    plan += [("lfq:16:4096", m, 1) for m in ("vistok", "vector-quantize-pytorch")]

    results = []
    for case, method, repeats in plan:
        res = run_child(__file__, ["--device", args.device, "--child", case, method, str(repeats)], timeout=900)
        results.append({"case": case, "method": method, **res})
        print(f"{case:<12} {method:<24} " + (f"{res['seconds']:8.3f} s  {res['peak_mib']:9.1f} MiB" if "seconds" in res else res["error"]), flush=True)

    # time, like with like: all methods of a case in one process, interleaved
    interleaved_plan = [(f"vq:{k}:{d}", vq_methods, 10 if cuda else 5) for k, d in vq_cases]
    interleaved_plan += [("fsq", ("vector-quantize-pytorch", "vistok"), 5),
                         ("lfq:16:4096", ("vector-quantize-pytorch", "vistok"), 5)]
    interleaved = []
    for case, methods, repeats in interleaved_plan:
        res = run_child(__file__, ["--device", args.device, "--child-interleaved", case, ",".join(methods), str(repeats)],
                        timeout=900)
        interleaved.append({"case": case, **res})
        print(f"{case:<12} interleaved " + json.dumps(res.get("median_round_ratio_baseline_over_method", res)), flush=True)

    def ratio(case, method):
        row = next((r for r in interleaved if r["case"] == case and "seconds" in r), None)
        return row and row["median_round_ratio_baseline_over_method"].get(method)

    def get(case, method):
        return next((r for r in results if r["case"] == case and r["method"] == method and "seconds" in r), None)

    goals = []
    for k, d in vq_cases:
        ours, base = get(f"vq:{k}:{d}", "vistok"), get(f"vq:{k}:{d}", "cdist")
        fused = get(f"vq:{k}:{d}", "vistok-triton")
        fused_ratio, ours_ratio = ratio(f"vq:{k}:{d}", "vistok-triton"), ratio(f"vq:{k}:{d}", "vistok")
        if cuda and fused_ratio:
            goals.append({"goal": f"GPU fused VQ {TOKENS}x{k} d{d} >= 2x cdist+argmin (interleaved, median round ratio)",
                          "speedup_vs_cdist": round(fused_ratio, 3), "met": fused_ratio >= 2})
        if ours and base and ours_ratio and not cuda:
            goals.append({"goal": f"VQ {TOKENS}x{k} d{d}: memory <= cdist/8 at equal or better time",
                          "memory_ratio": round(ours["peak_mib"] / max(base["peak_mib"], 1e-9), 4),
                          "speedup_vs_cdist": round(ours_ratio, 3),
                          "met": ours["peak_mib"] <= base["peak_mib"] / 8 and ours_ratio >= 1})
    lfq = get("lfq:18", "vistok")
    if lfq:
        goals.append({"goal": f"LFQ 2^18 codes over {TOKENS} tokens (entropy loss, fwd+bwd) within 2 GiB",
                      "peak_mib": lfq["peak_mib"], "met": lfq["peak_mib"] <= 2048})
    report = {
        "benchmark": "quantizers", "device": args.device, "tokens": TOKENS, "machine": machine_info(),
        "versions": versions("torch", "vistok", "vector-quantize-pytorch"),
        "method": ("memory: fresh process per (case, method), peak = RSS high-water above the post-setup RSS (CUDA: "
                   "allocator peak above the pre-call allocation); time: one process per case, methods interleaved, "
                   "ratio = median of per-round ratios against the baseline"),
        "results": results, "interleaved_time": interleaved, "goals": goals,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=2))
    tmp.replace(out)
    for g in goals:
        print(("MET   " if g["met"] else "MISSED") + " " + g["goal"], {k: v for k, v in g.items() if k not in ("goal", "met")})


if __name__ == "__main__":
    main()
