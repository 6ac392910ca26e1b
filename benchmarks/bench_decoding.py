"""CPU benchmark: the AR pipelines' decoding strategies (``decoding="sjd" | "gsd" | "zipar"``) against standard
KV-cached decoding (one forward per token), in the same run.

Model: LlamaGen GPT-B at release width (768 wide, 12 layers, 12 heads, 16384 codes, 16x16 = 256 tokens at 256 px),
class-conditional, RANDOM weights (vistok's initialisation under a fixed seed; the zero-initialised output head gets
N(0, 0.02) so that sampling is not uniform). Random weights make the speculative strategies' acceptance rates (and so
their forward counts and speed-ups) meaningless as a forecast for trained models: a random GPT's next-token
distributions barely depend on the context, so drafts drawn from a stale context are accepted far more often than a
trained model would accept them. The trained default AR model, on which the issue's goals are to be measured, comes
later; this file measures the machinery's cost (how much a verification forward of a window costs against a one-token
step) and checks it runs at release width. Sampling as LlamaGen's sample_c2i.py: guidance 4.0 ([cond; uncond], 2B rows),
top_k 2000, top_p 1.0, temperature 1.0; fp32; ``torch.set_num_threads(2)``; ``torch.inference_mode()``.

Measured: token sampling only (``_generate``, no VQ decode; the pipeline holds a tiny random VQ tokenizer with the
matching codebook that is never called). For each strategy, ``--pairs`` interleaved same-seed pairs (standard,
strategy), alternating which goes first; per pair the ratios standard/strategy of wall-clock and of model forwards;
reported: the median of the pair ratios with their spread, and each side's median. ``--tokens`` < 256 generates only
the first rows of the 16x16 grid (a multiple of 16, ZipAR decodes whole rows) to keep a run within minutes on 2 shared
cores; the result says how many. SJD's samples follow standard decoding's distribution (exact, tested in
tests/test_decoding.py), so its ids differ from standard's under the same seed by design; no ids are compared here.

``--model default``: the TRAINED default AR model shipped in the package (``vistok.demo.DEFAULT_AR_PIPELINE``, a
small LlamaGen GPT over the default tokenizer's 32 1D tokens, 14 classes, its stored sampling defaults), where the
acceptance rates mean something. Besides the interleaved timing pairs it measures quality: ``--quality-per-class``
samples per class with each strategy (same seeds), classified by a 1-nearest-neighbour classifier over the training
crops at 32 px (``--photos``, the folder ``python -m vistok.demo.photos`` writes): the class agreement is the fraction
of samples classified as the class they were conditioned on. The classifier's agreement on the tokenizer's own
reconstructions of held-back training crops is reported beside it as the reference ("real images through the
tokenizer"). ZipAR decodes rows of a 2D grid and does not apply to these 1D tokens.

Usage (from the repository root; run under ``flock /tmp/vistok-bench.lock`` on a shared machine):

    python benchmarks/bench_decoding.py --batch 1 [--pairs 5] [--tokens 256]
    python benchmarks/bench_decoding.py --batch 8 --tokens 64
    python benchmarks/bench_decoding.py --model default --photos data/demo-photos --batch 1
    python benchmarks/bench_decoding.py --model default --photos data/demo-photos --batch 8
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
from _measure import bench_threads, machine_info, versions  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "decoding_cpu.json"
NUM_THREADS = bench_threads()  # VISTOK_BENCH_THREADS, default 2
SETTINGS = dict(guidance_scale=4.0, cfg_interval=-1, temperature=1.0, top_k=2000, top_p=1.0)
WEIGHTS_SEED = 256
STRATEGIES = {"sjd": {"draft_length": 16}, "gsd": {"draft_length": 16}, "zipar": {"window": 8}}


def build():
    import torch

    from vistok import AutoregressiveImagePipeline, LlamaGenConfig, LlamaGenTransformer, LlamaGenVQConfig, LlamaGenVQModel

    torch.manual_seed(WEIGHTS_SEED)
    transformer = LlamaGenTransformer(LlamaGenConfig(codebook_size=16384, num_tokens=256, hidden_size=768, num_hidden_layers=12,
                                                     num_attention_heads=12, num_classes=1000, sampling_defaults=SETTINGS)).eval()
    with torch.no_grad():
        torch.nn.init.normal_(transformer.lm_head.weight, std=0.02)
    tokenizer = LlamaGenVQModel(LlamaGenVQConfig(image_size=32, codebook_size=16384, hidden_channels=32,
                                                 encoder_channel_mult=[1, 1], z_channels=32)).eval()
    pipe = AutoregressiveImagePipeline(image_tokenizer=tokenizer, transformer=transformer)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_default():
    import vistok.demo

    pipe = vistok.demo.load_default_ar_pipeline().to("cpu")
    pipe.transformer.eval()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _sync(device) -> None:
    import torch

    if getattr(device, "type", str(device)) == "cuda":
        torch.cuda.synchronize(device)


def sample(pipe, batch: int, tokens: int, seed: int, decoding: str, knobs: dict | None, settings_dict=SETTINGS):
    """(wall s, process CPU s, decoding_stats) of one call."""
    import torch

    settings = pipe._settings(*(settings_dict[k] for k in ("guidance_scale", "cfg_interval", "temperature", "top_k", "top_p")))
    device = pipe.transformer.device
    labels = (torch.arange(batch) * 97 % pipe.transformer.config.num_classes).to(device)
    generator = torch.Generator(device).manual_seed(seed)
    _sync(device)
    cpu, start = time.process_time(), time.perf_counter()
    full = pipe.transformer.config.num_tokens
    ids = pipe._generate({"class_labels": labels}, batch, None, settings, generator, True, False,
                         num_tokens=None if tokens == full else tokens, decoding=decoding, decoding_kwargs=knobs)
    _sync(device)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert ids.reshape(batch, -1).shape == (batch, tokens)
    return wall, cpu, dict(pipe.decoding_stats)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=256, help="tokens per image (a multiple of 16, at most 256)")
    parser.add_argument("--strategies", default="sjd,gsd,zipar")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"result JSON (default {DEFAULT_OUT.name}; decoding_<device>.json off the CPU)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (benchmarks/gpu_decoding.sh)")
    parser.add_argument("--model", choices=("gpt-b", "default"), default="gpt-b",
                        help="gpt-b: release width, random weights; default: the trained default AR model in the package")
    parser.add_argument("--photos", type=Path, help="with --model default: the photo dataset folder (quality figure)")
    parser.add_argument("--quality-per-class", type=int, default=8)
    args = parser.parse_args(argv)
    if args.out is None:
        args.out = DEFAULT_OUT if args.device == "cpu" else DEFAULT_OUT.with_name(f"decoding_{args.device}.json")
    if args.model == "default":
        return main_default(args)
    if args.tokens % 16 or not 16 <= args.tokens <= 256:
        parser.error("--tokens must be a multiple of 16 in [16, 256]")
    import torch

    torch.set_num_threads(NUM_THREADS)
    start = time.perf_counter()
    pipe = build().to(args.device)
    build_s = time.perf_counter() - start
    result = {"batch": args.batch, "tokens_per_image": args.tokens, "pairs": args.pairs, "build_s": round(build_s, 1),
              "load_average_1min_before": round(os.getloadavg()[0], 2),
              "strategies": timed_pairs(pipe, args.batch, args.tokens, args.pairs, args.strategies.split(","), SETTINGS)}
    result["total_s"] = round(time.perf_counter() - start, 1)
    out = json.loads(args.out.read_text()) if args.out.exists() else {}
    out.update({
        "benchmark": "decoding strategies vs standard KV-cached decoding, LlamaGen GPT-B c2i 256 px (release width), "
                     "AutoregressiveImagePipeline token sampling",
        "weights": "RANDOM (vistok init, seed 256; output head N(0, 0.02)). Acceptance rates and forward counts of "
                   "sjd/gsd on random weights are NOT meaningful for trained models (a random GPT's next-token "
                   "distribution barely depends on the context, so stale drafts pass); zipar's forward count is a "
                   "fixed schedule and holds for any weights. The trained default AR model: default_model below.",
        "machine": machine_info(), "device": args.device, "versions": versions("torch", "transformers", "diffusers"),
        "threads": NUM_THREADS, "dtype": "float32", "settings": SETTINGS,
        "note": "shared 2-core machine: see load_average_1min_after per pair; wall ratios of a pair share the load",
    })
    out[f"batch_{args.batch}"] = result
    write_result(args.out, out)
    print(json.dumps({k: {n: {m: v[m] for m in ("median_wall_ratio_standard_over_strategy",
                                                 "median_forward_ratio_standard_over_strategy")}
                          for n, v in result["strategies"].items()} for k in ["summary"]}))
    return 0


def write_result(path: Path, data: dict) -> None:
    scratch = path.with_name(path.name + ".tmp")  # a failed write never leaves half a JSON
    scratch.write_text(json.dumps(data, indent=1) + "\n")
    scratch.replace(path)


def timed_pairs(pipe, batch: int, tokens: int, pairs: int, strategies: list[str], settings: dict) -> dict:
    """For each strategy, ``pairs`` interleaved same-seed (standard, strategy) calls; median of the pair ratios."""
    import torch

    results = {}
    with torch.inference_mode():
        for name in strategies:
            knobs = STRATEGIES[name]
            for decoding, kw in (("standard", None), (name, knobs)):  # warm-up: one row
                sample(pipe, batch, 16, 0, decoding, kw, settings)
            rows = []
            for pair in range(pairs):
                seed = 1000 + pair
                order = [("standard", None), (name, knobs)]
                if pair % 2:
                    order.reverse()
                got = {decoding: sample(pipe, batch, tokens, seed, decoding, kw, settings) for decoding, kw in order}
                (sw, sc, ss), (dw, dc, ds) = got["standard"], got[name]
                rows.append({"seed": seed, "first": order[0][0], "standard_s": round(sw, 3), "strategy_s": round(dw, 3),
                             "standard_cpu_s": round(sc, 2), "strategy_cpu_s": round(dc, 2),
                             "standard_forwards": ss["model_forwards"], "strategy_forwards": ds["model_forwards"],
                             "acceptance_rate": ds.get("acceptance_rate"), "wall_ratio": round(sw / dw, 4),
                             "forward_ratio": round(ss["model_forwards"] / ds["model_forwards"], 4),
                             "load_average_1min_after": round(os.getloadavg()[0], 2)})
                print(json.dumps({"strategy": name, **rows[-1]}), file=sys.stderr, flush=True)
            wall = [r["wall_ratio"] for r in rows]
            forwards = [r["forward_ratio"] for r in rows]
            results[name] = {
                "knobs": knobs, "exact": name == "sjd",
                "median_wall_ratio_standard_over_strategy": round(statistics.median(wall), 3),
                "wall_ratio_range": [min(wall), max(wall)],
                "median_forward_ratio_standard_over_strategy": round(statistics.median(forwards), 3),
                "forward_ratio_range": [min(forwards), max(forwards)],
                "median_s": {"standard": round(statistics.median(r["standard_s"] for r in rows), 3),
                             name: round(statistics.median(r["strategy_s"] for r in rows), 3)},
                "forwards_per_call": {"standard": rows[0]["standard_forwards"],
                                      name: statistics.median(r["strategy_forwards"] for r in rows)},
                "pairs": rows}
    return results


def nearest_neighbour_classifier(photos: Path, size: int, holdout_every: int = 10):
    """(classify(images [N, 3, size, size] in [0, 1]) -> labels, held-back crops [M, 3, size, size], their labels):
    1-NN in pixel space over the training crops at ``size`` px (every ``holdout_every``-th crop held back)."""
    import numpy as np
    import PIL.Image
    import torch

    classes = sorted(p.name for p in (photos / "train").iterdir() if p.is_dir())
    refs, labels = [], []
    for label, name in enumerate(classes):
        for path in sorted((photos / "train" / name).glob("*.png")):
            with PIL.Image.open(path) as image:
                pixels = np.asarray(image.convert("RGB").resize((size, size), PIL.Image.BICUBIC), np.float32) / 255.0
            refs.append(torch.from_numpy(pixels).permute(2, 0, 1))
            labels.append(label)
    refs, labels = torch.stack(refs), torch.tensor(labels)
    held = torch.arange(len(refs)) % holdout_every == 0
    bank, bank_labels = refs[~held].flatten(1), labels[~held]

    def classify(images):
        distances = torch.cdist(images.flatten(1).float(), bank)
        return bank_labels[distances.argmin(1)]

    return classify, refs[held], labels[held], classes


def main_default(args) -> int:
    import torch

    torch.set_num_threads(NUM_THREADS)
    start = time.perf_counter()
    pipe = build_default().to(args.device)
    config = pipe.transformer.config
    settings = {**SETTINGS, **{k: v for k, v in config.sampling_defaults.items() if k in SETTINGS}}
    tokens = config.num_tokens
    strategies = [s for s in args.strategies.split(",") if s != "zipar"]  # ZipAR: 2D grids only
    result = {"batch": args.batch, "tokens_per_image": tokens, "pairs": args.pairs,
              "load_average_1min_before": round(os.getloadavg()[0], 2),
              "strategies": timed_pairs(pipe, args.batch, tokens, args.pairs, strategies, settings)}
    if args.photos is not None:
        size = pipe.image_tokenizer.config.image_size
        classify, held, held_labels, classes = nearest_neighbour_classifier(args.photos, size)
        if classes != [config.id2label[i] for i in range(config.num_classes)]:
            raise SystemExit(f"{args.photos}/train classes {classes} are not the model's {config.id2label}")
        quality = {"classifier": "1-NN in pixel space over the training crops at the tokenizer's size "
                                 f"({size} px), every 10th crop held back",
                   "samples_per_class": args.quality_per_class}
        quality["reference_reconstructions"] = reference_agreement(pipe, classify, held, held_labels)
        labels = torch.arange(config.num_classes).repeat_interleave(args.quality_per_class)
        for decoding in ["standard", *strategies]:
            knobs = STRATEGIES.get(decoding)
            images = pipe(class_labels=labels.tolist(), decoding=decoding, decoding_kwargs=knobs,
                          generator=torch.Generator(args.device).manual_seed(0), output_type="pt").images
            predicted = classify(images.float().cpu().clamp(0, 1))
            quality[decoding] = {"class_agreement": round(float((predicted == labels).float().mean()), 4),
                                 "model_forwards_per_call": pipe.decoding_stats["model_forwards"],
                                 "acceptance_rate": pipe.decoding_stats.get("acceptance_rate")}
            print(json.dumps({"quality": decoding, **quality[decoding]}), file=sys.stderr, flush=True)
        result["quality"] = quality
    result["total_s"] = round(time.perf_counter() - start, 1)
    out = json.loads(args.out.read_text()) if args.out.exists() else {}
    block = out.get("default_model", {})
    block.update({"model": "vistok.demo.DEFAULT_AR_PIPELINE: LlamaGen GPT (TRAINED, configs/demo_ar_generator.yaml) over "
                           "the default One-D-Piece tokenizer's 32 1D tokens",
                  "settings": settings, "threads": NUM_THREADS, "dtype": "float32", "device": args.device})
    block[f"batch_{args.batch}"] = result
    out["default_model"] = block
    out.setdefault("machine", machine_info())
    out.setdefault("versions", versions("torch", "transformers", "diffusers"))
    write_result(args.out, out)
    print(json.dumps({n: {m: v[m] for m in ("median_wall_ratio_standard_over_strategy",
                                             "median_forward_ratio_standard_over_strategy")}
                      for n, v in result["strategies"].items()}))
    return 0


def reference_agreement(pipe, classify, images, labels) -> float:
    """The classifier's agreement on the tokenizer's reconstructions of held-back real crops (a ceiling for samples)."""
    import torch

    tokenizer = pipe.image_tokenizer
    low, high = tokenizer.config.pixel_range
    with torch.inference_mode():
        recon = tokenizer.decode(tokenizer.encode((images * (high - low) + low).to(tokenizer.device)).token_ids)
    return round(float((classify(((recon.float().cpu() - low) / (high - low)).clamp(0, 1)) == labels).float().mean()), 4)


if __name__ == "__main__":
    raise SystemExit(main())
