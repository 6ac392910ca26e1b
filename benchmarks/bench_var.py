"""CPU benchmark: vistok's NextScalePipeline against the original ``VAR.autoregressive_infer_cfg``.

Models at released size with random weights (no download): VAR-d16 (depth 16, width 1024, 16 heads,
310M parameters) and the ``vae_ch160v4096z32`` VQVAE (ch 160, 4096 x 32 codebook, 10 scales, 256 px),
built with the original constructors and ``VAR.init_weights`` (the released init recipe), then
converted with vistok's converter functions (``build_vae`` / ``build_transformer``, strict) so both
implementations run the SAME weights.

Measured: the whole generation, from class labels to images in [0, 1] (10 scales with guidance over
a KV cache, then the VQVAE decoder): ``pipe(class_labels, generator=..., output_type="pt")`` vs
``original.autoregressive_infer_cfg(B, labels, g_seed=...)``, both with the README's FID settings
(cfg 1.5, top-k 900, top-p 0.96). fp32, ``torch.inference_mode()``, ``torch.set_num_threads(2)``.
Every timed call of both uses the same seed; the sampled token ids (recorded from the original's
``sample_with_top_k_top_p_``, which runs unchanged) and the images are compared on every call.

Throughput: one process builds both, warms each up, then times ``--repeats`` calls with the two
interleaved (alternating which goes first); median -> images/s. A pair where either call used less
than 1.6 CPU-seconds per wall-second (another process took a core) is redone, up to 3 times. A second
process does the same with vistok's transformer under ``torch.compile`` (first call reported apart).
Peak memory: a fresh process per implementation runs a warm-up call, resets the kernel's RSS
high-water mark and reports the peak above the RSS before one timed call (weights excluded).

No upstream code lives in this repository: the VAR checkout is imported from ``--upstream`` with the
repository-root ``dist`` module stubbed (as tests/fixtures/make_var_fixtures.py does).

    flock /tmp/vistok-bench.lock python benchmarks/bench_var.py --upstream /work/upstream/VAR [--batch 8] [--repeats 3] \
        [--parts eager compile memory]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _measure import bench_threads, paired_speedup, fused_kernels_active, machine_info, peak_rss_since_reset_kb, reset_peak_rss, run_child, versions  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "var_cpu.json"
NUM_THREADS = bench_threads()  # VISTOK_BENCH_THREADS, default 2
MIN_CPU_PER_WALL = 0.8 * NUM_THREADS
MAX_ATTEMPTS = 3
GOAL_RATIO = 1.0
SETTINGS = {"cfg": 1.5, "top_k": 900, "top_p": 0.96}
DEPTH = 16


DEVICE = "cpu"  # --device; the workers read it


def _sync():
    import torch

    if DEVICE.startswith("cuda"):
        torch.cuda.synchronize()


def _import_upstream(upstream: Path):
    import importlib
    import types

    import torch

    sys.dont_write_bytecode = True  # leave no __pycache__ in the upstream checkout
    dist = types.ModuleType("dist")
    dist.initialized = lambda: False
    dist.get_device = lambda: torch.device(DEVICE)  # VAR puts its generator and label prior there
    sys.modules["dist"] = dist
    sys.path.insert(0, str(upstream))
    return importlib.import_module("models"), importlib.import_module("models.var")


def _build(upstream: Path, impls: tuple[str, ...]):
    """(original VAR or None, vistok pipeline or None, recorder list) on the same random weights."""
    import contextlib
    import gc
    import io
    import warnings

    import torch

    warnings.filterwarnings("ignore")
    models, var_module = _import_upstream(upstream)
    torch.manual_seed(DEPTH)
    vae = models.VQVAE(vocab_size=4096, z_channels=32, ch=160, test_mode=True, share_quant_resi=4)
    with contextlib.redirect_stdout(io.StringIO()):  # the constructor and init_weights print
        var = models.VAR(vae_local=vae, num_classes=1000, depth=DEPTH, embed_dim=64 * DEPTH, num_heads=DEPTH,
                         drop_path_rate=0.1 * DEPTH / 24, norm_eps=1e-6, shared_aln=False, cond_drop_rate=0.1,
                         attn_l2_norm=True, flash_if_available=DEVICE != "cpu", fused_if_available=DEVICE != "cpu")
        var.init_weights(init_adaln=0.5, init_adaln_gamma=1e-5, init_head=0.02, init_std=-1)
    vae.to(DEVICE).eval(), var.to(DEVICE).eval()
    pipe = None
    if "vistok" in impls:
        from vistok import NextScalePipeline
        from vistok.modeling.var.convert_var import build_transformer, build_vae

        tokenizer = build_vae(vae.state_dict(), var.patch_nums)
        transformer = build_transformer(var.state_dict(), {"guidance_scale": SETTINGS["cfg"], "top_k": SETTINGS["top_k"],
                                                           "top_p": SETTINGS["top_p"]})
        pipe = NextScalePipeline(image_tokenizer=tokenizer, transformer=transformer).to(DEVICE)
        pipe.set_progress_bar_config(disable=True)
    recorded = []
    if "original" in impls:
        sampler = var_module.sample_with_top_k_top_p_

        def recording_sampler(*args, **kwargs):
            out = sampler(*args, **kwargs)
            recorded.append(out[:, :, 0])
            return out

        var_module.sample_with_top_k_top_p_ = recording_sampler
    else:
        del var, vae
        var = None
    gc.collect()
    return var, pipe, recorded


def _labels(batch: int):
    import torch

    return (torch.arange(batch) * 37 + 5) % 1000


def _run(impl: str, original, pipe, recorded: list, batch: int, seed: int):
    """One generation; returns (images [B, 3, 256, 256] in [0, 1], token ids [B, 680] or None)."""
    import torch

    labels = _labels(batch).to(DEVICE)
    with torch.inference_mode():
        if impl == "original":
            recorded.clear()
            images = original.autoregressive_infer_cfg(B=batch, label_B=labels, g_seed=seed, more_smooth=False, **SETTINGS)
            return images, torch.cat(recorded, dim=1)
        ids, f_hat = pipe.sample(labels.tolist(), generator=torch.Generator(device=DEVICE).manual_seed(seed))
        pixels = pipe.image_tokenizer.decode_latents(f_hat)
        images = pipe.images_from_pixels(pixels, pipe.image_tokenizer.config.pixel_range, "pt", True).images
        return images, ids


def _timed(fn, cpu: list | None = None):
    _sync()
    start, start_cpu = time.perf_counter(), time.process_time()
    out = fn()
    _sync()
    wall = time.perf_counter() - start
    if cpu is not None:
        cpu.append(round((time.process_time() - start_cpu) / wall, 2))
    return wall, out


def _worker_time(upstream: Path, batch: int, repeats: int, compiled: bool) -> dict:
    import torch

    if DEVICE == "cpu":
        torch.set_num_threads(NUM_THREADS)
    t0 = time.perf_counter()
    original, pipe, recorded = _build(upstream, ("original", "vistok"))
    out = {"build_s": round(time.perf_counter() - t0, 1), "batch": batch}
    # the original runs with the fused kernels its constructor finds (requested on CUDA, as its own scripts do)
    out["original_fused_kernels_active"] = fused_kernels_active(original)
    name = "vistok-compile" if compiled else "vistok"
    if compiled:
        try:
            pipe.transformer = torch.compile(pipe.transformer, dynamic=True)
        except Exception as exc:  # noqa: BLE001
            return {**out, "error": f"torch.compile failed: {type(exc).__name__}: {exc}"[:600]}
        try:
            first, _ = _timed(lambda: _run("vistok", original, pipe, recorded, batch, seed=999))
        except Exception as exc:  # noqa: BLE001
            return {**out, "error": f"compiled sampling failed: {type(exc).__name__}: {str(exc).splitlines()[0][:500]}"}
        out["first_call_s"] = round(first, 2)
        _run("original", original, pipe, recorded, batch, seed=999)
    else:  # warm-up
        for impl in ("original", "vistok"):
            _run(impl, original, pipe, recorded, batch, seed=999)
    impls = {"original": "original", name: "vistok"}
    times = {k: [] for k in impls}
    cpu_per_wall = {k: [] for k in impls}
    out.update(ids_equal=[], images_max_abs_diff=[], rejected_contended=[])
    for r in range(repeats):
        order = list(impls) if r % 2 == 0 else list(impls)[::-1]
        for attempt in range(MAX_ATTEMPTS):
            res, t, cpu = {}, {}, {k: [] for k in impls}
            for k in order:
                t[k], res[k] = _timed(lambda: _run(impls[k], original, pipe, recorded, batch, seed=1000 + r), cpu[k])
            if DEVICE != "cpu" or min(v[0] for v in cpu.values()) >= MIN_CPU_PER_WALL or attempt == MAX_ATTEMPTS - 1:
                break
            out["rejected_contended"].append({"repeat": r, "times_s": t, "cpu_per_wall": cpu})
            print(json.dumps({"contended": r, "cpu_per_wall": cpu}), file=sys.stderr, flush=True)
        for k in impls:
            times[k].append(round(t[k], 3))
            cpu_per_wall[k].extend(cpu[k])
        out["ids_equal"].append(bool(torch.equal(res["original"][1], res[name][1])))
        out["images_max_abs_diff"].append(float((res["original"][0] - res[name][0].to(res["original"][0].device)).abs().max()))
        print(json.dumps({"repeat": r, "times_s": t}), file=sys.stderr, flush=True)
    out["times_s"], out["cpu_per_wall"] = times, cpu_per_wall
    for k in impls:
        med = statistics.median(times[k])
        out[k] = {"median_s": round(med, 3), "images_per_s": round(batch / med, 4)}
    out["ratio_vs_original"] = round(out["original"]["median_s"] / out[name]["median_s"], 4)
    out.update(paired_speedup(times["original"], times[name]))
    return out


def _worker_memory(upstream: Path, impl: str, batch: int) -> dict:
    import ctypes
    import gc

    import torch

    if DEVICE == "cpu":
        torch.set_num_threads(NUM_THREADS)
    original, pipe, recorded = _build(upstream, (impl,))
    _run(impl, original, pipe, recorded, batch, seed=999)
    gc.collect()
    if DEVICE.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        baseline = torch.cuda.memory_allocated()
        seconds, _ = _timed(lambda: _run(impl, original, pipe, recorded, batch, seed=1000))
        return {"peak_mib": round((torch.cuda.max_memory_allocated() - baseline) / 2**20, 1),
                "allocated_before_mib": round(baseline / 2**20, 1), "seconds": round(seconds, 3)}
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    baseline = reset_peak_rss()
    seconds, _ = _timed(lambda: _run(impl, original, pipe, recorded, batch, seed=1000))
    return {"peak_mib": round(peak_rss_since_reset_kb(baseline) / 1024, 1), "rss_before_mib": round(baseline / 1024, 1),
            "seconds": round(seconds, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--upstream", type=Path, required=True, help="FoundationVision/VAR checkout")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--device", default="cpu", help="cpu, or cuda (benchmarks/gpu_var.sh)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--parts", nargs="+", choices=("eager", "compile", "memory"), default=["eager", "compile", "memory"],
                        help="what to measure; results of parts not run are kept from an existing --out file "
                             "(so each part can run on its own, under ~10 minutes)")
    parser.add_argument("--_worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    upstream = args.upstream.resolve()
    global DEVICE
    DEVICE = args.device
    if args._worker:
        kind, *rest = args._worker
        if kind in ("time", "compile"):
            res = _worker_time(upstream, args.batch, args.repeats, kind == "compile")
        else:
            res = _worker_memory(upstream, rest[0], args.batch)
        print(json.dumps(res))
        return

    common = ["--upstream", str(upstream), "--batch", str(args.batch), "--repeats", str(args.repeats), "--device", args.device]
    started = time.perf_counter()

    def child(*worker, timeout=1800):
        t = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="bench_var_inductor_") as cache:  # a cold compile
            res = run_child(__file__, [*common, "--_worker", *worker], timeout=timeout, env={"TORCHINDUCTOR_CACHE_DIR": cache})
        res["wall_s"] = round(time.perf_counter() - t, 1)
        print(json.dumps({"done": worker, **{k: res.get(k) for k in ("ratio_vs_original", "peak_mib", "error")}}), flush=True)
        return res

    previous = json.loads(args.out.read_text()) if args.out.is_file() else {}
    results = dict(previous.get("results", {}))
    if previous and previous.get("settings", {}).get("batch") != args.batch:
        results = {}  # a different batch size: earlier parts do not compare
    if "eager" in args.parts:
        results["eager"] = child("time")
    if "compile" in args.parts:
        results["compile"] = child("compile")
    if "memory" in args.parts:
        results["memory"] = {impl: child("memory", impl) for impl in ("original", "vistok")}
    eager = results.get("eager", {})
    goal = {"ratio_target": GOAL_RATIO, "eager_median_pair_ratio": eager.get("median_pair_ratio"),
            "met": (eager.get("median_pair_ratio") or 0) >= GOAL_RATIO}
    report = {
        "benchmark": "VAR-d16 class-conditional generation at 256 px, vistok NextScalePipeline vs original autoregressive_infer_cfg",
        "model": {"var": "d16 (depth 16, width 1024, 16 heads), random weights via VAR.init_weights",
                  "vae": "vae_ch160v4096z32 (ch 160, 4096 x 32, 10 scales), random weights (default init)"},
        "device": args.device,
        "settings": {**SETTINGS, "batch": args.batch, "guidance_batch": 2 * args.batch, "dtype": "float32",
                     "threads": NUM_THREADS, "repeats": args.repeats, "measured": "labels -> images in [0, 1] (sampling + VQVAE decode)"},
        "machine": machine_info(),
        "versions": versions("torch", "transformers", "diffusers", "vistok"),
        "results": results,
        "goal": goal,
        "wall_s_of_parts_run": {"parts": args.parts, "seconds": round(time.perf_counter() - started, 1)},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
