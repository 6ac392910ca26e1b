"""CPU benchmark: vistok's NextScaleTextToImagePipeline against the original STAR ``VAR.autoregressive_infer_cfg``.

Models at released size with random weights (no download): STAR-256 d16 (depth 16, width 1024, 16 heads,
cross-attention to 1024-wide text, RoPE theta 10000 / norm 64, 10 scales at 256 px) and VAR's
``vae_ch160v4096z32`` VQVAE, built with the original constructors (``train_mode='none'``) and
``VAR.init_weights`` (the released init recipe), then converted with vistok's converter functions (strict),
so both run the SAME weights. The text side is random CLIP-shaped features (77 tokens x 1024, the first 8 valid,
pooled 1024) for [prompts; ""] (the CLIP tower itself is the same transformers model on both sides).

Measured: text features -> images in [0, 1] (10 scales with guidance over a KV cache, then the VQVAE decoder):
``pipe.sample(prompt_embeds=..., generator=...)`` + decode vs ``original.autoregressive_infer_cfg(...,
g_seed=...)``, both with sample.py's settings (cfg 4.5, top-k 600, top-p 0.8, no masking sampler).
fp32, ``torch.inference_mode()``, ``torch.set_num_threads(2)``. Every timed call of both uses the same seed;
the sampled token ids (recorded from the codes the original hands ``get_next_autoregressive_input``, which runs
unchanged) and the images are compared on every call. Throughput: one process builds both, warms each up, then
times ``--repeats`` calls interleaved (alternating which goes first); median -> images/s; a pair where either call
used < 1.6 CPU-seconds per wall-second is redone (up to 3 times). Peak memory: a fresh process per implementation
runs a warm-up call, resets the RSS high-water mark and reports the peak above the RSS before one timed call.

No upstream code lives in this repository: the STAR checkout is imported from ``--upstream`` with ``dist`` and the
unused optional imports stubbed (as tests/fixtures/make_star_fixtures.py does).

    flock /tmp/vistok-bench.lock python benchmarks/bench_star.py --upstream /tmp/star [--batch 2] [--repeats 3] [--parts eager memory]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _measure import bench_threads, paired_speedup, fused_kernels_active, machine_info, peak_rss_since_reset_kb, reset_peak_rss, run_child, versions  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "star_cpu.json"
NUM_THREADS = bench_threads()  # VISTOK_BENCH_THREADS, default 2
MIN_CPU_PER_WALL = 0.8 * NUM_THREADS
MAX_ATTEMPTS = 3
GOAL_RATIO = 1.0
SETTINGS = {"cfg": 4.5, "top_k": 600, "top_p": 0.8}
DEPTH = 16
PATCH_NUMS = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)
# --size 1024 (benchmarks/gpu_star.sh): the star-1024 d30 shape, 14 scales to 64 x 64 (9451 tokens)
SIZES = {256: (16, PATCH_NUMS), 1024: (30, (1, 2, 3, 4, 5, 7, 9, 12, 16, 21, 27, 36, 48, 64))}
DEVICE = "cpu"


def _sync():
    import torch

    if DEVICE.startswith("cuda"):
        torch.cuda.synchronize()


def _import_upstream(upstream: Path):
    import importlib
    import types

    import torch

    sys.dont_write_bytecode = True
    dist = types.ModuleType("dist")
    dist.initialized = lambda: False
    dist.get_device = lambda: torch.device(DEVICE)
    sys.modules["dist"] = dist
    sys.path.insert(0, str(REPO_ROOT / "tests" / "fixtures"))
    from upstream_stubs import install_stubs

    install_stubs(("ftfy", "bs4"))
    sys.path.insert(0, str(upstream))
    return importlib.import_module("models")


def _build(upstream: Path, impls: tuple[str, ...]):
    """(original STAR or None, vistok pipeline or None, recorder list, text features) on the same random weights."""
    import contextlib
    import gc
    import io
    import warnings

    import torch

    warnings.filterwarnings("ignore")
    models = _import_upstream(upstream)
    torch.manual_seed(DEPTH)
    with contextlib.redirect_stdout(io.StringIO()):
        vae = models.VQVAE(vocab_size=4096, z_channels=32, ch=160, test_mode=True, share_quant_resi=4, v_patch_nums=PATCH_NUMS)
        var = models.VAR(vae_local=vae, depth=DEPTH, embed_dim=64 * DEPTH, num_heads=DEPTH, drop_path_rate=0.1 * DEPTH / 24,
                         norm_eps=1e-6, shared_aln=False, attn_l2_norm=True, enable_cross=True, in_dim_cross=1024,
                         patch_nums=PATCH_NUMS, flash_if_available=DEVICE != "cpu", fused_if_available=DEVICE != "cpu", rotary_pos_emb=True,
                         absolute_lvl_emb=True, rope_theta=10000, rope_norm=64.0, enable_logit_norm=True,
                         enable_adaptive_norm=False, train_mode="none")
        var.init_weights(init_adaln=0.5, init_adaln_gamma=5e-5, init_head=0.02, init_std=-1)
    vae.to(DEVICE).eval(), var.to(DEVICE).eval()
    pipe = None
    if "vistok" in impls:
        from vistok import NextScaleTextToImagePipeline
        from vistok.modeling.star.convert_star import build_transformer
        from vistok.modeling.var.convert_var import build_vae

        tokenizer = build_vae(vae.state_dict(), PATCH_NUMS)
        transformer = build_transformer(var.state_dict(), PATCH_NUMS, {"guidance_scale": SETTINGS["cfg"], "top_k": SETTINGS["top_k"],
                                                                       "top_p": SETTINGS["top_p"]})
        pipe = NextScaleTextToImagePipeline(image_tokenizer=tokenizer, transformer=transformer).to(DEVICE)
        pipe.set_progress_bar_config(disable=True)
    recorded = []
    if "original" in impls:
        quant = vae.quantize
        original = quant.get_next_autoregressive_input

        def recording(si, SN, f_hat, h_BChw):
            recorded.append(h_BChw.flatten(2).transpose(1, 2).clone())
            return original(si, SN, f_hat, h_BChw)

        quant.get_next_autoregressive_input = recording
        codebook = quant.embedding.weight
    else:
        del var, vae
        var, codebook = None, None
    gc.collect()
    return var, pipe, recorded, codebook


def _text(batch: int):
    import torch

    g = torch.Generator().manual_seed(0)
    states = torch.randn(2 * batch, 77, 1024, generator=g)
    mask = torch.zeros(2 * batch, 77, dtype=torch.long)
    mask[:, :8] = 1
    return states.to(DEVICE), mask.to(DEVICE), torch.randn(2 * batch, 1024, generator=g).to(DEVICE)


def _ids(recorded, codebook):
    import torch

    out = []
    for h in recorded:
        d = torch.cdist(h.double(), codebook.double()[None])
        out.append(d.argmin(-1))
    return torch.cat(out, dim=1)


def _run(impl, original, pipe, recorded, codebook, batch, seed):
    import torch

    states, mask, pooled = _text(batch)
    with torch.inference_mode():
        if impl == "original":
            recorded.clear()
            images = original.autoregressive_infer_cfg(B=batch, label_B=None, encoder_hidden_states=states, encoder_attention_mask=mask,
                                                       encoder_pool_feat=pooled, g_seed=seed, more_smooth=False, w_mask=False,
                                                       sample_version="1024", **SETTINGS)
            return images, _ids(recorded, codebook)
        b = batch
        ids, f_hat = pipe.sample(prompt_embeds=states[:b], prompt_attention_mask=mask[:b], pooled_prompt_embeds=pooled[:b],
                                 negative_prompt_embeds=states[b:], negative_prompt_attention_mask=mask[b:],
                                 negative_pooled_prompt_embeds=pooled[b:], generator=torch.Generator(device=DEVICE).manual_seed(seed))
        pixels = pipe.image_tokenizer.decode_latents(f_hat)
        images = pipe.images_from_pixels(pixels, pipe.image_tokenizer.config.pixel_range, "pt", True).images
        return images, ids


def _timed(fn, cpu=None):
    _sync()
    start, start_cpu = time.perf_counter(), time.process_time()
    out = fn()
    _sync()
    wall = time.perf_counter() - start
    if cpu is not None:
        cpu.append(round((time.process_time() - start_cpu) / wall, 2))
    return wall, out


def _worker_time(upstream: Path, batch: int, repeats: int) -> dict:
    import torch

    if DEVICE == "cpu":
        torch.set_num_threads(NUM_THREADS)
    t0 = time.perf_counter()
    original, pipe, recorded, codebook = _build(upstream, ("original", "vistok"))
    out = {"build_s": round(time.perf_counter() - t0, 1), "batch": batch}
    # the original runs with the fused kernels its constructor finds (requested on CUDA, as its own scripts do)
    out["original_fused_kernels_active"] = fused_kernels_active(original)
    for impl in ("original", "vistok"):
        _run(impl, original, pipe, recorded, codebook, batch, seed=999)
    impls = ("original", "vistok")
    times = {k: [] for k in impls}
    cpu_per_wall = {k: [] for k in impls}
    out.update(ids_equal=[], images_max_abs_diff=[], rejected_contended=[])
    for r in range(repeats):
        order = list(impls) if r % 2 == 0 else list(impls)[::-1]
        for attempt in range(MAX_ATTEMPTS):
            res, t, cpu = {}, {}, {k: [] for k in impls}
            for k in order:
                t[k], res[k] = _timed(lambda: _run(k, original, pipe, recorded, codebook, batch, seed=1000 + r), cpu[k])
            if DEVICE != "cpu" or min(v[0] for v in cpu.values()) >= MIN_CPU_PER_WALL or attempt == MAX_ATTEMPTS - 1:
                break
            out["rejected_contended"].append({"repeat": r, "times_s": t, "cpu_per_wall": cpu})
        for k in impls:
            times[k].append(round(t[k], 3))
            cpu_per_wall[k].extend(cpu[k])
        out["ids_equal"].append(bool(torch.equal(res["original"][1].cpu(), res["vistok"][1].cpu())))
        out["images_max_abs_diff"].append(float((res["original"][0] - res["vistok"][0].to(res["original"][0].device)).abs().max()))
        print(json.dumps({"repeat": r, "times_s": t}), file=sys.stderr, flush=True)
    out["times_s"], out["cpu_per_wall"] = times, cpu_per_wall
    for k in impls:
        med = statistics.median(times[k])
        out[k] = {"median_s": round(med, 3), "images_per_s": round(batch / med, 4)}
    out["ratio_vs_original"] = round(out["original"]["median_s"] / out["vistok"]["median_s"], 4)
    out.update(paired_speedup(times["original"], times["vistok"]))
    return out


def _worker_memory(upstream: Path, impl: str, batch: int) -> dict:
    import ctypes
    import gc

    import torch

    if DEVICE == "cpu":
        torch.set_num_threads(NUM_THREADS)
    original, pipe, recorded, codebook = _build(upstream, (impl,))
    _run(impl, original, pipe, recorded, codebook, batch, seed=999)
    gc.collect()
    if DEVICE.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        baseline = torch.cuda.memory_allocated()
        seconds, _ = _timed(lambda: _run(impl, original, pipe, recorded, codebook, batch, seed=1000))
        return {"peak_mib": round((torch.cuda.max_memory_allocated() - baseline) / 2**20, 1),
                "allocated_before_mib": round(baseline / 2**20, 1), "seconds": round(seconds, 3)}
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    baseline = reset_peak_rss()
    seconds, _ = _timed(lambda: _run(impl, original, pipe, recorded, codebook, batch, seed=1000))
    return {"peak_mib": round(peak_rss_since_reset_kb(baseline) / 1024, 1), "rss_before_mib": round(baseline / 1024, 1),
            "seconds": round(seconds, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--upstream", type=Path, required=True, help="Davinci-XLab/STAR-T2I checkout")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", type=int, choices=tuple(SIZES), default=256, help="256 (d16) or 1024 (d30)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--parts", nargs="+", choices=("eager", "memory"), default=["eager", "memory"])
    parser.add_argument("--_worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    upstream = args.upstream.resolve()
    global DEVICE, DEPTH, PATCH_NUMS
    DEVICE = args.device
    DEPTH, PATCH_NUMS = SIZES[args.size]
    if args._worker:
        kind, *rest = args._worker
        res = _worker_time(upstream, args.batch, args.repeats) if kind == "time" else _worker_memory(upstream, rest[0], args.batch)
        print(json.dumps(res))
        return
    common = ["--upstream", str(upstream), "--batch", str(args.batch), "--repeats", str(args.repeats), "--device", args.device,
              "--size", str(args.size)]
    started = time.perf_counter()

    def child(*worker, timeout=1800):
        t = time.perf_counter()
        res = run_child(__file__, [*common, "--_worker", *worker], timeout=timeout)
        res["wall_s"] = round(time.perf_counter() - t, 1)
        print(json.dumps({"done": worker, **{k: res.get(k) for k in ("ratio_vs_original", "peak_mib", "error")}}), flush=True)
        return res

    previous = json.loads(args.out.read_text()) if args.out.is_file() else {}
    results = dict(previous.get("results", {}))
    if previous and previous.get("settings", {}).get("batch") != args.batch:
        results = {}
    if "eager" in args.parts:
        results["eager"] = child("time")
    if "memory" in args.parts:
        results["memory"] = {impl: child("memory", impl) for impl in ("original", "vistok")}
    eager = results.get("eager", {})
    report = {
        "benchmark": f"STAR d{DEPTH} text-to-image generation at {args.size} px, vistok NextScaleTextToImagePipeline vs original "
                     "autoregressive_infer_cfg",
        "model": {"star": f"d{DEPTH} (depth {DEPTH}, width {64 * DEPTH}, {DEPTH} heads, cross-attention to 1024-wide text), random "
                          f"weights via VAR.init_weights; scales {list(PATCH_NUMS)}",
                  "vae": "vae_ch160v4096z32 (ch 160, 4096 x 32, 10 scales), random weights (default init)",
                  "text": "random CLIP-shaped features (77 x 1024, 8 valid tokens; pooled 1024), not timed"},
        "device": args.device,
        "settings": {**SETTINGS, "batch": args.batch, "guidance_batch": 2 * args.batch, "dtype": "float32", "threads": NUM_THREADS,
                     "repeats": args.repeats, "measured": "text features -> images in [0, 1] (sampling + VQVAE decode)"},
        "machine": machine_info(),
        "versions": versions("torch", "transformers", "diffusers", "vistok"),
        "results": results,
        "goal": {"ratio_target": GOAL_RATIO, "eager_median_pair_ratio": eager.get("median_pair_ratio"),
                 "met": (eager.get("median_pair_ratio") or 0) >= GOAL_RATIO},
        "wall_s_of_parts_run": {"parts": args.parts, "seconds": round(time.perf_counter() - started, 1)},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
