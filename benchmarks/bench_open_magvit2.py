"""CPU benchmark: vistok's Open-MAGVIT2 tokenizer and factorized AR sampler against the original
TencentARC/SEED-Voken code (src/Open_MAGVIT2), in the same run, on the same random weights.

* tokenizer: the IN-256 "L" tokenizer at its released size (ch 128, ch_mult [1, 1, 2, 2, 4], 4 res blocks,
  18 bits = 2^18 codes; 115M parameters, the original's default init under a fixed seed), encode + decode of
  ``--tok-batch`` 256 px images: original ``Encoder`` -> ``LFQ`` -> ``Decoder`` (decoding the quantized map)
  vs ``OpenMagvit2Model.encode`` -> ``decode(token_ids)``; token ids compared on every call.
* AR: Open-MAGVIT2-AR-B at its released size (24 spatial + 2 factorized layers, 1024 wide, 16 heads,
  [6, 12] bits; 343M parameters; the zero-initialised heads get N(0, 0.02) so that sampling is not uniform)
  converted by ``build_ar``; class-conditional sampling of ``--ar-batch`` images (256 tokens each) with the
  released AR-B settings (guidance [1.9, 2.0]: a [cond; uncond] batch, temperature 1, top-k 0, top-p 1):
  original ``sample_Open_MAGVIT2`` (global RNG seeded) vs ``FactorizedAutoregressiveImagePipeline.sample_tokens``
  (``generator=`` with the same seed); the sampled ids compared on every call. No decode.
* memory: a fresh process per implementation and part builds only it, runs a short warm-up, resets the
  RSS high-water mark and reports the peak above the RSS before one full call (weights excluded).

fp32, ``torch.set_num_threads(2)``, ``torch.inference_mode()``; calls of the two implementations interleave
(alternating which goes first); medians are reported. No upstream code lives in this repository: the
checkout is imported from ``--upstream``.

Usage (from the repository root):

    python benchmarks/bench_open_magvit2.py --upstream /tmp/SEED-Voken --part tokenizer [--tok-batch 2] [--repeats 3]
    python benchmarks/bench_open_magvit2.py --upstream /tmp/SEED-Voken --part ar [--ar-batch 1] [--repeats 2] [--ar-tokens 256]
    python benchmarks/bench_open_magvit2.py --upstream /tmp/SEED-Voken --part memory
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
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "open_magvit2_cpu.json"
NUM_THREADS = bench_threads()  # VISTOK_BENCH_THREADS, default 2
GOAL_RATIO = 1.0
WEIGHTS_SEED = 18
DDCONFIG = dict(double_z=False, z_channels=18, resolution=256, in_channels=3, out_ch=3, ch=128, ch_mult=[1, 1, 2, 2, 4], num_res_blocks=4)
AR_B = dict(vocab_size=512, block_size=256, spatial_n_layer=24, factorized_n_layer=2, factorized_bits=[6, 12], n_head=16, dim=1024,
            cond_dim=1024, token_drop=0.0, resid_dropout_p=0.0, ffn_dropout_p=0.0, token_factorization=True, class_num=1000)
SAMPLING = {"guidance_scale": [1.9, 2.0], "temperature": [1.0, 1.0], "top_k": [0, 0], "top_p": [1.0, 1.0]}


def _import_upstream(upstream: Path):
    import warnings

    warnings.filterwarnings("ignore")
    sys.dont_write_bytecode = True  # leave no __pycache__ in the upstream checkout
    sys.path.insert(0, str(upstream.resolve()))


def build_tokenizer(upstream: Path, impls):
    import torch

    _import_upstream(upstream)
    from src.Open_MAGVIT2.modules.diffusionmodules.improved_model import Decoder, Encoder
    from src.Open_MAGVIT2.modules.vqvae.lookup_free_quantize import LFQ

    torch.manual_seed(WEIGHTS_SEED)
    original = torch.nn.Module()
    original.encoder, original.decoder = Encoder(**DDCONFIG), Decoder(**DDCONFIG)
    original.quantize = LFQ(dim=18, codebook_size=2**18)
    original.eval()
    ours = None
    if "vistok" in impls:
        from vistok.modeling.open_magvit2.convert_open_magvit2 import build_tokenizer as convert

        ours = convert(original.state_dict(), 256)
    return (original if "original" in impls else None), ours


def run_tokenizer(impl, original, ours, pixels):
    import torch

    with torch.inference_mode():
        if impl == "original":
            h = original.encoder(pixels)
            quant, _, indices = original.quantize(h)
            return original.decoder(quant), indices.view(pixels.shape[0], 16, 16)
        ids = ours.encode(pixels).token_ids
        return ours.decode(ids), ids


def build_ar(upstream: Path, impls):
    import torch

    _import_upstream(upstream)
    from src.Open_MAGVIT2.modules.transformer.gpt import GPT

    torch.manual_seed(WEIGHTS_SEED)
    original = GPT(**AR_B).eval()
    for head in original.head:
        torch.nn.init.normal_(head.weight, std=0.02)
    pipe = None
    if "vistok" in impls:
        from vistok import FactorizedAutoregressiveImagePipeline, OpenMagvit2Config, OpenMagvit2Model
        from vistok.modeling.open_magvit2.convert_open_magvit2 import build_ar as convert

        transformer = convert({f"transformer.{k}": v for k, v in original.state_dict().items()}, 256, sampling=SAMPLING)
        tokenizer = OpenMagvit2Model(OpenMagvit2Config(image_size=256, num_bits=18, hidden_channels=32, channel_mult=[1, 1, 1, 1, 1],
                                                       num_res_blocks=1)).eval()  # 16x16 tokens as the generator; never called: sampling only
        pipe = FactorizedAutoregressiveImagePipeline(image_tokenizer=tokenizer, transformer=transformer)
        pipe.set_progress_bar_config(disable=True)
    if "original" not in impls:
        original = None
    import gc

    gc.collect()
    return original, pipe


def run_ar(impl, original, pipe, batch, seed, num_tokens=256):
    import torch

    labels = (torch.arange(batch) * 37 + 5) % 1000
    with torch.inference_mode():
        if impl == "original":
            from src.Open_MAGVIT2.modules.transformer.gpt import sample_Open_MAGVIT2

            x = torch.cat([labels[:, None], torch.full((batch, 1), 1000)])  # sample.py: [cond; null]
            torch.manual_seed(seed)
            pre, post = sample_Open_MAGVIT2(x, original, steps=num_tokens, **{"cfg_scale": SAMPLING["guidance_scale"],
                                            "temperature": SAMPLING["temperature"], "top_k": SAMPLING["top_k"], "top_p": SAMPLING["top_p"]})
            return pre.long() | (post.long() << 6)
        gen = torch.Generator().manual_seed(seed)
        settings = pipe._settings(SAMPLING["guidance_scale"], None, SAMPLING["temperature"], SAMPLING["top_k"], SAMPLING["top_p"])
        return pipe._generate({"class_labels": labels}, batch, None, settings, gen, True, False,
                              num_tokens=None if num_tokens == 256 else num_tokens).flatten(1)


def _timed(fn):
    start, start_cpu = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - start, time.process_time() - start_cpu, out


def _compare(times, cpu, equal, loads, batch, per_image_tokens=None) -> dict:
    medians = {k: statistics.median(v) for k, v in times.items()}
    out = {"batch": batch, "seconds": times, "cpu_seconds": cpu, "ids_equal_every_call": all(equal),
           "load_average_1min_after_each_pair": loads, "median_s": {k: round(v, 3) for k, v in medians.items()},
           "images_per_s": {k: round(batch / v, 3) for k, v in medians.items()},
           "speedup_vs_original": round(medians["original"] / medians["vistok"], 3),
           **paired_speedup(times["original"], times["vistok"]),
           # on a shared machine the CPU time a call consumed is steadier than its wall time
           "cpu_time_ratio_original_over_vistok": round(statistics.median(cpu["original"]) / statistics.median(cpu["vistok"]), 3)}
    if per_image_tokens:
        out["tokens_per_s"] = {k: round(batch * per_image_tokens / v, 1) for k, v in medians.items()}
    return out


def worker_time(upstream: Path, part: str, batch: int, repeats: int, ar_tokens: int = 256) -> dict:
    import torch

    torch.set_num_threads(NUM_THREADS)
    t0 = time.perf_counter()
    if part == "tokenizer":
        original, ours = build_tokenizer(upstream, ("original", "vistok"))
        pixels = torch.rand(batch, 3, 256, 256, generator=torch.Generator().manual_seed(0)) * 2 - 1
        call = lambda impl: run_tokenizer(impl, original, ours, pixels)  # noqa: E731
        warm = lambda impl: run_tokenizer(impl, original, ours, pixels[:1])  # noqa: E731
    else:
        original, pipe = build_ar(upstream, ("original", "vistok"))
        call = None
        warm = lambda impl: run_ar(impl, original, pipe, batch, 0, num_tokens=4)  # noqa: E731
    out = {"build_s": round(time.perf_counter() - t0, 1)}
    for impl in ("vistok", "original"):
        warm(impl)
    times, cpu, equal, loads, max_diff = {"vistok": [], "original": []}, {"vistok": [], "original": []}, [], [], []
    for r in range(repeats):
        order = ("original", "vistok") if r % 2 == 0 else ("vistok", "original")
        results = {}
        for impl in order:
            fn = (lambda impl=impl: call(impl)) if part == "tokenizer" else (lambda impl=impl: run_ar(impl, original, pipe, batch, 100 + r, ar_tokens))
            wall, load, results[impl] = _timed(fn)
            times[impl].append(round(wall, 3))
            cpu[impl].append(round(load, 2))
        if part == "tokenizer":
            equal.append(bool(torch.equal(results["vistok"][1], results["original"][1])))
            max_diff.append(float((results["vistok"][0] - results["original"][0]).abs().max()))
        else:
            equal.append(bool(torch.equal(results["vistok"], results["original"])))
        loads.append(round(os.getloadavg()[0], 2))
    out.update(_compare(times, cpu, equal, loads, batch, None if part == "tokenizer" else ar_tokens))
    if part == "ar":
        out["tokens_per_image"] = ar_tokens
    if max_diff:
        out["max_abs_reconstruction_difference"] = max(max_diff)
    return out


def worker_memory(upstream: Path, part: str, impl: str, batch: int) -> dict:
    import ctypes
    import gc

    import torch

    torch.set_num_threads(NUM_THREADS)
    if part == "tokenizer":
        original, ours = build_tokenizer(upstream, (impl,))
        pixels = torch.rand(batch, 3, 256, 256) * 2 - 1
        run_tokenizer(impl, original, ours, pixels[:1])
        full = lambda: run_tokenizer(impl, original, ours, pixels)  # noqa: E731
    else:
        original, pipe = build_ar(upstream, (impl,))
        run_ar(impl, original, pipe, batch, 0, num_tokens=4)
        full = lambda: run_ar(impl, original, pipe, batch, 1)  # noqa: E731
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    base = reset_peak_rss()
    full()
    return {"part": part, "impl": impl, "batch": batch, "peak_rss_above_baseline_mib": round(peak_rss_since_reset_kb(base) / 1024, 1),
            "baseline_rss_mib": round(base / 1024, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--upstream", type=Path, required=True, help="a TencentARC/SEED-Voken checkout")
    parser.add_argument("--part", choices=["tokenizer", "ar", "memory"], default="tokenizer")
    parser.add_argument("--tok-batch", type=int, default=2)
    parser.add_argument("--ar-batch", type=int, default=1)
    parser.add_argument("--ar-tokens", type=int, default=256, help="tokens sampled per image in the timed AR calls (256: whole images)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, part, *impl = args.worker.split(":")
        batch = args.tok_batch if part == "tokenizer" else args.ar_batch
        result = worker_time(args.upstream, part, batch, args.repeats, args.ar_tokens) if kind == "time" else \
            worker_memory(args.upstream, part, impl[0], batch)
        print(json.dumps(result))
        return
    common = ["--upstream", str(args.upstream), "--tok-batch", str(args.tok_batch), "--ar-batch", str(args.ar_batch),
              "--repeats", str(args.repeats), "--ar-tokens", str(args.ar_tokens)]
    env = {"PYTHONPATH": str(REPO_ROOT / "src")}
    result = json.loads(args.out.read_text()) if args.out.is_file() else {}
    result.update({
        "benchmark": "Open-MAGVIT2 IN-256 tokenizer encode+decode and AR-B 256 px sampling, vistok vs original SEED-Voken",
        "machine": machine_info(), "device": "cpu", "versions": versions("torch", "transformers", "diffusers"), "threads": NUM_THREADS,
        "dtype": "float32", "sampling": SAMPLING, "goal": f"vistok >= {GOAL_RATIO}x the original's images/s, ids identical",
    })
    if args.part in ("tokenizer", "ar"):
        result[args.part] = run_child(__file__, [*common, "--worker", f"time:{args.part}"], timeout=3600, env=env)
        print(json.dumps(result[args.part]), flush=True)
    else:
        result["memory"] = [run_child(__file__, [*common, "--worker", f"memory:{part}:{impl}"], timeout=1800, env=env)
                            for part in ("tokenizer", "ar") for impl in ("vistok", "original")]
        print(json.dumps(result["memory"]), flush=True)
    parts = [result.get(p, {}) for p in ("tokenizer", "ar")]
    result["goal_met"] = all(p.get("median_pair_ratio", 0) >= GOAL_RATIO and p.get("ids_equal_every_call") for p in parts)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
