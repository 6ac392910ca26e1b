"""CPU benchmark: vistok's LlamaGen sampler against the original KV-cached ``generate`` of
FoundationVision/LlamaGen (autoregressive/models/generate.py), in the same run.

Model: GPT-B (768 wide, 12 layers, 12 heads, 16384 codes) at 256 px (16x16 = 256 tokens), class-
conditional, with the original's own initialisation under a fixed seed (random weights; the zero-
initialised output head gets N(0, 0.02) so that sampling is not uniform). Its state dict goes
through vistok's converter (``build_gpt``) into ``LlamaGenTransformer``, so both run the SAME weights.
Sampling as sample_c2i.py: guidance 4.0 (a [cond; uncond] batch of 2B), top_k 2000, top_p 1.0,
temperature 1.0; fp32; ``torch.set_num_threads(2)``; ``torch.inference_mode()``.

Measured: token sampling only -- ``AutoregressiveImagePipeline.sample_tokens`` vs ``generate`` (no
VQ decode; the pipeline holds a tiny random VQ tokenizer with the matching codebook that is never
called). Every timed call of both uses the same seed (vistok: ``generator=``; original: the global
``torch.manual_seed``) and the token ids of the two are compared on every call.

* throughput: one process builds both, warms each up, then times ``--repeats`` calls with the two
  interleaved (alternating which goes first); median -> tokens/s and images/s;
* ``--precision bf16``: both in bfloat16 the way sample_c2i.py's ``--precision bf16`` runs the original (the model
  cast to bf16; its KV cache takes the weights' dtype); vistok's transformer cast the same way. Token ids then differ
  between the two by rounding, so the JSON reports their agreement instead of requiring equality;
* ``--part compile`` compiles BOTH: vistok's decode step (``sample_tokens(compile=True)``) against the original
  compiled the way sample_c2i.py ``--compile`` does (``torch.compile(model, mode="reduce-overhead",
  fullgraph=True)``); the first call (compilation) is reported separately from the steady state;
* peak memory: a fresh process per implementation builds only it, runs one short warm-up call,
  resets the kernel's RSS high-water mark and reports the peak above the RSS before one full call
  (KV cache, activations and workspace; weights excluded).

No upstream code lives in this repository: the checkout is imported from ``--upstream``.

Usage (from the repository root; run each part under ``flock /tmp/vistok-bench.lock``; a decode step
of GPT-B reads all 444 MB of fp32 weights, so one 256-token call takes about a minute on 2 cores):

    python benchmarks/bench_llamagen.py --upstream /work/upstream/LlamaGen --part eager   [--batch 8] [--repeats 2]
    python benchmarks/bench_llamagen.py --upstream /work/upstream/LlamaGen --part memory
    python benchmarks/bench_llamagen.py --upstream /work/upstream/LlamaGen --part compile
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _measure import bench_threads, paired_speedup, machine_info, peak_rss_since_reset_kb, reset_peak_rss, run_child, versions  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "llamagen_cpu.json"
NUM_THREADS = bench_threads()  # VISTOK_BENCH_THREADS, default 2
GOAL_RATIO = 1.0
SETTINGS = dict(guidance_scale=4.0, cfg_interval=-1, temperature=1.0, top_k=2000, top_p=1.0)
WEIGHTS_SEED = 256
STEADY_MAX_CALLS = 6


def _build(upstream: Path, impls: tuple[str, ...], device: str = "cpu", dtype=None):
    """(original or None, vistok pipeline or None) on the same random weights."""
    import warnings

    import torch

    warnings.filterwarnings("ignore")
    sys.dont_write_bytecode = True  # leave no __pycache__ in the upstream checkout
    sys.path.insert(0, str(upstream))
    from autoregressive.models.gpt import GPT_models

    torch.manual_seed(WEIGHTS_SEED)
    original = GPT_models["GPT-B"](block_size=256, cls_token_num=1, model_type="c2i", token_dropout_p=0.0,
                                   resid_dropout_p=0.0, ffn_dropout_p=0.0).eval()
    torch.nn.init.normal_(original.output.weight, std=0.02)
    pipe = None
    if "vistok" in impls:
        from vistok import AutoregressiveImagePipeline, LlamaGenVQConfig, LlamaGenVQModel
        from vistok.modeling.llamagen.convert_llamagen import build_gpt

        transformer = build_gpt(original.state_dict(), 256, sampling=SETTINGS)
        tokenizer = LlamaGenVQModel(LlamaGenVQConfig(image_size=32, codebook_size=16384, hidden_channels=32,
                                                     encoder_channel_mult=[1, 1], z_channels=32)).eval()
        pipe = AutoregressiveImagePipeline(image_tokenizer=tokenizer, transformer=transformer).to(device)
        if dtype is not None:
            pipe.transformer.to(dtype)
        pipe.set_progress_bar_config(disable=True)
    if "original" in impls:
        original = original.to(device=device, dtype=dtype)  # sample_c2i.py: .to(device=device, dtype=precision)
    else:
        original = None
    import gc

    gc.collect()
    return original, pipe


def _labels(batch: int, device="cpu"):
    import torch

    return ((torch.arange(batch) * 37 + 5) % 1000).to(device)


def _run(impl: str, original, pipe, batch: int, seed: int, num_tokens: int = 256, compile: bool = False, device="cpu"):
    import torch

    labels = _labels(batch, device)
    with torch.inference_mode():
        if impl == "original":
            from autoregressive.models.generate import generate

            torch.manual_seed(seed)
            return generate(original, labels, num_tokens, cfg_scale=SETTINGS["guidance_scale"], cfg_interval=SETTINGS["cfg_interval"],
                            temperature=SETTINGS["temperature"], top_k=SETTINGS["top_k"], top_p=SETTINGS["top_p"],
                            sample_logits=True).long()
        gen = torch.Generator(device=device).manual_seed(seed)
        if num_tokens < 256:  # a short call (warm-up, --tokens): stop after num_tokens tokens
            return pipe._generate({"class_labels": labels}, labels.shape[0], None, pipe._settings(**SETTINGS), gen, True,
                                  compile, num_tokens=num_tokens)
        return pipe.sample_tokens(labels.tolist(), generator=gen, compile=compile, **SETTINGS).flatten(1)


def _sync(device):
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def _timed(fn, device="cpu"):
    """(wall seconds, CPU seconds of this process, result)."""
    _sync(device)
    start, start_cpu = time.perf_counter(), time.process_time()
    out = fn()
    _sync(device)
    return time.perf_counter() - start, time.process_time() - start_cpu, out


def worker_time(upstream: Path, batch: int, repeats: int, compiled: bool, device: str = "cpu", dtype=None,
                tokens: int = 256, steady_warmup: bool = False) -> dict:
    import torch

    if device == "cpu":
        torch.set_num_threads(NUM_THREADS)
    t0 = time.perf_counter()
    original, pipe = _build(upstream, ("original", "vistok"), device, dtype)
    out = {"build_s": round(time.perf_counter() - t0, 1)}
    name = "vistok-compile" if compiled else "vistok"
    original_name = "original-compile" if compiled else "original"
    if compiled:  # as sample_c2i.py --compile
        original = torch.compile(original, mode="reduce-overhead", fullgraph=True)
    # warm-up (oneDNN primitive caches, allocator; compilation of the decode step and the prefill)
    warm = min(tokens, 8) if not compiled else tokens
    wall, _, _ = _timed(lambda: _run("vistok", original, pipe, batch, 0, num_tokens=warm, compile=compiled, device=device), device)
    out[f"warmup_s ({warm} tokens" + (", compilation included)" if compiled else ")")] = {"vistok": round(wall, 2)}
    wall, _, _ = _timed(lambda: _run("original", original, pipe, batch, 0, num_tokens=warm, device=device), device)
    out[f"warmup_s ({warm} tokens" + (", compilation included)" if compiled else ")")]["original"] = round(wall, 2)
    if steady_warmup:
        # full-length calls until two in a row agree within 5 % (at most STEADY_MAX_CALLS): the original's calls get
        # faster over the first few in a process (it allocates a fresh KV cache per call), so pairs timed before that
        # settles measure a transient, not the steady state a sampling run lives in
        out["steady_warmup_s"] = {}
        for impl in ("original", "vistok"):
            calls = []
            while len(calls) < STEADY_MAX_CALLS and not (len(calls) >= 2 and abs(calls[-1] / calls[-2] - 1) <= 0.05):
                wall, _, _ = _timed(lambda impl=impl: _run(impl, original, pipe, batch, 1, num_tokens=tokens,
                                                           compile=compiled, device=device), device)
                calls.append(round(wall, 3))
            out["steady_warmup_s"][impl] = calls
    times = {name: [], original_name: []}
    cpu = {name: [], original_name: []}
    equal, agreement, loads = [], [], []
    for r in range(repeats):
        order = (original_name, name) if r % 2 == 0 else (name, original_name)
        ids = {}
        for impl in order:
            wall, load, ids[impl] = _timed(lambda impl=impl: _run("original" if impl == original_name else "vistok", original, pipe,
                                                                   batch, 100 + r, num_tokens=tokens, compile=compiled,
                                                                   device=device), device)
            times[impl].append(round(wall, 3))
            cpu[impl].append(round(load, 2))
        a, b = ids[name].cpu().reshape(batch, -1), ids[original_name].cpu().reshape(batch, -1)
        equal.append(bool(torch.equal(a, b)))
        agreement.append(round(float((a == b).float().mean()), 4))
        loads.append(round(os.getloadavg()[0], 2))
    medians = {k: statistics.median(v) for k, v in times.items()}
    out.update({
        "batch": batch, "tokens_per_image": tokens, "dtype": str(dtype or torch.float32).replace("torch.", ""),
        **paired_speedup(times[original_name], times[name]),
        "token_agreement_every_call": agreement, "seconds": times, "cpu_seconds": cpu,
        "cpu_seconds_per_wall_second": {k: [round(c / w, 2) for c, w in zip(cpu[k], times[k])] for k in times},
        "token_ids_equal_every_call": all(equal), "load_average_1min_after_each_pair": loads,
        "median_s": {k: round(v, 3) for k, v in medians.items()},
        "images_per_s": {k: round(batch / v, 3) for k, v in medians.items()},
        "tokens_per_s": {k: round(batch * tokens / v, 1) for k, v in medians.items()},
        "speedup_vs_original": round(medians[original_name] / medians[name], 3),
        # on a shared machine the CPU time a call consumed is steadier than its wall time
        "cpu_time_ratio_original_over_vistok": round(statistics.median(cpu[original_name]) / statistics.median(cpu[name]), 3),
    })
    return out


def worker_memory(upstream: Path, impl: str, batch: int, device: str = "cpu") -> dict:
    import gc
    import ctypes

    import torch

    if device == "cuda":
        original, pipe = _build(upstream, (impl,), device)
        _run(impl, original, pipe, batch, 0, num_tokens=4, device=device)
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        _run(impl, original, pipe, batch, 1, device=device)
        torch.cuda.synchronize()
        return {"impl": impl, "batch": batch, "peak_cuda_allocated_above_baseline_mib": round((torch.cuda.max_memory_allocated() - base) / 2**20, 1),
                "baseline_allocated_mib": round(base / 2**20, 1)}
    torch.set_num_threads(NUM_THREADS)
    original, pipe = _build(upstream, (impl,))
    _run(impl, original, pipe, batch, 0, num_tokens=4)  # warm-up, short
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    base = reset_peak_rss()
    _run(impl, original, pipe, batch, 1)
    return {"impl": impl, "batch": batch, "peak_rss_above_baseline_mib": round(peak_rss_since_reset_kb(base) / 1024, 1),
            "baseline_rss_mib": round(base / 1024, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--upstream", type=Path, required=True, help="a FoundationVision/LlamaGen checkout")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--part", choices=["eager", "memory", "compile"], default="eager",
                        help="what to measure in this run (each merges into --out)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                        help="bf16: both cast to bfloat16 as sample_c2i.py --precision bf16 (results under <part>_bf16)")
    parser.add_argument("--tokens", type=int, default=256, help="tokens per timed call (a smoke run: fewer than 256)")
    parser.add_argument("--steady-warmup", action="store_true",
                        help="before timing, full-length calls of each side until two in a row agree within 5%% "
                             "(results under <part>_steady)")
    parser.add_argument("--out", type=Path, help=f"default {DEFAULT_OUT} (llamagen_cuda.json with --device cuda)")
    parser.add_argument("--worker", choices=["time", "time-compile", "memory-vistok", "memory-original"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.out = args.out or (DEFAULT_OUT if args.device == "cpu" else DEFAULT_OUT.with_name("llamagen_cuda.json"))
    if args.worker:
        if args.worker.startswith("time"):
            import torch

            dtype = torch.bfloat16 if args.precision == "bf16" else None
            result = worker_time(args.upstream, args.batch, args.repeats, args.worker == "time-compile", args.device, dtype,
                                 args.tokens, args.steady_warmup)
        else:
            result = worker_memory(args.upstream, args.worker.split("-")[1], args.batch, args.device)
        print(json.dumps(result))
        return

    common = ["--upstream", str(args.upstream), "--batch", str(args.batch), "--repeats", str(args.repeats), "--device", args.device,
              "--precision", args.precision, "--tokens", str(args.tokens)] + ["--steady-warmup"] * args.steady_warmup
    key = args.part if args.precision == "fp32" else f"{args.part}_{args.precision}"
    key += "_steady" if args.steady_warmup else ""
    env = {"PYTHONPATH": str(REPO_ROOT / "src")}
    # each part is one run of a few minutes; parts merge into the same JSON
    result = json.loads(args.out.read_text()) if args.out.is_file() else {}
    result.update({
        "benchmark": "LlamaGen GPT-B c2i 256 px token sampling, vistok AutoregressiveImagePipeline.sample_tokens vs original generate",
        "machine": machine_info(), "device": args.device, "versions": versions("torch", "transformers", "diffusers"), "threads": NUM_THREADS if args.device == "cpu" else None,
        "dtype": "float32 unless a part's key ends in _bf16", "settings": SETTINGS, "goal": f"vistok eager >= {GOAL_RATIO}x the original's images/s",
    })
    if args.part == "eager":
        # every eager run is kept (runs on a shared machine vary); "eager" is the latest
        runs = result.setdefault(f"{key}_runs", [result[key]] if key in result else [])
        result[key] = run_child(__file__, [*common, "--worker", "time"], timeout=1800, env=env)
        runs.append(result[key])
        print(json.dumps(result[key]), flush=True)
    elif args.part == "memory":
        result[key] = [run_child(__file__, [*common, "--worker", f"memory-{impl}"], timeout=900, env=env)
                       for impl in ("vistok", "original")]
        print(json.dumps(result[key]), flush=True)
    else:
        result[key] = run_child(__file__, [*common, "--worker", "time-compile"], timeout=1800, env=env)
        print(json.dumps(result[key]), flush=True)
    speedup = result.get("eager", {}).get("speedup_vs_original")
    result["goal_met"] = bool(speedup is not None and speedup >= GOAL_RATIO and result["eager"].get("token_ids_equal_every_call"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
