"""CPU benchmark: vistok's TiTok / One-D-Piece ports against the original implementations.

Models, at their released size with random weights (no download needed):

* TiTok-S-128 (bytedance/1d-tokenizer, legacy two-stage: small/small ViT, 128 tokens, 4096x12 cosine
  VQ, full-size MaskGIT-VQGAN pixel decoder, 256 px), built from ``configs/infer/TiTok/titok_s128.yaml``;
* One-D-Piece-S-256 (turingmotors/One-D-Piece, same with 256 tokens), from ``configs/one-d-piece_s256.yaml``.

The original model is built from its release config, given deterministic random weights, and its
``state_dict`` goes through vistok's converter (``convert_state_dict`` + ``infer_config``), so both
implementations run the SAME weights; the outputs are compared before timing and on every timed call
(token ids equal, reconstruction max abs diff).

Throughput: encode+decode of a batch (original: ``encode(x)`` then ``decode_tokens(ids)``; vistok:
``encode`` then ``decode``) under ``torch.inference_mode()``, warmup, several repeats with the two
implementations interleaved (alternating which goes first), median time -> images/s.

Peak memory: a fresh subprocess per (model, implementation, dtype) builds the model, then for each
batch size records the resident set size (VmRSS), resets the kernel's RSS high-water mark
(``echo 5 > /proc/self/clear_refs``), runs one encode+decode and reads the high-water mark (VmHWM);
the reported peak is VmHWM - VmRSS before the call (activations and workspace, weights excluded).

No upstream code lives in this repository: the original checkouts are imported from the paths given on
the command line (optional dependencies they import but these models never call are stubbed). Both
upstream repositories use the package name ``modeling``, so each model runs in its own subprocess.

Usage (from the repository root):

    python benchmarks/bench_tokenizers.py --upstream-1d /work/upstream/1d-tokenizer \\
        --upstream-odp /work/upstream/One-D-Piece [--quick] [--out PATH]
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(_REPO / "tests"), str(_REPO / "tests" / "fixtures")]
from _random_weights import random_state_dict  # noqa: E402  (the parity fixtures' weights)
from upstream_stubs import install_stubs  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "tokenizers_cpu.json"
QUICK_OUT = Path(tempfile.gettempdir()) / "tokenizers_cpu_quick.json"
NUM_THREADS = bench_threads()  # VISTOK_BENCH_THREADS, default 2

MODELS = {
    "titok-s128": {
        "upstream": "1d",
        "upstream_repo": "bytedance/1d-tokenizer",
        "config": "configs/infer/TiTok/titok_s128.yaml",
        "family": "titok",
        "preset": "titok-s128",
        "seed": 128,
    },
    "one-d-piece-s256": {
        "upstream": "odp",
        "upstream_repo": "turingmotors/One-D-Piece",
        "config": "configs/one-d-piece_s256.yaml",
        "family": "one-d-piece",
        "preset": "one-d-piece-s256",
        "seed": 256,
    },
}

FULL = {"batches": [1, 8], "dtypes": ["float32", "bfloat16"], "warmup": 1, "repeats": {1: 7, 8: 3}}
QUICK = {"batches": [1], "dtypes": ["float32", "bfloat16"], "warmup": 1, "repeats": {1: 2}}
MEMORY_METHOD = (
    "fresh subprocess per (model, implementation, dtype), only that model built (vistok's worker builds the "
    "original to convert its weights, then frees it); per batch size: gc + malloc_trim(0), read VmRSS, reset the RSS "
    "high-water mark (write '5' to /proc/self/clear_refs), run one encode+decode under inference_mode, "
    "read VmHWM from /proc/self/status; peak_mib = (VmHWM - VmRSS_before) / 1024, i.e. activations and "
    "workspace on top of the loaded weights; the first call of a fresh process (includes one-time "
    "oneDNN/allocator setup for both implementations)"
)


# --------------------------------------------------------------------------------------------
# importing the original code
# --------------------------------------------------------------------------------------------


def import_original(upstream: Path, family: str):
    """The original model class (TiTok or OneDPiece) from an upstream checkout."""
    missing = install_stubs(extra=("accelerate",))
    sys.path.insert(0, str(upstream))
    if family == "one-d-piece":
        from modeling.one_d_piece import OneDPiece

        return OneDPiece, missing
    from modeling.titok import TiTok

    return TiTok, missing


def build_models(name: str, upstream: Path, which=("original", "vistok")):
    """(original, vistok, info): both in eval mode with identical weights (vistok via the converter)."""
    import torch
    from omegaconf import OmegaConf

    from vistok.families import converter_specs, tokenizer_specs
    from vistok.modeling.titok.convert_titok import convert_state_dict, infer_config

    spec = MODELS[name]
    model_cls, stubbed = import_original(upstream, spec["family"])
    config = OmegaConf.load(upstream / spec["config"])
    # the released config, as the original inference code reads it (no training sections needed)
    config = OmegaConf.create({"model": OmegaConf.to_container(config.model),
                               "dataset": {"preprocessing": OmegaConf.to_container(config.dataset.preprocessing)}})
    vq_model = OmegaConf.to_container(config.model.vq_model)
    crop_size = int(config.dataset.preprocessing.crop_size)
    preset = converter_specs()[spec["family"]].presets[spec["preset"]].settings
    for key, value in preset.items():
        if key in vq_model and vq_model[key] != value:
            raise RuntimeError(f"{spec['config']}: {key}={vq_model[key]!r} but vistok's preset says {value!r}")

    torch.manual_seed(spec["seed"])
    original = model_cls(config)
    shapes = {k: list(v.shape) for k, v in original.state_dict().items()}
    original.load_state_dict(random_state_dict(shapes, spec["seed"]), strict=True)
    original.eval()
    state = original.state_dict()

    kwargs = infer_config(state, vq_model, crop_size, legacy_only=spec["family"] != "titok")
    family = tokenizer_specs()[spec["family"]]
    config_cls, vistok_cls = family.config_class, family.model_class
    converted, unused = convert_state_dict(state, kwargs["is_legacy"])
    vistok_model = None
    if "vistok" in which:
        vistok_model = vistok_cls(config_cls(**kwargs))
        vistok_model.load_state_dict(converted, strict=True)
        vistok_model.eval()
    del state, converted
    info = {
        "original_class": f"{model_cls.__module__}.{model_cls.__name__}",
        "vistok_class": f"{vistok_cls.__module__}.{vistok_cls.__name__}",
        "original_config": spec["config"],
        "vq_model": vq_model,
        "crop_size": crop_size,
        "vistok_config": kwargs,
        "unused_original_keys": sorted(unused),
        "parameters": sum(p.numel() for p in original.parameters()),
        "stubbed_imports": stubbed,
    }
    if "original" not in which:
        original = None
    release_memory()
    return original, vistok_model, info


def release_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS, so RSS baselines are not inflated by
    (and peaks not hidden in) memory a previous step freed but the allocator kept."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def run_original(model, x):
    _, result = model.encode(x)
    ids = result["min_encoding_indices"]
    return ids.reshape(ids.shape[0], -1), model.decode_tokens(ids)


def run_vistok(model, x):
    enc = model.encode(x)
    return enc.token_ids, model.decode(enc.token_ids)


RUNNERS = {"original": run_original, "vistok": run_vistok}


def make_input(batch: int, dtype, seed: int = 0):
    import torch

    x = torch.rand(batch, 3, 256, 256, generator=torch.Generator().manual_seed(seed))
    return x.to(dtype)


def compare(out_a, out_b) -> dict:
    ids_a, rec_a = out_a
    ids_b, rec_b = out_b
    ids_a, ids_b = ids_a.to("cpu").long(), ids_b.to("cpu").long()
    return {
        "token_ids_equal": bool(ids_a.shape == ids_b.shape and (ids_a == ids_b).all()),
        "token_ids_match_fraction": float((ids_a == ids_b).float().mean()) if ids_a.shape == ids_b.shape else 0.0,
        "distinct_token_ids": int(ids_a.unique().numel()),
        "reconstruction_max_abs_diff": float((rec_a.float() - rec_b.float()).abs().max()),
        "reconstruction_range": [float(rec_a.float().min()), float(rec_a.float().max())],
    }


def _error(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) < 500 else text[:500] + "..."


# --------------------------------------------------------------------------------------------
# workers (fresh subprocesses)
# --------------------------------------------------------------------------------------------


def worker_time(name: str, upstream: Path, settings: dict) -> dict:
    import torch

    torch.set_num_threads(NUM_THREADS)
    t0 = time.perf_counter()
    original, vistok_model, info = build_models(name, upstream)
    info["build_s"] = round(time.perf_counter() - t0, 2)
    models = {"original": original, "vistok": vistok_model}

    # one parity check in fp32 before any timing
    with torch.inference_mode():
        x = make_input(2, torch.float32, seed=1)
        parity = compare(run_original(original, x), run_vistok(vistok_model, x))
    print(f"[{name}] parity fp32 batch 2: {parity}", file=sys.stderr, flush=True)

    results = []
    for dtype_name in settings["dtypes"]:
        dtype = getattr(torch, dtype_name)
        for model in models.values():
            model.to(dtype)
        for batch in settings["batches"]:
            x = make_input(batch, dtype)
            entry = {"dtype": dtype_name, "batch": batch, "times_s": {"original": [], "vistok": []},
                     "cpu_times_s": {"original": [], "vistok": []}, "errors": {}}
            outs = {}
            with torch.inference_mode():
                for impl, model in models.items():  # warmup (the first call is also the agreement check)
                    for i in range(settings["warmup"]):
                        try:
                            out = RUNNERS[impl](model, x)
                            if i == 0:
                                outs[impl] = out
                        except Exception as exc:  # noqa: BLE001 - the original may not support bf16
                            entry["errors"][impl] = _error(exc)
                            break
                live = [impl for impl in models if impl not in entry["errors"]]
                if len(outs) == 2:
                    entry["agreement"] = compare(outs["original"], outs["vistok"])
                outs.clear()
                for r in range(settings["repeats"][batch]):
                    order = live if r % 2 == 0 else live[::-1]
                    timed = {}
                    for impl in order:
                        start, cpu_start = time.perf_counter(), time.process_time()
                        timed[impl] = RUNNERS[impl](models[impl], x)
                        entry["times_s"][impl].append(time.perf_counter() - start)
                        entry["cpu_times_s"][impl].append(time.process_time() - cpu_start)
                    if len(timed) == 2:  # every timed call is checked, not only the warm-up
                        check = compare(timed["original"], timed["vistok"])
                        entry.setdefault("token_ids_equal_per_call", []).append(check["token_ids_equal"])
                        entry.setdefault("reconstruction_max_abs_diff_per_call", []).append(
                            check["reconstruction_max_abs_diff"])
            for impl, times in entry["times_s"].items():
                if times:
                    entry.setdefault("median_s", {})[impl] = statistics.median(times)
                    entry.setdefault("images_per_s", {})[impl] = batch / statistics.median(times)
                    entry.setdefault("images_per_s_best", {})[impl] = batch / min(times)
                    entry.setdefault("images_per_cpu_s", {})[impl] = batch / statistics.median(entry["cpu_times_s"][impl])
            ips = entry.get("images_per_s", {})
            if "original" in ips and "vistok" in ips:
                entry["speedup_vistok_over_original"] = ips["vistok"] / ips["original"]
                t_o, t_v = entry["times_s"]["original"], entry["times_s"]["vistok"]
                # each repeat runs both back to back, so a ratio within a repeat sees the same machine load
                entry["speedup_paired_median"] = statistics.median(o / v for o, v in zip(t_o, t_v))
                entry["speedup_best"] = min(t_o) / min(t_v)
                entry["speedup_cpu_time"] = entry["images_per_cpu_s"]["vistok"] / entry["images_per_cpu_s"]["original"]
            print(f"[{name}] {dtype_name} b{batch}: {entry.get('images_per_s')} {entry['errors'] or ''}",
                  file=sys.stderr, flush=True)
            results.append(entry)
    return {"info": info, "parity_fp32": parity, "timings": results}


def _status() -> dict:
    out = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":")
                out[key] = int(value.split()[0])  # kB
    return out


def worker_memory(name: str, upstream: Path, impl: str, dtype_name: str, batches: list) -> dict:
    import torch

    torch.set_num_threads(NUM_THREADS)
    dtype = getattr(torch, dtype_name)
    original, vistok_model, _ = build_models(name, upstream, which=(impl,))
    model = (original if impl == "original" else vistok_model).to(dtype)
    del original, vistok_model
    inputs = {batch: make_input(batch, dtype) for batch in batches}
    out = {}
    for batch in batches:
        release_memory()
        before = _status()["VmRSS"]
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        try:
            with torch.inference_mode():
                result = RUNNERS[impl](model, inputs[batch])
            peak = _status()["VmHWM"]
            del result
            out[batch] = {"rss_before_mib": round(before / 1024, 1), "peak_mib": round((peak - before) / 1024, 1)}
        except Exception as exc:  # noqa: BLE001
            out[batch] = {"error": _error(exc)}
    return out


# --------------------------------------------------------------------------------------------
# driver
# --------------------------------------------------------------------------------------------


def _spawn(args: argparse.Namespace, *worker_args: str) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()),
           "--upstream-1d", str(args.upstream_1d), "--upstream-odp", str(args.upstream_odp)]
    if args.quick:
        cmd.append("--quick")
    cmd += ["--_worker", *worker_args]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": str(NUM_THREADS)}
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {worker_args} failed with exit code {proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _git_head(path: Path) -> str | None:
    try:
        return subprocess.check_output(["git", "-C", str(path), "rev-parse", "HEAD"], text=True,
                                       stderr=subprocess.DEVNULL).strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def machine_info() -> dict:
    cpu = platform.processor() or None
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        with open("/proc/cpuinfo") as fh:
            flags = next((line.split(":", 1)[1].split() for line in fh if line.startswith("flags")), [])
    except OSError:
        flags = []
    mem_gib = None
    try:
        with open("/proc/meminfo") as fh:
            mem_gib = round(int(fh.readline().split()[1]) / 1024**2, 1)
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cpu": cpu,
        "cpu_flags_of_note": sorted(f for f in flags if f in {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}),
        "logical_cores": os.cpu_count(),
        "cores_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "ram_gib": mem_gib,
        "platform": platform.platform(),
    }


def versions(args) -> dict:
    import torch
    import transformers

    import vistok

    out = {"python": platform.python_version(), "torch": torch.__version__,
           "transformers": transformers.__version__, "vistok": getattr(vistok, "__version__", None),
           "vistok_commit": _git_head(REPO_ROOT)}
    for pkg in ("omegaconf", "einops", "huggingface_hub"):
        try:
            out[pkg] = __import__(pkg).__version__
        except Exception:  # noqa: BLE001
            out[pkg] = None
    out["upstream"] = {
        "bytedance/1d-tokenizer": _git_head(args.upstream_1d),
        "turingmotors/One-D-Piece": _git_head(args.upstream_odp),
    }
    return out


def _fmt(value, spec):
    return format(value, spec) if isinstance(value, (int, float)) else "-"


def print_table(results: dict) -> None:
    header = (f"{'model':<18} {'dtype':<9} {'bs':>3} {'orig img/s':>11} {'vistok img/s':>13} {'speedup':>8} "
              f"{'paired':>7} {'best':>6} {'cpu-t':>6} {'orig MiB':>9} {'vistok MiB':>11}  notes")
    print(header)
    print("-" * len(header))
    for name, model in results["models"].items():
        for row in model["results"]:
            ips = row.get("images_per_s", {})
            mem = row.get("peak_memory_mib", {})
            notes = []
            for impl, err in row.get("errors", {}).items():
                notes.append(f"{impl} failed: {err[:70]}")
            agreement = row.get("agreement")
            if agreement:
                notes.append(f"ids equal={agreement['token_ids_equal']} ({agreement['token_ids_match_fraction']:.3f}), "
                             f"rec maxdiff={agreement['reconstruction_max_abs_diff']:.2g}")
            print(f"{name:<18} {row['dtype']:<9} {row['batch']:>3} {_fmt(ips.get('original'), '11.3f')} "
                  f"{_fmt(ips.get('vistok'), '13.3f')} {_fmt(row.get('speedup_vistok_over_original'), '7.2f')}x "
                  f"{_fmt(row.get('speedup_paired_median'), '6.2f')}x {_fmt(row.get('speedup_best'), '5.2f')}x "
                  f"{_fmt(row.get('speedup_cpu_time'), '5.2f')}x "
                  f"{_fmt(mem.get('original'), '9.0f')} {_fmt(mem.get('vistok'), '11.0f')}  {'; '.join(notes)}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--upstream-1d", type=Path, required=True, help="bytedance/1d-tokenizer checkout")
    parser.add_argument("--upstream-odp", type=Path, required=True, help="turingmotors/One-D-Piece checkout")
    parser.add_argument("--quick", action="store_true", help="smoke run: batch 1, two repeats")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"results JSON (default {DEFAULT_OUT}; with --quick, {QUICK_OUT})")
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--_worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sys.dont_write_bytecode = True  # leave no __pycache__ in the upstream checkouts
    args.upstream_1d, args.upstream_odp = args.upstream_1d.resolve(), args.upstream_odp.resolve()
    settings = QUICK if args.quick else FULL
    if args.out is None:  # a smoke run does not overwrite the committed results
        args.out = QUICK_OUT if args.quick else DEFAULT_OUT

    if args._worker:
        import warnings

        warnings.filterwarnings("ignore")
        kind, name, *rest = args._worker
        upstream = args.upstream_1d if MODELS[name]["upstream"] == "1d" else args.upstream_odp
        if kind == "time":
            result = worker_time(name, upstream, settings)
        else:
            impl, dtype_name = rest
            result = worker_memory(name, upstream, impl, dtype_name, settings["batches"])
        print(json.dumps(result))
        return

    started = time.perf_counter()
    results = {
        "benchmark": "tokenizers_cpu: encode+decode throughput and peak memory, vistok vs the original code",
        "machine": machine_info(),
        "versions": versions(args),
        "settings": {
            "quick": args.quick,
            "torch_num_threads": NUM_THREADS,
            "batch_sizes": settings["batches"],
            "dtypes": settings["dtypes"],
            "warmup_calls_per_implementation": settings["warmup"],
            "repeats_per_batch_size": {str(k): v for k, v in settings["repeats"].items()},
            "image_size": 256,
            "input": "torch.rand(B, 3, 256, 256) (seed 0), cast to the dtype; pixel range [0, 1]",
            "weights": "random, deterministic (fan-in scaled normal), loaded into the original model; vistok gets "
                       "them through vistok.modeling.titok.convert_titok.convert_state_dict + infer_config",
            "timed_call": {"original": "model.encode(x) -> result['min_encoding_indices'] -> model.decode_tokens(ids)",
                           "vistok": "enc = model.encode(x); model.decode(enc.token_ids)"},
            "timing": "torch.inference_mode(); both implementations in one process; repeats interleaved, "
                      "alternating which implementation goes first; median wall time -> images/s (primary, "
                      "speedup_vistok_over_original = ratio of those). Also: speedup_paired_median (median over "
                      "repeats of t_original/t_vistok measured back to back), speedup_best (ratio of the fastest "
                      "repeats), speedup_cpu_time (ratio of median process CPU time, both threads) - robust "
                      "views for a machine shared with other jobs; see loadavg in each model's info",
            "bf16": "model.to(torch.bfloat16) and bfloat16 inputs for both implementations",
            "memory_method": MEMORY_METHOD,
        },
        "models": {},
    }
    for name in args.models:
        print(f"== {name}: timing", file=sys.stderr, flush=True)
        load_before = os.getloadavg()
        timed = _spawn(args, "time", name)
        timed["info"]["loadavg_1_5_15_before_after_timing"] = [list(load_before), list(os.getloadavg())]
        rows = timed["timings"]
        for impl in ("original", "vistok"):
            for dtype_name in settings["dtypes"]:
                failed = [row["errors"][impl] for row in rows if row["dtype"] == dtype_name and impl in row["errors"]]
                if failed:  # the timing run already showed this implementation cannot run in this dtype
                    memory = {str(b): {"error": failed[0]} for b in settings["batches"]}
                else:
                    print(f"== {name}: peak memory {impl} {dtype_name}", file=sys.stderr, flush=True)
                    try:
                        memory = _spawn(args, "memory", name, impl, dtype_name)
                    except RuntimeError as exc:
                        memory = {str(b): {"error": str(exc)} for b in settings["batches"]}
                for row in rows:
                    if row["dtype"] == dtype_name:
                        m = memory.get(str(row["batch"]), {})
                        row.setdefault("peak_memory_mib", {})[impl] = m.get("peak_mib")
                        row.setdefault("memory_detail", {})[impl] = m
        results["models"][name] = {"info": timed["info"], "parity_fp32_batch2": timed["parity_fp32"], "results": rows}

    fp32_rows = [row for model in results["models"].values() for row in model["results"] if row["dtype"] == "float32"]

    def _min(key):
        values = [row.get(key) for row in fp32_rows]
        return None if not values or None in values else min(values)

    results["goal"] = {
        "statement": "vistok >= 1.0x the original's encode+decode images/s in fp32 on this CPU (bf16 reported only)",
        "fp32_min_speedup": _min("speedup_vistok_over_original"),
        "fp32_min_speedup_paired_median": _min("speedup_paired_median"),
        "fp32_min_speedup_cpu_time": _min("speedup_cpu_time"),
        "met": _min("speedup_vistok_over_original") is not None and _min("speedup_vistok_over_original") >= 1.0,
    }
    results["total_wall_s"] = round(time.perf_counter() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)
    print(f"goal (fp32 speedup >= 1.0 everywhere): {'MET' if results['goal']['met'] else 'NOT MET'} "
          f"(min {_fmt(results['goal']['fp32_min_speedup'], '.2f')}x); wrote {args.out} in {results['total_wall_s']} s")


if __name__ == "__main__":
    main()
