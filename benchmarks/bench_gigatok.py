"""CPU benchmark: vistok's GigaTok tokenizer against the original ``VQVitModelPlus`` / ``VQVitModel2DPlus``
(SilentView/GigaTok, tokenizer/tokenizer_image/vq/vq_vit_model.py), in the same run, on the SAME weights.

Model: the released S-B configuration (configs/vq/VQ_SB256.yaml, or VQ_SB256_2d.yaml with ``--layout 2d``):
CNN ch 128 x (1, 1, 2, 2, 4), small encoder (512 wide, 6 layers), base decoder (768, 12), 256 tokens, codebook
16384 x 8, 256 px; random weights (``tests/_random_weights.random_state_dict``, seed 0) loaded into the original,
converted by ``vistok.modeling.gigatok.convert_gigatok.build_tokenizer`` for vistok.

Timed call: encode + decode of ``torch.rand(B, 3, 256, 256) * 2 - 1`` -- original ``quant, _, (_, _, ids) =
model.encode(x); model.decode_code(ids, shape)``; vistok ``model.decode(model.encode(x).token_ids)``. fp32,
``torch.set_num_threads(2)``, ``torch.inference_mode()``, one warm-up call each, then ``--repeats`` calls with the
two interleaved (alternating which goes first); medians. The token ids of both are compared on every call.
Peak memory: a fresh process per implementation resets the kernel's RSS high-water mark after building and one
warm-up call and reports the peak above the RSS before one timed call (activations and workspace; weights excluded).
Both processes run with ``MALLOC_MMAP_THRESHOLD_=65536``: every block of 64 KiB or more is mapped when allocated and
unmapped when freed, so the RSS peak is the peak of live activations. With glibc's default (a threshold that moves
with what was freed) the warm-up leaves freed memory resident that the timed call reuses unseen, by an amount that
depends on each side's allocation history (issue 21: 200 vs 32 MiB reported, where the torch profiler's allocator
peaks, S-B with a small decoder, were 224.8 vs 129.3 MiB).

``--part gpt``: GPT-B sampling (autoregressive/models/gpt_1d.py, 768 wide, 12 layers, 12 heads, 16384 codes,
learned positions, the original's initialisation under seed 256 with the zero-initialised head drawn N(0, 0.02)),
converted by ``build_gpt`` into ``LlamaGenTransformer``; ``AutoregressiveImagePipeline.sample_tokens`` against
``generate`` (constant guidance 4.0, top_k 2000, top_p 1, temperature 1), the first ``--gpt-tokens`` tokens of a
class-conditional batch (the pipeline holds a tiny random GigaTok tokenizer that is never called); the same seed
for both on every call, ids compared.

Usage (from the repository root; the upstream checkout is imported from ``--upstream``, nothing of it is committed):

    python benchmarks/bench_gigatok.py --upstream /tmp/gigatok [--layout 1d|2d] [--batch 1] [--repeats 3]
    python benchmarks/bench_gigatok.py --upstream /tmp/gigatok --layout 2d --smoke   # a check that it runs end to end
    python benchmarks/bench_gigatok.py --upstream /tmp/gigatok --part gpt [--batch 2] [--gpt-tokens 64] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _measure import bench_threads, paired_speedup, machine_info, peak_rss_since_reset_kb, reset_peak_rss, run_child, versions  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
NUM_THREADS = bench_threads()  # VISTOK_BENCH_THREADS, default 2
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536"}  # the memory children: RSS follows the live blocks (see above)
GOAL_RATIO = 1.0
SB = dict(codebook_size=16384, codebook_embed_dim=8, codebook_l2_norm=True, codebook_show_usage=True, commit_loss_beta=0.25,
          entropy_loss_ratio=0.0, encoder_ch_mult=[1, 1, 2, 2, 4], decoder_ch_mult=[1, 1, 2, 2, 4], model_size=None,
          encoder_size="small", decoder_size="base", num_latent_tokens=256, z_channels=256, dropout_p=0.0,
          adaptive_gn=True, d2s_up=True, rot=True, use_attn=False, distill_depth=3)


def _build(upstream: Path, layout: str, impls: tuple[str, ...]):
    import warnings

    import torch

    warnings.filterwarnings("ignore")
    sys.dont_write_bytecode = True
    sys.path.insert(0, str(upstream))
    sys.path.insert(0, str(REPO_ROOT / "tests"))
    from _random_weights import random_state_dict
    from tokenizer.tokenizer_image.vq import vq_vit_model as vq

    if layout == "1d":
        original = vq.VQVitModelPlus(vq.VQVitModelPlusArgs(**SB, multi_level_query_init=True))
    else:
        original = vq.VQVitModel2DPlus(vq.VQVitModel2DPlusArgs(**SB, transformer_layer_type="TransformerLayer"))
        for module in original.modules():  # the original registers a NaN-check hook on every module; not timed here
            module._forward_hooks.clear()
    state = random_state_dict({k: list(v.shape) for k, v in original.state_dict().items()}, 0)
    original.load_state_dict(state)
    original.eval()
    ours = None
    if "vistok" in impls:
        from vistok.modeling.gigatok.convert_gigatok import build_tokenizer

        ours = build_tokenizer(state, 256).eval()
    if "original" not in impls:
        original = None
    del state
    return original, ours


def _run(impl, original, ours, x):
    import torch

    with torch.inference_mode():
        if impl == "original":
            quant, _, (_, _, ids) = original.encode(x)
            b, c, h, w = quant.shape
            original.decode_code(ids, [b, c, h, w])
            return ids.view(b, -1)
        ids = ours.encode(x).token_ids
        ours.decode(ids)
        return ids.reshape(ids.shape[0], -1)


def _timed(fn):
    start, start_cpu = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - start, time.process_time() - start_cpu, out


def worker_time(upstream: Path, layout: str, batch: int, repeats: int) -> dict:
    import torch

    torch.set_num_threads(NUM_THREADS)
    original, ours = _build(upstream, layout, ("original", "vistok"))
    x = torch.rand(batch, 3, 256, 256, generator=torch.Generator().manual_seed(0)) * 2 - 1
    for impl in ("vistok", "original"):
        _run(impl, original, ours, x)
    times, cpu, equal = {"vistok": [], "original": []}, {"vistok": [], "original": []}, []
    for r in range(repeats):
        ids = {}
        for impl in (("original", "vistok") if r % 2 == 0 else ("vistok", "original")):
            wall, c, ids[impl] = _timed(lambda: _run(impl, original, ours, x))
            times[impl].append(wall)
            cpu[impl].append(c)
        equal.append(bool(torch.equal(ids["vistok"], ids["original"])))
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"batch": batch, "repeats": repeats, "wall_s": {k: [round(t, 3) for t in v] for k, v in times.items()},
            "cpu_s": {k: [round(t, 3) for t in v] for k, v in cpu.items()},
            "median_s": {k: round(v, 3) for k, v in med.items()},
            "images_per_s": {k: round(batch / v, 3) for k, v in med.items()},
            "speedup_vs_original": round(med["original"] / med["vistok"], 3), **paired_speedup(times["original"], times["vistok"]),
            "token_ids_equal_every_call": all(equal)}


def worker_memory(upstream: Path, layout: str, impl: str, batch: int) -> dict:
    import torch

    torch.set_num_threads(NUM_THREADS)
    original, ours = _build(upstream, layout, (impl,))
    x = torch.rand(batch, 3, 256, 256, generator=torch.Generator().manual_seed(0)) * 2 - 1
    _run(impl, original, ours, x)
    baseline = reset_peak_rss()
    _run(impl, original, ours, x)
    return {"impl": impl, "batch": batch, "peak_above_baseline_mib": round(peak_rss_since_reset_kb(baseline) / 1024, 1)}


GPT_SETTINGS = dict(guidance_scale=4.0, cfg_interval=-1, temperature=1.0, top_k=2000, top_p=1.0)


def worker_gpt(upstream: Path, batch: int, tokens: int, repeats: int) -> dict:
    import warnings

    import torch

    warnings.filterwarnings("ignore")
    torch.set_num_threads(NUM_THREADS)
    sys.dont_write_bytecode = True
    sys.path.insert(0, str(upstream))
    from autoregressive.models import generate as generate_module
    from autoregressive.models.gpt_1d import ModelArgs, Transformer

    from vistok import AutoregressiveImagePipeline
    from vistok.modeling.gigatok import GigaTokConfig, GigaTokModel
    from vistok.modeling.gigatok.convert_gigatok import build_gpt

    generate_module.dist.get_rank = lambda: 0
    torch.manual_seed(256)
    original = Transformer(ModelArgs(dim=768, n_layer=12, n_head=12, vocab_size=16384, block_size=256, num_classes=1000,
                                     cls_token_num=1, model_type="c2i", token_dropout_p=0.0, resid_dropout_p=0.0,
                                     ffn_dropout_p=0.0)).eval()
    torch.nn.init.normal_(original.output.weight, std=0.02)
    transformer = build_gpt(original.state_dict(), sampling=GPT_SETTINGS)
    tok = GigaTokModel(GigaTokConfig(image_size=16, num_latent_tokens=256, codebook_size=16384, hidden_channels=32,
                                     encoder_channel_mult=[1], z_channels=32, encoder_hidden_size=32, encoder_num_layers=1,
                                     encoder_num_heads=2, decoder_hidden_size=32, decoder_num_layers=1, decoder_num_heads=2,
                                     distill_depth=None)).eval()
    pipe = AutoregressiveImagePipeline(image_tokenizer=tok, transformer=transformer)
    pipe.set_progress_bar_config(disable=True)
    labels = (torch.arange(batch) * 37 + 5) % 1000

    def run(impl, seed):
        with torch.inference_mode():
            if impl == "original":
                torch.manual_seed(seed)
                return generate_module.generate(original, labels, tokens, cfg_scale=4.0, cfg_interval=-1, temperature=1.0,
                                                top_k=2000, top_p=1.0, sample_logits=True).long()
            gen = torch.Generator().manual_seed(seed)
            return pipe._generate({"class_labels": labels}, batch, None, pipe._settings(**GPT_SETTINGS), gen, True, False,
                                  num_tokens=tokens)

    run("vistok", 0), run("original", 0)
    times, equal = {"vistok": [], "original": []}, []
    for r in range(repeats):
        ids = {}
        for impl in (("original", "vistok") if r % 2 == 0 else ("vistok", "original")):
            wall, _, ids[impl] = _timed(lambda: run(impl, 100 + r))
            times[impl].append(wall)
        equal.append(bool(torch.equal(ids["vistok"], ids["original"])))
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"batch": batch, "tokens": tokens, "repeats": repeats, "wall_s": {k: [round(t, 3) for t in v] for k, v in times.items()},
            "tokens_per_s": {k: round(batch * tokens / v, 2) for k, v in med.items()},
            "speedup_vs_original": round(med["original"] / med["vistok"], 3), **paired_speedup(times["original"], times["vistok"]),
            "token_ids_equal_every_call": all(equal)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True, type=Path)
    parser.add_argument("--layout", choices=("1d", "2d"), default="1d")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--part", choices=("tokenizer", "gpt"), default="tokenizer")
    parser.add_argument("--gpt-tokens", type=int, default=256)
    parser.add_argument("--worker", choices=("time", "memory"))
    parser.add_argument("--impl", choices=("vistok", "original"))
    parser.add_argument("--smoke", action="store_true",
                        help="a check that the script runs end to end: the transformers at the original's 'tiny' size (the "
                             "CNNs as released), 1 repeat; the result is printed, and written only with --out")
    args = parser.parse_args()
    if args.smoke:
        SB.update(encoder_size="tiny", decoder_size="tiny")
        args.repeats = 1
    if args.worker == "time":
        print(json.dumps(worker_time(args.upstream, args.layout, args.batch, args.repeats)))
        return
    if args.worker == "memory":
        print(json.dumps(worker_memory(args.upstream, args.layout, args.impl, args.batch)))
        return
    if args.part == "gpt":
        timing = worker_gpt(args.upstream, args.batch, args.gpt_tokens, args.repeats)
        result = {"benchmark": "gigatok_gpt_cpu: GPT-B (gpt_1d) sampling, vistok pipeline vs the original generate",
                  "machine": machine_info(), "versions": versions("torch", "transformers"),
                  "settings": {"torch_num_threads": NUM_THREADS, "dtype": "float32", **GPT_SETTINGS,
                               "goal": f"vistok >= {GOAL_RATIO}x the original's throughput"},
                  "timing": timing, "goal_met": timing["median_pair_ratio"] >= GOAL_RATIO}
        out = args.out or REPO_ROOT / "benchmarks" / "results" / "gigatok_gpt_cpu.json"
        out.write_text(json.dumps(result, indent=1) + "\n")
        print(json.dumps(result, indent=1))
        return
    common = ["--upstream", str(args.upstream), "--layout", args.layout, "--batch", str(args.batch)] + ["--smoke"] * args.smoke
    timing = run_child(__file__, [*common, "--repeats", str(args.repeats), "--worker", "time"], timeout=3000)
    memory = [run_child(__file__, [*common, "--worker", "memory", "--impl", impl], timeout=1500, env=MALLOC_ENV)
              for impl in ("vistok", "original")]
    result = {
        "benchmark": f"gigatok_cpu: S-B {args.layout.upper()} tokenizer encode+decode, vistok vs the original code",
        "machine": machine_info(), "versions": versions("torch", "transformers", "einops"),
        "settings": {"torch_num_threads": NUM_THREADS, "dtype": "float32", "image_size": 256, "layout": args.layout,
                     "config": "configs/vq/VQ_SB256" + ("_2d" if args.layout == "2d" else "") + ".yaml"
                               + (" with tiny transformers (--smoke)" if args.smoke else ""),
                     "memory_children_env": MALLOC_ENV,
                     "weights": "tests/_random_weights.random_state_dict(seed 0), converted by build_tokenizer",
                     "goal": f"vistok >= {GOAL_RATIO}x the original's throughput"},
        "timing": timing, "peak_memory": memory,
        "goal_met": timing.get("median_pair_ratio", 0) >= GOAL_RATIO,
    }
    out = args.out or (None if args.smoke else REPO_ROOT / "benchmarks" / "results" / f"gigatok_{args.layout}_cpu.json")
    if out is not None:
        out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
