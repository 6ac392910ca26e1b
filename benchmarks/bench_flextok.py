"""CPU benchmark: vistok's FlexTok against the original apple/ml-flextok, same weights, same run.

Model: FlexTok d12-d12 at release width (encoder and decoder 768 wide, 12 layers, 64-wide heads, 256
registers, FSQ [8,8,8,5,5,5]) over the released VAE architecture (SDXL-like AutoencoderKL, 16 latent channels),
256 px images, random deterministic weights (``tests/_random_weights.random_state_dict``). The original is
built from the hydra-style config of ``tests/fixtures/make_flextok_fixtures.make_config`` (mup/hydra/torchvision
stubbed, no upstream code in this repository); vistok gets the same state dict through its converter's
``parse_config`` + ``convert_state_dict``.

Timed calls, fp32, ``torch.inference_mode()``, batch 1, the two implementations interleaved (alternating which
goes first), median of the repeats after a warm-up (the original's FlexAttention compiles on its first call):

* encode: original ``tokenize(images)``; vistok ``encode(pixel_values)``;
* decode of the first k tokens for each k: original ``detokenize([ids[:, :k]], timesteps=T, guidance_scale=7.5,
  perform_norm_guidance=True, generator=seeded)``; vistok ``decode(ids[:, :k], generator=seeded)`` (its
  config's defaults: T Euler steps, guidance 7.5, APG). Each flow step runs the decoder on 1024 patches plus
  all 256 registers (positions >= k hold the learned mask token) for the conditional and the unconditional
  pass, so the decoder's cost does not depend on k; the report shows it per k.

Outputs are compared once before timing (token ids equal; decode max abs difference).

Usage (from the repository root):

    python benchmarks/bench_flextok.py --upstream /tmp/ml-flextok [--steps 20] [--ks 1 16 256] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

_REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(_REPO / "tests"), str(_REPO / "tests" / "fixtures"), str(_REPO / "benchmarks"), str(_REPO / "src")]

DEFAULT_OUT = _REPO / "benchmarks" / "results" / "flextok_cpu.json"
D12 = dict(width=768, depth=12, head_dim=64, registers=256, latent_channels=16, grid=16, scaling_factor=0.13)
SEED = 1212


def _median_times(calls: dict, repeats: int) -> dict:
    """{name: median seconds} over ``repeats`` rounds, alternating the order of the implementations."""
    times = {name: [] for name in calls}
    outputs = {}
    names = list(calls)
    for r in range(repeats):
        for name in (names if r % 2 == 0 else names[::-1]):
            start = time.perf_counter()
            outputs[name] = calls[name]()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}, times, outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--upstream", required=True, type=Path, help="a checkout (or export) of apple/ml-flextok")
    parser.add_argument("--commit", default=None, help="the upstream commit, for an export")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 16, 256])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--decode-repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()

    from upstream_stubs import install_stubs

    stubbed = install_stubs(extra=("mup", "hydra"))
    import torch

    torch.set_num_threads(args.threads)
    from _measure import machine_info, versions
    from _random_weights import random_state_dict
    from make_flextok_fixtures import build_original, make_config, _upstream_commit

    from vistok.modeling.flextok.configuration_flextok import DEFAULT_VAE_CONFIG, FlexTokConfig
    from vistok.modeling.flextok.convert_flextok import convert_state_dict, parse_config
    from vistok.modeling.flextok.modeling_flextok import FlexTokModel

    wall = time.perf_counter()
    config = make_config(**D12)
    torch.manual_seed(0)
    original = build_original(args.upstream, config, vae_overrides=None)
    shapes = {k: list(v.shape) for k, v in original.state_dict().items()}
    state = random_state_dict(shapes, SEED)
    original.load_state_dict(state, strict=True)
    original.eval()

    kwargs, names = parse_config(config)
    grid, channels = kwargs.pop("grid"), kwargs.pop("latent_channels")
    scaling = kwargs.pop("vae_scaling_factor")
    kwargs.pop("vae_hub_path")
    vistok_config = FlexTokConfig(image_size=256, vae_config={**DEFAULT_VAE_CONFIG, "latent_channels": channels},
                                  vae_scaling_factor=scaling, num_inference_steps=args.steps, **kwargs)
    converted, unused = convert_state_dict(state, names)
    assert not unused, unused
    ours = FlexTokModel(vistok_config)
    ours.load_state_dict(converted, strict=True)
    ours.eval()
    params = sum(p.numel() for p in ours.parameters())

    images = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(0)) * 2 - 1
    result = {"k": {}}
    with torch.inference_mode():
        ids_original = torch.cat(original.tokenize(images))  # also the FlexAttention warm-up
        ids_ours = ours.encode(images).token_ids
        result["token_ids_equal"] = bool(torch.equal(ids_original, ids_ours))
        result["token_ids_mismatches"] = int((ids_original != ids_ours).sum())
        enc_median, enc_all, _ = _median_times({"original": lambda: original.tokenize(images),
                                             "vistok": lambda: ours.encode(images)}, args.repeats)
        result["encode_s"] = {**enc_median, "speedup": enc_median["original"] / enc_median["vistok"], "all": enc_all}
        for i, k in enumerate(args.ks):
            def decode_original(k=k):
                return original.detokenize([ids_original[:, :k]], vae_image_sizes=32, timesteps=args.steps,
                                           guidance_scale=7.5, perform_norm_guidance=True,
                                           generator=torch.Generator().manual_seed(5), verbose=False)

            def decode_ours(k=k):
                return ours.decode(ids_original[:, :k], generator=torch.Generator().manual_seed(5))

            entry = {}
            if i == 0:  # warm-up: the original's decoder attention compiles on its first call
                ours.decode(ids_original[:, :k], num_inference_steps=1)
                original.detokenize([ids_original[:, :k]], vae_image_sizes=32, timesteps=1, guidance_scale=7.5,
                                    perform_norm_guidance=True, verbose=False)
            med, all_times, outs = _median_times({"original": decode_original, "vistok": decode_ours}, args.decode_repeats)
            entry["decode_max_abs_diff"] = float((outs["original"] - outs["vistok"]).abs().max())
            entry["decode_s"] = {**med, "speedup": med["original"] / med["vistok"], "all": all_times}
            entry["decoder_forwards"] = 2 * args.steps
            entry["decoder_sequence"] = "1024 patches + 256 registers (mask token at positions >= k), both passes"
            result["k"][str(k)] = entry
            print(f"k={k}: original {med['original']:.1f} s, vistok {med['vistok']:.1f} s", flush=True)
    speedups = [result["encode_s"]["speedup"]] + [e["decode_s"]["speedup"] for e in result["k"].values()]
    report = {
        "benchmark": "flextok_cpu: encode and flow decode (fp32), vistok vs the original apple/ml-flextok, same weights",
        "machine": machine_info(),
        "versions": {**versions("torch", "transformers", "diffusers", "einops"),
                     "upstream": {"apple/ml-flextok": args.commit or _upstream_commit(args.upstream)}},
        "settings": {"model": "d12-d12 at release width (768 wide, 12+12 layers, 256 registers, 16-channel SDXL-like VAE)",
                     "parameters": params, "weights": f"random_state_dict(seed={SEED})", "image_size": 256, "batch": 1,
                     "dtype": "float32", "threads": args.threads, "flow_steps": args.steps, "guidance_scale": 7.5,
                     "apg": True, "encode_repeats": args.repeats, "decode_repeats": args.decode_repeats,
                     "stubbed_upstream_imports": stubbed,
                     "timing": "torch.inference_mode(), interleaved implementations, median; warm-up call first"},
        "results": result,
        "goal": {"target": ">= 1.0x (original time / vistok time) in fp32 on this CPU",
                 "min_speedup": min(speedups), "met": min(speedups) >= 1.0},
        "total_wall_s": time.perf_counter() - wall,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report["goal"]), f"-> {args.out}")


if __name__ == "__main__":
    main()
