"""CPU benchmark: vistok's MaskGenPipeline sampler against the original ``MaskGen_VQ.generate`` of bytedance/1d-tokenizer.

MaskGen-VQ-L at its released size with random weights (no download): ``configs/infer/MaskGen/maskgen_vq_l.yaml``
(1024 wide, 16 diffusers ``JointTransformerBlock``s, 16 heads, 128 tokens, 8192 codes, 768-wide CLIP text, aesthetic
micro-conditioning). The original is built from that config with its own init under a fixed seed; its ``state_dict``
goes through vistok's converter (``convert_state_dict`` + ``infer_config``) into ``MaskGenVQTransformer`` (strict
load), so both run the SAME weights. Sampling as released: guidance 12 with the cosine ramp, randomize_temperature
2.0, softmax-temperature annealing, aesthetic score 6.5, ``--steps`` steps (16 released).

Text: the original's ``open_clip_text_encoding`` is replaced by a lookup of fixed random CLIP-shaped features
(77 x 768 penultimate states, 768 pooled; a random "" row for the unconditional branch), and the pipeline gets the
same tensors as ``prompt_embeds`` / ``negative_prompt_embeds``: the CLIP text model is excluded from both, as is the
tokenizer's decode. Measured: ``MaskGenPipeline.sample_tokens`` vs ``generate``; fp32, ``torch.inference_mode()``,
``torch.set_num_threads(2)``; each timed pair runs with the same seed (vistok ``generator=``, original global
``torch.manual_seed``) and the token ids of the two are compared on every call. The two are timed interleaved,
alternating which goes first; median -> seconds per call.

Peak memory: one fresh subprocess per implementation builds only that implementation, runs a 1-step warm-up, resets
the RSS high-water mark and runs one ``--memory-steps`` call; the increase over the RSS before the call is reported
(activations and workspace; weights excluded).

No upstream code lives in this repository: the original checkout is imported from the path given on the command
line with the import stubs of ``tests/fixtures/upstream_stubs.py``.

    python benchmarks/bench_maskgen.py --upstream-1d /work/upstream/1d-tokenizer [--steps 16] [--batch 1] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _measure import bench_threads, paired_speedup, machine_info, peak_rss_since_reset_kb, reset_peak_rss, run_child, versions  # noqa: E402

NUM_THREADS = bench_threads()  # VISTOK_BENCH_THREADS, default 2

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "maskgen_cpu.json"
CONFIG = "configs/infer/MaskGen/maskgen_vq_l.yaml"
SEED = 1024
GOAL_RATIO = 1.0


def _build(upstream: Path, impls, steps: int):
    """(original or None, pipeline or None, features) on the same random weights."""
    import contextlib
    import io
    import warnings

    import torch
    from omegaconf import OmegaConf

    warnings.filterwarnings("ignore")
    sys.dont_write_bytecode = True
    sys.path.insert(0, str(REPO_ROOT / "tests" / "fixtures"))
    from upstream_stubs import install_stubs, put_upstream_first

    install_stubs()
    put_upstream_first(upstream)
    with contextlib.redirect_stdout(io.StringIO()):
        import modeling.maskgen as maskgen
    from vistok.modeling.maskgen import MaskGenVQConfig, MaskGenVQTransformer
    from vistok.modeling.maskgen.convert_maskgen import convert_state_dict, infer_config
    from vistok.modeling.titok import TiTokConfig, TiTokModel
    from vistok.pipelines import MaskGenPipeline

    config = OmegaConf.to_container(OmegaConf.load(upstream / CONFIG), resolve=True)
    torch.manual_seed(SEED)
    original = maskgen.MaskGen_VQ(OmegaConf.create(config)).eval()
    g = torch.Generator().manual_seed(SEED + 1)
    feats = {"cond": torch.randn(1, 77, 768, generator=g), "pooled": torch.randn(1, 1, 768, generator=g),
             "null": torch.randn(1, 77, 768, generator=g), "null_pooled": torch.randn(1, 1, 768, generator=g)}

    def lookup(clip_tokenizer, clip_encoder, text):
        if text == [""]:
            return feats["null"], feats["null_pooled"]
        return feats["cond"].expand(len(text), -1, -1), feats["pooled"].expand(len(text), -1, -1)

    maskgen.open_clip_text_encoding = lookup
    pipe = None
    if "vistok" in impls:
        state, tied = convert_state_dict(original.state_dict())
        kwargs = infer_config(state, config, tied)
        kwargs["sampling_defaults"]["num_inference_steps"] = steps
        transformer = MaskGenVQTransformer(MaskGenVQConfig(**kwargs)).eval()
        transformer.load_state_dict(state, strict=True)
        del state
        cfg = transformer.config
        tokenizer = TiTokModel(TiTokConfig(
            image_size=32, num_tokens=cfg.num_tokens, codebook_size=cfg.codebook_size, token_dim=8, use_l2_norm=False,
            is_legacy=False, encoder_hidden_size=32, encoder_num_layers=1, encoder_num_heads=1, decoder_hidden_size=32,
            decoder_num_layers=1, decoder_num_heads=1)).eval()
        pipe = MaskGenPipeline(image_tokenizer=tokenizer, transformer=transformer)
        pipe.set_progress_bar_config(disable=True)
    if "original" not in impls:
        original = None
    import gc

    gc.collect()
    return original, pipe, feats


def _run(impl, original, pipe, feats, batch: int, steps: int, seed: int):
    import torch

    if impl == "original":
        torch.manual_seed(seed)
        return original.generate([f"prompt {i}" for i in range(batch)], guidance_scale=12.0, randomize_temperature=2.0,
                                 sample_aesthetic_score=6.5, num_sample_steps=steps)
    ids, _ = pipe.sample_tokens(
        prompt_embeds=feats["cond"].expand(batch, -1, -1), pooled_prompt_embeds=feats["pooled"].expand(batch, -1, -1),
        negative_prompt_embeds=feats["null"].expand(batch, -1, -1),
        negative_pooled_prompt_embeds=feats["null_pooled"].expand(batch, -1, -1),
        num_inference_steps=steps, generator=torch.Generator().manual_seed(seed))
    return ids


def _upstream_commit(upstream: Path) -> str | None:
    """The checkout's commit, or None for an exported tree (``git archive``) that is not a git checkout."""
    done = subprocess.run(["git", "-C", str(upstream), "rev-parse", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else None


def _worker_time(upstream, batch, steps, repeats):
    import torch

    torch.set_num_threads(NUM_THREADS)
    original, pipe, feats = _build(upstream, ("original", "vistok"), steps)
    times = {"original": [], "vistok": []}
    equal = []
    with torch.inference_mode():
        for impl in ("original", "vistok"):  # warm-up
            _run(impl, original, pipe, feats, batch, 1, 0)
        for r in range(repeats):
            order = ("original", "vistok") if r % 2 == 0 else ("vistok", "original")
            out = {}
            for impl in order:
                start = time.perf_counter()
                out[impl] = _run(impl, original, pipe, feats, batch, steps, SEED + 10 + r)
                times[impl].append(time.perf_counter() - start)
            equal.append(bool(torch.equal(out["original"].long(), out["vistok"])))
    return {"seconds": times, "ids_equal": equal}


def _worker_memory(upstream, impl, batch, steps):
    import gc
    import ctypes

    import torch

    torch.set_num_threads(NUM_THREADS)
    original, pipe, feats = _build(upstream, (impl,), steps)
    with torch.inference_mode():
        _run(impl, original, pipe, feats, batch, 1, 0)
        gc.collect()
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        base = reset_peak_rss()
        _run(impl, original, pipe, feats, batch, steps, SEED)
    return {"peak_rss_increase_mib": round(peak_rss_since_reset_kb(base) / 1024, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--upstream-1d", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--memory-steps", type=int, default=2)
    parser.add_argument("--_worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    upstream = args.upstream_1d.resolve()
    if args._worker:
        kind, *rest = args._worker
        if kind == "time":
            res = _worker_time(upstream, args.batch, args.steps, args.repeats)
        else:
            res = _worker_memory(upstream, rest[0], args.batch, args.memory_steps)
        print(json.dumps(res))
        return
    script = str(Path(__file__).resolve())
    common = ["--upstream-1d", str(upstream), "--batch", str(args.batch), "--steps", str(args.steps),
              "--repeats", str(args.repeats), "--memory-steps", str(args.memory_steps)]
    timing = run_child(script, [*common, "--_worker", "time"], timeout=3000)
    memory = {impl: run_child(script, [*common, "--_worker", "memory", impl], timeout=1200) for impl in ("original", "vistok")}

    result = {
        "benchmark": "MaskGen-VQ-L token sampling (CLIP text model and tokenizer decode excluded)",
        "device": "cpu", "dtype": "float32", "threads": NUM_THREADS, "machine": machine_info(),
        "versions": versions("torch", "transformers", "diffusers", "vistok"),
        "upstream": {"repo": "bytedance/1d-tokenizer",
                     "commit": _upstream_commit(upstream)},
        "measured": "MaskGenPipeline.sample_tokens (vistok) vs MaskGen_VQ.generate (original)",
        "weights": "random (original constructor init, seed 1024); the same weights in both via vistok's converter, strict load",
        "settings": {"batch": args.batch, "num_inference_steps": args.steps, "guidance_scale": 12.0, "guidance_schedule": "cosine",
                     "randomize_temperature": 2.0, "softmax_temperature_annealing": True, "aesthetic_score": 6.5},
        "timing": timing, "memory": memory, "goal_ratio": GOAL_RATIO,
    }
    if "seconds" in timing:
        med = {k: statistics.median(v) for k, v in timing["seconds"].items()}
        result["median_seconds"] = {k: round(v, 3) for k, v in med.items()}
        result["speedup_vs_original"] = round(med["original"] / med["vistok"], 3)
        result.update(paired_speedup(timing["seconds"]["original"], timing["seconds"]["vistok"]))
        result["goal_met"] = result["median_pair_ratio"] >= GOAL_RATIO
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result.get(k) for k in ("median_seconds", "speedup_vs_original", "goal_met", "memory")}))


if __name__ == "__main__":
    main()
