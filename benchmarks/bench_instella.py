"""CPU benchmark: vistok's Instella-T2I against the original AMD-AGI/Instella-T2I code, in the same run, on the same
random weights.

Two figures (``--parts``), each timed in its own fresh process that builds both implementations:

* ``tokenizer``: the binary autoencoder at its released size (ViT encoder 768 wide x 12 layers, grid halved after
  block 7; 128 latent tokens of 64 bits; ViT decoder 1024 x 16, doubled after block 7; RoPE scale ``set_scale(1024)``)
  encoding a ``--image-size`` px image (1024 by default) to bits and decoding the bits back to pixels: vistok's
  ``InstellaBAEModel.encode`` + ``decode`` vs the original ``BAE_Model.encode`` (``info["binary_code"]``) +
  ``decode(bits, S/16, S/16)``. Weights: ``tests/_random_weights.random_state_dict`` over the original's key list,
  loaded into the original and converted with vistok's converter functions (strict). Bits must be identical on every
  timed call (the script raises otherwise); the reconstructions' largest difference is recorded.
* ``ar``: the AR generator at the release's width (2048 wide, 16 heads of 128, text features 2048 wide: AMD-OLMo-1B's,
  ``--ar-layers`` blocks, 16 = the release, one per OLMo layer) sampling ``--ar-tokens`` tokens of 64 bits (128 = the
  release) with guidance 7.5 and temperature 1.0 (the release's) from the same random text features: ``prompt_embeds``
  (``--text-length`` positions, the conditional row all valid, the unconditional "" row left padded to one valid
  position as the original's tokenizer call pads it). vistok: ``BinaryAutoregressiveTextToImagePipeline.sample_tokens``
  (static KV cache, ``use_cache=True``, the default) with ``generator=torch.Generator().manual_seed(seed)``; the
  original: ``BinaryAR.sample`` after ``torch.manual_seed(seed)``, which recomputes the whole text + image sequence at
  each step. The text encoder is not timed on either side (the original's ``tokenizer``/``llm`` arguments are stand-ins
  returning the same features). Bits must be identical on every timed call (the script raises otherwise).

Timing: after one warm-up call each, ``--pairs`` same-seed pairs (seed 1000 + pair), alternating which implementation
goes first; the figure is the median of the per-pair ratios original seconds / vistok seconds, with their spread.
``torch.set_num_threads(--threads)`` for both (default 2 = the machine's cores; use 1 when the machine is shared, so
both sides of a pair see the same load), fp32, ``torch.no_grad()``. The 1-minute load average before and after each
pair and each call's CPU-seconds per wall-second are recorded.

Peak memory (``memory`` part): a fresh process per implementation and figure builds only that implementation, runs a
short warm-up (a 256 px image / 2 tokens), resets the kernel's RSS high-water mark (``_measure.reset_peak_rss``) and
reports the peak above the RSS before one full call (activations, caches and workspace; weights excluded).

Run-time changes to the original, in memory only (as tests/fixtures/make_instella_fixtures.py): its flash-attn calls
go to PyTorch SDPA -- the tokenizer's (no mask, non-causal) directly, the AR model's (text padding mask, queries = the
image part, causal aligned bottom-right) as one batched SDPA call with flash-attn's varlen semantics as a boolean mask;
``FlashAttention2.config`` is set to an empty namespace (its fp32 path reads it). No upstream code lives in this
repository: the checkout is imported from ``--upstream`` (``fetch github:AMD-AGI/Instella-T2I``, then
``git --git-dir=... archive HEAD | tar -x -C /tmp/instella``).

Usage (from the repository root; each run merges its parts into --out, written atomically):

    python benchmarks/bench_instella.py --upstream /tmp/instella [--upstream-commit SHA] [--parts tokenizer ar memory] [--threads 2] [--pairs 5]
    python benchmarks/bench_instella.py --upstream /tmp/instella --threads 1 --quick   # shared / slow machine

Timing uses a short warm-up (a 256 px image / 4 tokens) before the pairs. On 2 cores under load at one thread a 1024 px
encode + decode takes about a minute per side (the tokenizer part about 10 minutes); the original's AR sampling at the
full 16 blocks about six minutes per call (vistok: under a minute). ``--quick`` therefore runs the AR figure with 2 of the 16 blocks (same width,
all 128 tokens; per block the original's and vistok's work scale alike, so the ratio is that of the full depth up to
the small per-step work outside the blocks); the JSON records what was run.
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
from _measure import machine_info, peak_rss_since_reset_kb, reset_peak_rss, run_child, versions  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "instella_cpu.json"
UPSTREAM_REPO = "AMD-AGI/Instella-T2I"
GOALS = {"tokenizer": 1.0, "ar": 3.0}
# configs/bae_config.py (the release; num_latent_tkns is assigned twice there, 128 wins)
BAE_CONFIG = dict(in_channels=3, encoder_layers=12, encoder_head_dim=64, encoder_num_heads=12, patch_size=16,
                  num_latent_tkns=128, axes_dims_rope=[8, 28, 28], downsample_idx=[7], decoder_layers=16,
                  decoder_head_dim=64, decoder_num_heads=16, upsample_idx=[7], codebook_size=64)
BAE_SCALE = 1024  # configs/*_config.py bae_scale
BAE_SEED = 4001
# test_ar.py: Instella_AR_Model(in_channels=64, num_layers=OLMo-1B's 16, 128-wide heads x 16, 128 tokens, text 2048)
AR_WIDTH = dict(in_channels=64, attention_head_dim=128, num_attention_heads=16, text_cond_dim=2048)
AR_SEED = 4002
AR_SETTINGS = {"guidance_scale": 7.5, "temperature": 1.0}  # test_ar.py's defaults
QUICK_AR_LAYERS = 2


class AttrDict(dict):
    __getattr__ = dict.__getitem__


# -- the original, with its flash-attn calls on PyTorch SDPA --------------------------------------------------------


def _sdpa_instead_of_flash(query, key, value, attention_mask, query_length, is_causal=False, dropout=0.0, **kwargs):
    import torch.nn.functional as F

    assert attention_mask is None and not is_causal and dropout == 0.0
    return F.scaled_dot_product_attention(query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2)).transpose(1, 2)


def _flash_varlen_causal(query, key, value, attention_mask, query_length, is_causal=False, dropout=0.0, **kwargs):
    """flash-attn's varlen semantics for the AR call, batched: keys at padded positions dropped, the causal mask aligned
    bottom-right on each row's unpadded keys (query i sees unpadded key j iff rank(j) <= i + valid_keys - query_length)."""
    import torch
    import torch.nn.functional as F

    assert is_causal and dropout == 0.0
    keep = attention_mask.bool()
    rank = keep.long().cumsum(-1) - 1
    shift = keep.sum(-1) - query.shape[1]
    queries = torch.arange(query.shape[1], device=query.device)
    allowed = keep[:, None, :] & (rank[:, None, :] <= queries[None, :, None] + shift[:, None, None])
    out = F.scaled_dot_product_attention(query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2),
                                         attn_mask=allowed[:, None])
    return out.transpose(1, 2)


def _import_upstream(upstream: Path) -> None:
    sys.dont_write_bytecode = True  # leave no __pycache__ in the checkout
    if str(upstream) not in sys.path:
        sys.path.insert(0, str(upstream))
    sys.path.insert(0, str(REPO_ROOT / "tests"))


def _meta_build(cls, *args, **kwargs):
    import torch

    with torch.device("meta"):  # no init: the weights are loaded with assign=True
        return cls(*args, **kwargs)


def _check_loaded(model) -> None:
    left = [k for k, v in [*model.named_parameters(), *model.named_buffers()] if v.is_meta]
    if left:
        raise RuntimeError(f"tensors left on the meta device: {left[:5]}")


# -- the tokenizer -----------------------------------------------------------------------------------------------


def build_tokenizer(upstream: Path, impls: tuple[str, ...]):
    """(original BAE_Model or None, vistok InstellaBAEModel or None) on the same random weights."""
    import warnings

    warnings.filterwarnings("ignore")
    _import_upstream(upstream)
    from _random_weights import random_state_dict
    from bae import llama_attn
    from bae.ae_model import BAE_Model

    llama_attn._flash_attention_forward = _sdpa_instead_of_flash
    original = _meta_build(BAE_Model, AttrDict(BAE_CONFIG))
    state = random_state_dict({k: list(v.shape) for k, v in original.state_dict().items()}, BAE_SEED)
    ours = None
    if "vistok" in impls:
        from vistok.conversion import load_converted
        from vistok.modeling.instella import InstellaBAEConfig, InstellaBAEModel
        from vistok.modeling.instella.convert_instella import BAE_SETTINGS, convert_state_dict, infer_config

        converted, unused = convert_state_dict(state)
        ours = load_converted(InstellaBAEModel, InstellaBAEConfig(**infer_config(state, dict(BAE_SETTINGS))), converted,
                              unused, state)
    if "original" in impls:
        original.load_state_dict(state, assign=True)
        _check_loaded(original)
        original.set_scale(BAE_SCALE)
        original.eval()
    else:
        original = None
    return original, ours


def run_tokenizer(impl: str, original, ours, batch: int, size: int, seed: int):
    """(bits [B, 128, 64] int64, reconstruction [B, 3, S, S])."""
    import torch

    pixels = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    with torch.no_grad():
        if impl == "original":
            _, _, info = original.encode(pixels)
            bits = info["binary_code"]
            return bits.long(), original.decode(bits, size // 16, size // 16)
        bits = ours.encode(pixels).token_ids
        return bits, ours.decode(bits, image_size=size)


# -- the AR generator --------------------------------------------------------------------------------------------


def build_ar(upstream: Path, impls: tuple[str, ...], layers: int, tokens: int):
    """(original Instella_AR_Model or None, vistok pipeline or None) on the same random weights."""
    import types
    import warnings

    warnings.filterwarnings("ignore")
    _import_upstream(upstream)
    from _random_weights import random_state_dict
    from models import llama_attn
    from models.ar_model import Instella_AR_Model

    llama_attn._flash_attention_forward = _flash_varlen_causal
    original = _meta_build(Instella_AR_Model, num_layers=layers, num_img_tkns=tokens, **AR_WIDTH)
    state = random_state_dict({k: list(v.shape) for k, v in original.state_dict().items()}, AR_SEED)
    pipe = None
    if "vistok" in impls:
        from vistok import BinaryAutoregressiveTextToImagePipeline
        from vistok.conversion import load_converted, rename_key
        from vistok.modeling.instella import InstellaARConfig, InstellaARModel, InstellaBAEConfig, InstellaBAEModel
        from vistok.modeling.instella.convert_instella import _AR_RENAMES, _AR_UNUSED, infer_ar_config

        # what load_ar does with ar.pt's state dict
        converted = {rename_key(k, _AR_RENAMES): v for k, v in state.items() if not _AR_UNUSED.match(k)}
        config = InstellaARConfig(**infer_ar_config(state, AR_WIDTH["attention_head_dim"]), sampling_defaults=dict(AR_SETTINGS))
        transformer = load_converted(InstellaARModel, config, converted, set(), state)
        # the pipeline holds a tiny tokenizer of the same token shape (never called: sampling only)
        tiny = InstellaBAEModel(InstellaBAEConfig(image_size=64, num_tokens=tokens, encoder_hidden_size=64, encoder_num_layers=1,
                                                  encoder_num_heads=1, decoder_hidden_size=64, decoder_num_layers=1,
                                                  decoder_num_heads=1, downsample_layers=[0], upsample_layers=[0])).eval()
        pipe = BinaryAutoregressiveTextToImagePipeline(image_tokenizer=tiny, transformer=transformer)
        pipe.set_progress_bar_config(disable=True)
    if "original" in impls:
        original.load_state_dict(state, assign=True)
        for module in original.modules():
            if isinstance(module, llama_attn.FlashAttention2):
                module.config = types.SimpleNamespace()  # its fp32 path reads self.config
        _check_loaded(original)
        original.eval()
    else:
        original = None
    return original, pipe


def ar_text(batch: int, layers: int, length: int):
    """Random text features [2B, layers, T, 2048] ([conditional; unconditional]) and the left-padded mask [2B, T]."""
    import torch

    states = torch.randn(2 * batch, layers, length, AR_WIDTH["text_cond_dim"], generator=torch.Generator().manual_seed(7))
    mask = torch.ones(2 * batch, length, dtype=torch.long)
    mask[batch:, :-1] = 0  # "" -> one token (EOS), left padded to the prompt's length
    return states, mask


def run_ar(impl: str, original, pipe, text, batch: int, tokens: int, seed: int):
    """Bits [B, tokens, 64] int64."""
    import torch

    states, mask = text
    with torch.no_grad():
        if impl == "original":
            from models.ar_model import BinaryAR

            class Encoded(dict):
                def to(self, device):  # BinaryAR.sample moves the tokenizer output to "cuda"
                    return self

            features = tuple(states.unbind(1))

            def tokenizer(texts, **kwargs):
                assert len(texts) == 2 * batch and kwargs["padding"] is True
                return Encoded(attention_mask=mask)

            def llm(attention_mask, output_hidden_states):
                return types_ns(hidden_states=(None, *features))

            torch.manual_seed(seed)
            return BinaryAR(tokens).sample(original, tokenizer, llm, ["a prompt"] * batch, guidance_scale=AR_SETTINGS["guidance_scale"],
                                           temp=AR_SETTINGS["temperature"]).long()
        cfg = pipe.transformer.config
        saved = cfg.num_tokens
        cfg.num_tokens = tokens  # fewer only for the memory part's short warm-up
        try:
            return pipe.sample_tokens(prompt_embeds=states[:batch], prompt_attention_mask=mask[:batch],
                                      negative_prompt_embeds=states[batch:], negative_prompt_attention_mask=mask[batch:],
                                      guidance_scale=AR_SETTINGS["guidance_scale"], temperature=AR_SETTINGS["temperature"],
                                      generator=torch.Generator().manual_seed(seed), use_cache=True)
        finally:
            cfg.num_tokens = saved


def types_ns(**kwargs):
    import types

    return types.SimpleNamespace(**kwargs)


# -- workers -----------------------------------------------------------------------------------------------------


def _timed(fn):
    start, start_cpu = time.perf_counter(), time.process_time()
    out = fn()
    wall = time.perf_counter() - start
    return wall, (time.process_time() - start_cpu) / wall, out


def _spread(values: list[float]) -> dict:
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3), "max": round(max(values), 3),
            "per_pair": [round(v, 3) for v in values]}


def _pairs(call, warmup, compare, pairs: int) -> dict:
    """A short warm-up call each, then ``pairs`` same-seed pairs alternating the order; raises if an output differs."""
    impls = ("original", "vistok")
    warm = {}
    for impl in impls:
        warm[impl] = round(_timed(lambda: warmup(impl))[0], 2)
    times = {k: [] for k in impls}
    cpu = {k: [] for k in impls}
    loads, details = [], []
    for p in range(pairs):
        order = impls if p % 2 == 0 else impls[::-1]
        before = os.getloadavg()[0]
        out = {}
        for impl in order:
            wall, per_wall, out[impl] = _timed(lambda: call(impl, 1000 + p))
            times[impl].append(round(wall, 3))
            cpu[impl].append(round(per_wall, 2))
        loads.append([round(before, 2), round(os.getloadavg()[0], 2)])
        details.append(compare(out["original"], out["vistok"], p))
        print(json.dumps({"pair": p, "order": list(order), "seconds": {k: times[k][-1] for k in impls}, "load": loads[-1]}),
              file=sys.stderr, flush=True)
    ratios = [o / v for o, v in zip(times["original"], times["vistok"])]
    return {"warmup_s": warm, "seconds": times, "median_s": {k: round(statistics.median(v), 3) for k, v in times.items()},
            "cpu_seconds_per_wall_second": cpu, "load_average_1min_before_after_each_pair": loads,
            "order_first": ["original" if p % 2 == 0 else "vistok" for p in range(pairs)],
            "speedup_vs_original": _spread(ratios), "per_pair_checks": details}


def worker_tokenizer(args) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    original, ours = build_tokenizer(args.upstream, ("original", "vistok"))
    build_s = round(time.perf_counter() - t0, 1)

    def compare(a, b, p):
        if not torch.equal(a[0], b[0]):
            raise AssertionError(f"pair {p}: the bits differ in {int((a[0] != b[0]).sum())} of {a[0].numel()} places")
        return {"bits_identical": True, "reconstruction_max_abs_diff": float((a[1] - b[1]).abs().max())}

    res = _pairs(lambda impl, seed: run_tokenizer(impl, original, ours, args.batch, args.image_size, seed),
                 lambda impl: run_tokenizer(impl, original, ours, args.batch, 256, 999), compare, args.pairs)
    res["warmup"] = "one 256 px call each"
    return {"build_s": build_s, "attn_implementation": ours.config._attn_implementation, **res}


def worker_ar(args) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    original, pipe = build_ar(args.upstream, ("original", "vistok"), args.ar_layers, args.ar_tokens)
    build_s = round(time.perf_counter() - t0, 1)
    text = ar_text(args.batch, args.ar_layers, args.text_length)

    def compare(a, b, p):
        if a.shape != b.shape or not torch.equal(a, b):
            raise AssertionError(f"pair {p}: the sampled bits differ ({tuple(a.shape)} vs {tuple(b.shape)}, "
                                 f"{int((a != b).sum()) if a.shape == b.shape else 'shapes'} places)")
        return {"bits_identical": True, "ones_fraction": round(float(a.float().mean()), 4)}

    res = _pairs(lambda impl, seed: run_ar(impl, original, pipe, text, args.batch, args.ar_tokens, seed),
                 lambda impl: run_ar(impl, original, pipe, text, args.batch, 4, 999), compare, args.pairs)
    res["warmup"] = "one 4-token call each"
    tokens = args.batch * args.ar_tokens
    res["tokens_per_s"] = {k: round(tokens / v, 3) for k, v in res["median_s"].items()}
    return {"build_s": build_s, "attn_implementation": pipe.transformer.config._attn_implementation, **res}


def worker_memory(args, part: str, impl: str) -> dict:
    import ctypes
    import gc

    import torch

    torch.set_num_threads(args.threads)
    if part == "tokenizer":
        original, ours = build_tokenizer(args.upstream, (impl,))
        run_tokenizer(impl, original, ours, args.batch, 256, 0)  # warm-up, small
        call = lambda: run_tokenizer(impl, original, ours, args.batch, args.image_size, 1000)  # noqa: E731
    else:
        original, pipe = build_ar(args.upstream, (impl,), args.ar_layers, args.ar_tokens)
        text = ar_text(args.batch, args.ar_layers, args.text_length)
        run_ar(impl, original, pipe, text, args.batch, 2, 0)  # warm-up, 2 tokens
        call = lambda: run_ar(impl, original, pipe, text, args.batch, args.ar_tokens, 1000)  # noqa: E731
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    base = reset_peak_rss()
    seconds, _, _ = _timed(call)
    return {"impl": impl, "peak_rss_above_baseline_mib": round(peak_rss_since_reset_kb(base) / 1024, 1),
            "baseline_rss_mib": round(base / 1024, 1), "seconds": round(seconds, 2)}


# -- driver ------------------------------------------------------------------------------------------------------


def _upstream_commit(upstream: Path) -> str:
    import subprocess

    try:
        return subprocess.run(["git", "-C", str(upstream), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _settings(args, part: str) -> dict:
    common = {"threads": args.threads, "pairs": args.pairs, "batch": args.batch, "dtype": "float32"}
    if part == "tokenizer":
        return {**common, "image_size": args.image_size, "bae_scale": BAE_SCALE, "original_config": BAE_CONFIG,
                "measured": "pixels -> bits -> pixels (encode + decode)"}
    return {**common, "layers": args.ar_layers, "release_layers": 16, "tokens": args.ar_tokens, "release_tokens": 128,
            "text_length": args.text_length, "unconditional_valid_text_positions": 1, **AR_WIDTH, **AR_SETTINGS,
            "guidance_rows": 2 * args.batch, "measured": "text features -> bits (sampling only; text encoder not run)",
            "quick": args.quick}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--upstream", type=Path, required=True, help="a checkout of AMD-AGI/Instella-T2I")
    parser.add_argument("--upstream-commit", help="the checkout's commit when it is not a git work tree (an exported archive)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--parts", nargs="+", choices=("tokenizer", "ar", "memory"), default=["tokenizer", "ar", "memory"])
    parser.add_argument("--threads", type=int, default=2, help="torch threads of both sides (1 on a shared machine)")
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--image-size", type=int, default=1024)
    parser.add_argument("--ar-layers", type=int, default=16, help="AR blocks (the release: 16)")
    parser.add_argument("--ar-tokens", type=int, default=128, help="tokens sampled (the release: 128)")
    parser.add_argument("--text-length", type=int, default=32, help="text positions (the prompt's tokens; at most 128)")
    parser.add_argument("--quick", action="store_true", help=f"AR with {QUICK_AR_LAYERS} of the 16 blocks (same width)")
    parser.add_argument("--tag", help="store this run's parts under '<part>_<tag>' (an extra figure beside the main one)")
    parser.add_argument("--note", help="a note stored in the JSON (e.g. that the machine was shared)")
    parser.add_argument("--_worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.upstream = args.upstream.resolve()
    if args.quick:
        args.ar_layers = QUICK_AR_LAYERS
    if args._worker:
        kind, *rest = args._worker
        res = {"tokenizer": worker_tokenizer, "ar": worker_ar}[kind](args) if kind != "memory" else worker_memory(args, *rest)
        print(json.dumps(res))
        return
    common = ["--upstream", str(args.upstream), "--threads", str(args.threads), "--pairs", str(args.pairs), "--batch",
              str(args.batch), "--image-size", str(args.image_size), "--ar-layers", str(args.ar_layers), "--ar-tokens",
              str(args.ar_tokens), "--text-length", str(args.text_length)] + (["--quick"] if args.quick else [])
    env = {"PYTHONPATH": str(REPO_ROOT / "src"), "OMP_NUM_THREADS": str(args.threads)}

    def child(*worker):
        t = time.perf_counter()
        res = run_child(__file__, [*common, "--_worker", *worker], timeout=3600, env=env)
        res["wall_s"] = round(time.perf_counter() - t, 1)
        brief = {k: res.get(k) for k in ("speedup_vs_original", "peak_rss_above_baseline_mib", "error")}
        print(json.dumps({"done": worker, **brief}), flush=True)
        return res

    report = json.loads(args.out.read_text()) if args.out.is_file() else {}
    results = report.get("results", {})
    suffix = f"_{args.tag}" if args.tag else ""
    for part in ("tokenizer", "ar"):
        if part in args.parts:
            results[part + suffix] = {"settings": _settings(args, part), **child(part)}
    if "memory" in args.parts:
        results["memory" + suffix] = {part: {"settings": _settings(args, part), **{impl: child("memory", part, impl)
                                                                          for impl in ("original", "vistok")}}
                             for part in ("tokenizer", "ar")}

    def goal(part):
        res = results.get(part, {})
        ratio = res.get("speedup_vs_original", {}).get("median")
        line = {"target_speedup": GOALS[part], "median_speedup": ratio, "bits_identical_every_call": "error" not in res and bool(res),
                "met": ratio is not None and ratio >= GOALS[part] and "error" not in res,
                "settings": {k: res.get("settings", {}).get(k) for k in ("threads", "pairs", "image_size", "layers", "tokens")
                             if k in res.get("settings", {})}}
        extra = {k: v.get("speedup_vs_original", {}).get("median", v.get("error")) for k, v in results.items()
                 if k.startswith(part + "_")}
        return {**line, "extra_runs_median_speedup": extra} if extra else line

    report.update({
        "benchmark": "Instella-T2I on CPU, vistok vs the original AMD-AGI/Instella-T2I code on the same random weights: "
                     "the binary tokenizer's encode + decode, and AR sampling with guidance (vistok: static KV cache; "
                     "the original: the whole text + image sequence recomputed per token)",
        "upstream": {"repo": UPSTREAM_REPO, "commit": args.upstream_commit or _upstream_commit(args.upstream),
                     "flash_attn": "replaced by torch SDPA (flash-attn's varlen semantics for the AR call)"},
        "device": "cpu",
        "machine": machine_info(),
        "versions": versions("torch", "transformers", "diffusers", "vistok"),
        "results": results,
        **({"note": args.note} if args.note else {}),
        "goal": {"ar_fp32": goal("ar"), "tokenizer": goal("tokenizer")},
    })
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=1) + "\n")
    os.replace(tmp, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
