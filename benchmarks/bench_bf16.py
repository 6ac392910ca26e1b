"""CPU benchmark: bfloat16 against float32 sampling, in the same run, for MaskGIT L-32 (TiTok-L-32's generator,
release width: 24 layers, 768 wide, 4096 codes, 32 tokens) and LlamaGen GPT-B (12 layers, 768 wide, 16384 codes,
class-conditional). Random weights under a fixed seed (speed does not depend on the weights; vistok's initialisation,
LlamaGen's zero-initialised output head drawn N(0, 0.02) so that sampling is not uniform).

Measured: token sampling only (MaskGIT: ``pipe.sample_tokens`` with the released L-32 settings; LlamaGen: the
pipeline's ``_generate`` with the released c2i settings, guidance 4.0 on [cond; uncond] rows, top_k 2000), no
tokenizer decode. bf16 is the whole pipeline cast with ``pipe.to(torch.bfloat16)`` (weights and activations; the
samplers keep their probabilities in float32). ``--pairs`` interleaved same-seed pairs (fp32, bf16), alternating
which goes first; reported: the median of the per-pair wall ratios fp32/bf16 with their spread, and the share of
token ids equal between the two (bf16 rounding changes some logits, so some samples differ: the deviation is
bounded per model in tests/test_low_precision.py, not here). ``torch.set_num_threads(--threads)`` (2; 1 on a shared
machine, recorded in the JSON), ``torch.inference_mode()``.

Usage (from the repository root; under ``flock /tmp/vistok-bench.lock`` on a shared machine):

    python benchmarks/bench_bf16.py --model maskgit-l32 --batch 1
    python benchmarks/bench_bf16.py --model llamagen-gpt-b --batch 1 --tokens 256
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _measure import bench_threads, machine_info, versions  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "bf16_cpu.json"
NUM_THREADS = bench_threads()  # VISTOK_BENCH_THREADS, default 2
GOAL_RATIO = 1.5
LLAMAGEN_SETTINGS = dict(guidance_scale=4.0, cfg_interval=-1, temperature=1.0, top_k=2000, top_p=1.0)


def build_maskgit():
    import torch

    from vistok import MaskGITPipeline, TiTokConfig, TiTokModel
    from vistok.modeling.maskgit import MaskGITConfig, MaskGITTransformer
    from vistok.modeling.maskgit.convert_maskgit import SAMPLING_PRESETS

    torch.manual_seed(32)
    settings = {"guidance_scale_pow": 3.0, **SAMPLING_PRESETS["titok-l32"]}
    transformer = MaskGITTransformer(MaskGITConfig(sampling_defaults=settings)).eval()  # defaults: the L-32 generator
    cfg = transformer.config
    tokenizer = TiTokModel(TiTokConfig(  # tiny: never called (no decode is timed), only its codebook size matters
        image_size=32, num_tokens=cfg.num_tokens, codebook_size=cfg.codebook_size, token_dim=8, use_l2_norm=False,
        is_legacy=False, encoder_hidden_size=32, encoder_num_layers=1, encoder_num_heads=1, decoder_hidden_size=32,
        decoder_num_layers=1, decoder_num_heads=1)).eval()
    pipe = MaskGITPipeline(image_tokenizer=tokenizer, transformer=transformer)
    pipe.set_progress_bar_config(disable=True)

    def run(p, batch: int, seed: int):
        labels = ((torch.arange(batch) * 37 + 5) % 1000).tolist()
        return p.sample_tokens(labels, num_inference_steps=settings["num_inference_steps"],
                               guidance_scale=settings["guidance_scale"], guidance_schedule=settings["guidance_schedule"],
                               guidance_scale_pow=settings["guidance_scale_pow"],
                               randomize_temperature=settings["randomize_temperature"],
                               softmax_temperature_annealing=settings["softmax_temperature_annealing"],
                               generator=torch.Generator().manual_seed(seed))

    return pipe, run, settings


def build_llamagen(tokens: int):
    import torch

    from bench_decoding import build

    pipe = build()  # GPT-B at release width, random weights (seed 256), the c2i settings

    def run(p, batch: int, seed: int):
        settings = p._settings(*(LLAMAGEN_SETTINGS[k] for k in ("guidance_scale", "cfg_interval", "temperature", "top_k", "top_p")))
        labels = torch.arange(batch) * 97 % 1000
        return p._generate({"class_labels": labels}, batch, None, settings, torch.Generator().manual_seed(seed), True,
                           False, num_tokens=None if tokens == 256 else tokens)

    return pipe, run, {**LLAMAGEN_SETTINGS, "tokens_per_image": tokens}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=("maskgit-l32", "llamagen-gpt-b"), required=True)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=256, help="llamagen-gpt-b: tokens per image (at most 256)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--threads", type=int, default=NUM_THREADS, help="torch threads (1 on a shared machine)")
    args = parser.parse_args(argv)
    if not 1 <= args.tokens <= 256:
        parser.error("--tokens must be in [1, 256]")
    import torch

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    pipe32, run, settings = build_maskgit() if args.model == "maskgit-l32" else build_llamagen(args.tokens)
    pipe16 = copy.deepcopy(pipe32).to(torch.bfloat16)
    pipes = {"float32": pipe32, "bfloat16": pipe16}
    rows = []
    with torch.inference_mode():
        for dtype, pipe in pipes.items():  # warm-up
            run(pipe, args.batch, 0)
        for pair in range(args.pairs):
            seed = 1000 + pair
            order = ["float32", "bfloat16"] if pair % 2 == 0 else ["bfloat16", "float32"]
            got = {}
            for dtype in order:
                begin = time.perf_counter()
                ids = run(pipes[dtype], args.batch, seed)
                got[dtype] = (time.perf_counter() - begin, ids)
            (w32, ids32), (w16, ids16) = got["float32"], got["bfloat16"]
            rows.append({"seed": seed, "first": order[0], "float32_s": round(w32, 3), "bfloat16_s": round(w16, 3),
                         "wall_ratio": round(w32 / w16, 4),
                         "ids_equal_share": round(float((ids32.reshape(-1) == ids16.reshape(-1)).float().mean()), 4),
                         "load_average_1min_after": round(os.getloadavg()[0], 2)})
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    ratios = [r["wall_ratio"] for r in rows]
    median = statistics.median(ratios)
    result = {"batch": args.batch, "pairs": args.pairs, "threads": args.threads, "settings": settings,
              "load_average_1min_before": round(os.getloadavg()[0], 2),
              "median_wall_ratio_float32_over_bfloat16": round(median, 3), "wall_ratio_range": [min(ratios), max(ratios)],
              "median_s": {d: round(statistics.median(r[f"{d}_s"] for r in rows), 3) for d in pipes},
              "goal": {"statement": f"bf16 sampling >= {GOAL_RATIO}x fp32 on this CPU", "met": median >= GOAL_RATIO},
              "total_s": round(time.perf_counter() - start, 1), "rows": rows}
    out = json.loads(args.out.read_text()) if args.out.exists() else {}
    out.update({"benchmark": "bfloat16 vs float32 token sampling (vistok pipelines, release widths, random weights)",
                "machine": machine_info(), "device": "cpu",
                "versions": versions("torch", "transformers", "diffusers")})
    out[f"{args.model}_batch_{args.batch}"] = result
    scratch = args.out.with_name(args.out.name + ".tmp")
    scratch.write_text(json.dumps(out, indent=1) + "\n")
    scratch.replace(args.out)
    print(json.dumps({k: result[k] for k in ("median_wall_ratio_float32_over_bfloat16", "wall_ratio_range", "median_s")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
