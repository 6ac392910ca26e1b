"""CPU benchmark: vistok's MaskGIT sampler against the original ``generate`` loop of bytedance/1d-tokenizer.

Generators, at their released size with random weights (no download needed), built from the release
configs ``configs/infer/TiTok/titok_{l32,s128}.yaml``:

* TiTok-L-32 generator (``ImageBert``: BERT, hidden 768, 24 layers, 16 heads, MLP 3072, 4096 codes,
  32 tokens, 1000 classes); sampling as released: 8 steps, guidance 4.5 "linear",
  randomize_temperature 9.5, softmax-temperature annealing on;
* TiTok-S-128 generator (``UViTBert``: U-ViT, hidden 1024, 20 layers, 16 heads, MLP 4096, 128 tokens);
  sampling as released (guidance 6.9 "power-cosine", temperature 2.8, annealing on) except the step
  count: 64 steps are too slow on a small CPU (one guided S-128 step at batch 8 takes ~8 s on 2 cores),
  so both implementations run ``--s128-steps`` (default 4; recorded).
  Every S-128 step costs the same (two forwards of the full sequence), so images/s at 64 steps is the
  measured value scaled by steps/64 (the JSON gives it, marked as extrapolated).

The original is built from its release config with deterministic random weights; its ``state_dict``
goes through vistok's converter (``convert_generator_state_dict`` + ``infer_generator_config``) and is
loaded into ``MaskGITTransformer`` strictly, so both run the SAME weights.

Measured: token sampling only -- ``MaskGITPipeline.sample_tokens`` vs ``original.generate`` (the
tokenizer decode is excluded; the pipeline holds a tiny random TiTok with the matching codebook size
and token count, which is never called). fp32, ``torch.inference_mode()``, ``torch.set_num_threads(2)``.
Every timed call of both implementations uses the same seed (vistok: ``generator=``; original: the
global ``torch.manual_seed``), and the token ids of the two are compared on every call.

Throughput: a fresh process per model builds both implementations, warms each up, then times
``repeats`` calls per batch size with the two implementations interleaved (alternating which goes
first); median time -> images/s.  A second process per model does the same with vistok's transformer
wrapped in ``torch.compile(dynamic=False)`` (interleaved with the eager original, same process): the
first call (compilation of the batch-B and batch-2B graphs) is reported separately from steady state.

Peak memory: a fresh subprocess per (model, implementation, batch) builds only that implementation,
runs a 1-step warm-up call, gc + ``malloc_trim(0)``, records the resident set size, resets the kernel's
RSS high-water mark (``/proc/self/clear_refs``), runs one sampling call of ``--memory-steps`` steps
(default 2: every guided step has the same shapes, so the peak does not grow with more steps) and
reports the high-water mark above the RSS before the call (activations and workspace; weights excluded).

If vistok misses the goal, a further process profiles one sampling call of each implementation with
``torch.profiler`` (top ops by self CPU time), recorded in the JSON.

No upstream code lives in this repository: the original checkout is imported from the path given on
the command line, with the import stubs of ``tests/fixtures/upstream_stubs.py``.

Usage (from the repository root; before each measurement process it waits while ``bench_tokenizers`` or
``bench_quantizers`` runs or the machine is more than 20% busy, so that nothing shares the cores; each
timed call records its CPU-seconds per wall-second, ~2 when it had both cores):

    python benchmarks/bench_maskgit.py --upstream-1d /work/upstream/1d-tokenizer [--quick] [--out PATH]

Full run ~20 minutes on a 2-core CPU; ``--quick`` (batch 2, 1 repeat, 2 S-128 steps) ~5 minutes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _measure import bench_threads, machine_info, peak_rss_since_reset_kb, reset_peak_rss, run_child, versions  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "maskgit_cpu.json"
QUICK_OUT = Path(tempfile.gettempdir()) / "maskgit_cpu_quick.json"
NUM_THREADS = bench_threads()  # VISTOK_BENCH_THREADS, default 2
MIN_CPU_PER_WALL = 0.8 * NUM_THREADS  # a timed pair where either call used less of its cores was contended: redone
MAX_ATTEMPTS = 3
GOAL_RATIO = 1.3

MODELS = {
    "titok-l32": {"cls": "ImageBert", "config": "configs/infer/TiTok/titok_l32.yaml", "preset": "titok-l32", "seed": 32},
    "titok-s128": {"cls": "UViTBert", "config": "configs/infer/TiTok/titok_s128.yaml", "preset": "titok-s128", "seed": 128},
}


# ----------------------------------------------------------------------------------------- workers


def _settings(model: str, s128_steps: int) -> dict:
    """The released sampling settings (vistok's converter presets), with the S-128 step override."""
    from vistok.modeling.maskgit.convert_maskgit import SAMPLING_PRESETS

    s = {"guidance_scale_pow": 3.0, **SAMPLING_PRESETS[MODELS[model]["preset"]]}
    if model == "titok-s128":
        s["num_inference_steps"] = s128_steps
    return s


def _import_upstream(upstream: Path):
    import contextlib
    import io

    sys.dont_write_bytecode = True  # leave no __pycache__ in the upstream checkout
    sys.path.insert(0, str(REPO_ROOT / "tests" / "fixtures"))
    from upstream_stubs import install_stubs

    install_stubs()
    sys.path.insert(0, str(upstream))
    with contextlib.redirect_stdout(io.StringIO()):  # upstream prints its attention mode
        import modeling.maskgit

    return modeling.maskgit


def _build(model: str, upstream: Path, impls: tuple[str, ...]):
    """(original or None, vistok pipeline or None) on the same random weights."""
    import warnings

    import torch
    from omegaconf import OmegaConf

    warnings.filterwarnings("ignore")
    from vistok import MaskGITPipeline, TiTokConfig, TiTokModel
    from vistok.modeling.maskgit.convert_maskgit import convert_generator_state_dict, infer_generator_config
    from vistok.modeling.maskgit import MaskGITConfig, MaskGITTransformer

    spec = MODELS[model]
    maskgit = _import_upstream(upstream)
    config = OmegaConf.to_container(OmegaConf.load(upstream / spec["config"]), resolve=True)
    torch.manual_seed(spec["seed"])
    original = getattr(maskgit, spec["cls"])(OmegaConf.create(config)).eval()
    pipe = None
    if "vistok" in impls:
        state, _ = convert_generator_state_dict(original.state_dict())
        kwargs = infer_generator_config(state, config["model"]["generator"], config["model"]["vq_model"]["codebook_size"])
        transformer = MaskGITTransformer(MaskGITConfig(**kwargs, sampling_defaults=_settings(model, 64))).eval()
        transformer.load_state_dict(state, strict=True)
        del state
        cfg = transformer.config
        tokenizer = TiTokModel(TiTokConfig(
            image_size=32, num_tokens=cfg.num_tokens, codebook_size=cfg.codebook_size, token_dim=8, use_l2_norm=False,
            is_legacy=False, encoder_hidden_size=32, encoder_num_layers=1, encoder_num_heads=1, decoder_hidden_size=32,
            decoder_num_layers=1, decoder_num_heads=1)).eval()
        pipe = MaskGITPipeline(image_tokenizer=tokenizer, transformer=transformer)
        pipe.set_progress_bar_config(disable=True)
    if "original" not in impls:
        del original
        original = None
    import gc

    gc.collect()
    return original, pipe


def _labels(batch: int):
    import torch

    return (torch.arange(batch) * 37 + 5) % 1000


def _run(impl: str, original, pipe, batch: int, settings: dict, seed: int, steps: int | None = None):
    """One sampling call; returns token ids [B, N]."""
    import torch

    steps = settings["num_inference_steps"] if steps is None else steps
    labels = _labels(batch)
    with torch.inference_mode():
        if impl == "original":
            torch.manual_seed(seed)
            return original.generate(
                labels.clone(), guidance_scale=settings["guidance_scale"], guidance_decay=settings["guidance_schedule"],
                guidance_scale_pow=settings["guidance_scale_pow"], randomize_temperature=settings["randomize_temperature"],
                softmax_temperature_annealing=settings["softmax_temperature_annealing"], num_sample_steps=steps)
        return pipe.sample_tokens(
            labels.tolist(), num_inference_steps=steps, guidance_scale=settings["guidance_scale"],
            guidance_schedule=settings["guidance_schedule"], guidance_scale_pow=settings["guidance_scale_pow"],
            randomize_temperature=settings["randomize_temperature"],
            softmax_temperature_annealing=settings["softmax_temperature_annealing"],
            generator=torch.Generator().manual_seed(seed))


def _timed(fn, cpu: list | None = None):
    """Wall seconds and result; appends CPU seconds / wall seconds of this process to ``cpu`` (about
    NUM_THREADS when it had the cores to itself, lower when something else ran)."""
    start, start_cpu = time.perf_counter(), time.process_time()
    out = fn()
    wall = time.perf_counter() - start
    if cpu is not None:
        cpu.append(round((time.process_time() - start_cpu) / wall, 2))
    return wall, out


def _worker_time(model: str, upstream: Path, batches: list[int], repeats: dict, s128_steps: int, compiled: bool) -> dict:
    """Eager original vs vistok (eager, or compiled), interleaved in this process."""
    import torch

    torch.set_num_threads(NUM_THREADS)
    settings = _settings(model, s128_steps)
    t0 = time.perf_counter()
    original, pipe = _build(model, upstream, ("original", "vistok"))
    out = {"build_s": round(time.perf_counter() - t0, 1), "settings": settings, "batches": {}}
    vistok_name = "vistok-compile" if compiled else "vistok"
    if compiled:
        import torch._dynamo

        torch._dynamo.config.cache_size_limit = 64
        try:
            pipe.transformer = torch.compile(pipe.transformer, dynamic=False)
        except Exception as exc:  # noqa: BLE001
            return {**out, "error": f"torch.compile failed: {type(exc).__name__}: {exc}"[:600]}
    impls = {"original": "original", vistok_name: "vistok"}
    for batch in batches:
        row = {"times_s": {name: [] for name in impls}, "cpu_per_wall": {name: [] for name in impls}, "ids_equal": [],
               "tokens_differing": []}
        # warm-up: for eager, a short run of each at this batch size; for compile, the first full
        # call compiles the batch-B and batch-2B graphs and is reported as the compile cost
        if compiled:
            try:
                first, _ = _timed(lambda: _run("vistok", original, pipe, batch, settings, seed=999))
            except Exception as exc:  # noqa: BLE001
                row["error"] = f"compiled sampling failed: {type(exc).__name__}: {str(exc).splitlines()[0][:500]}"
                out["batches"][str(batch)] = row
                continue
            row["first_call_s"] = round(first, 3)
            _run("original", original, pipe, batch, settings, seed=999, steps=2)
        else:
            for name in impls:
                _run(impls[name], original, pipe, batch, settings, seed=999, steps=2)
        row["rejected_contended"] = []
        for r in range(repeats[batch]):
            order = list(impls) if r % 2 == 0 else list(impls)[::-1]
            for attempt in range(MAX_ATTEMPTS):
                waited = _wait_for(OTHER_BENCHMARKS)  # start every pair on a quiet machine
                if waited < 0 or waited >= 5:
                    row.setdefault("waited_before_pair_s", []).append(round(waited, 1))
                ids, times, cpu = {}, {}, {name: [] for name in impls}
                for name in order:
                    times[name], ids[name] = _timed(lambda: _run(impls[name], original, pipe, batch, settings, seed=1000 + r),
                                                    cpu[name])
                if min(v[0] for v in cpu.values()) >= MIN_CPU_PER_WALL or attempt == MAX_ATTEMPTS - 1:
                    break
                # another process took CPU during this pair: drop it and redo it once the machine is quiet
                row["rejected_contended"].append({"repeat": r, "times_s": times, "cpu_per_wall": cpu})
                print(json.dumps({"contended": model, "batch": batch, "repeat": r, "cpu_per_wall": cpu}), file=sys.stderr, flush=True)
            for name in impls:
                row["times_s"][name].append(round(times[name], 4))
                row["cpu_per_wall"][name].extend(cpu[name])
            a, b = ids["original"], ids[vistok_name]
            row["ids_equal"].append(bool(torch.equal(a, b)))
            row["tokens_differing"].append(int((a != b).sum()))
        for name in impls:
            med = statistics.median(row["times_s"][name])
            row[name] = {"median_s": round(med, 4), "images_per_s": round(batch / med, 4)}
        row["ratio_vs_original"] = round(row["original"]["median_s"] / row[vistok_name]["median_s"], 4)
        if compiled:
            row["compile_s"] = round(row["first_call_s"] - row[vistok_name]["median_s"], 2)
        out["batches"][str(batch)] = row
        print(json.dumps({"progress": model, "batch": batch, **{k: row[k] for k in impls}}), file=sys.stderr, flush=True)
    return out


def _worker_memory(model: str, upstream: Path, impl: str, batch: int, s128_steps: int, steps: int) -> dict:
    import ctypes
    import gc

    import torch

    torch.set_num_threads(NUM_THREADS)
    settings = _settings(model, s128_steps)
    original, pipe = _build(model, upstream, (impl,))
    _run(impl, original, pipe, batch, settings, seed=999, steps=1)
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand freed heap pages back, so the next call's pages count again
    baseline = reset_peak_rss()
    seconds, _ = _timed(lambda: _run(impl, original, pipe, batch, settings, seed=1000, steps=steps))
    return {"peak_mib": round(peak_rss_since_reset_kb(baseline) / 1024, 1), "rss_before_mib": round(baseline / 1024, 1),
            "seconds": round(seconds, 3)}


def _worker_profile(model: str, upstream: Path, batch: int, steps: int, s128_steps: int) -> dict:
    """torch.profiler over one sampling call of each implementation: where the time goes."""
    import torch
    from torch.profiler import ProfilerActivity, profile, record_function

    torch.set_num_threads(NUM_THREADS)
    settings = _settings(model, s128_steps)
    original, pipe = _build(model, upstream, ("original", "vistok"))
    out = {"batch": batch, "steps": steps}
    with profile(activities=[ProfilerActivity.CPU]):  # the first profiled region pays the profiler's start-up
        _run("vistok", original, pipe, batch, settings, seed=999, steps=1)
    for impl in ("original", "vistok"):
        _run(impl, original, pipe, batch, settings, seed=999, steps=1)
        with profile(activities=[ProfilerActivity.CPU], record_shapes=False) as prof:
            with record_function("sample"):
                _run(impl, original, pipe, batch, settings, seed=1000, steps=steps)
        events = prof.key_averages()
        total = next(e for e in events if e.key == "sample").cpu_time_total
        top = sorted((e for e in events if e.key != "sample"), key=lambda e: e.self_cpu_time_total, reverse=True)[:12]
        out[impl] = {
            "total_ms": round(total / 1000, 1),
            "top_self_cpu": [{"op": e.key, "calls": e.count, "self_ms": round(e.self_cpu_time_total / 1000, 1),
                              "share": round(e.self_cpu_time_total / total, 4)} for e in top],
        }
        mm = sum(e.self_cpu_time_total for e in events if e.key in ("aten::addmm", "aten::mm", "aten::bmm", "aten::linear", "aten::matmul"))
        out[impl]["matmul_share"] = round(mm / total, 4)
    return out


# ----------------------------------------------------------------------------------------- driver


OTHER_BENCHMARKS = "bench_(tokenizers|quantizers)"  # other CPU benchmarks of this repository (pgrep -f regex)
BUSY_LIMIT = 0.2  # share of the machine's CPU time others may use while this driver idles


def _busy_share(seconds: float = 3.0) -> float:
    """Share of all cores busy over a short window (/proc/stat), measured while this driver sleeps."""
    def sample():
        fields = [int(v) for v in open("/proc/stat").readline().split()[1:]]
        return fields[3] + fields[4], sum(fields)  # idle + iowait, total

    idle0, total0 = sample()
    time.sleep(seconds)
    idle1, total1 = sample()
    return 1 - (idle1 - idle0) / max(total1 - total0, 1)


def _wait_for(pattern: str, poll_s: float = 30, limit_s: float = 1200) -> float:
    """Wait while a process matching ``pattern`` runs or the machine is busy; seconds waited, -1 on giving up."""
    start = time.perf_counter()
    while time.perf_counter() - start < limit_s:
        running = subprocess.run(["pgrep", "-f", pattern], capture_output=True).returncode == 0
        busy = _busy_share()
        if not running and busy < BUSY_LIMIT:
            return time.perf_counter() - start
        print(f"waiting: {'another benchmark runs' if running else f'machine {busy:.0%} busy'} ...", flush=True)
        time.sleep(poll_s)
    return -1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--upstream-1d", type=Path, required=True, help="bytedance/1d-tokenizer checkout")
    parser.add_argument("--out", type=Path, default=None, help=f"result JSON (default {DEFAULT_OUT}; --quick: {QUICK_OUT})")
    parser.add_argument("--quick", action="store_true", help="smoke run: batch 2, 1 repeat, 2 S-128 steps")
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--l32-batches", nargs="*", type=int, default=[8, 32])
    parser.add_argument("--s128-batches", nargs="*", type=int, default=[8])
    parser.add_argument("--s128-steps", type=int, default=4, help="S-128 sampling steps for BOTH implementations (released: 64)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory-steps", type=int, default=2,
                        help="steps of the memory-measured call (every guided step has the same shapes, so the per-call "
                             "peak does not grow with more steps)")
    parser.add_argument("--compile-all-batches", action="store_true", help="compile variant at every batch size (default: the first)")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--profile", choices=("auto", "always", "never"), default="auto",
                        help="profile when the goal is missed (auto), always or never")
    parser.add_argument("--no-wait", action="store_true", help="do not wait for a running bench_tokenizers")
    parser.add_argument("--_worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    upstream = args.upstream_1d.resolve()

    if args._worker:
        kind, model, *rest = args._worker
        if kind in ("time", "compile"):
            batches = [int(b) for b in rest]
            res = _worker_time(model, upstream, batches, {b: args.repeats for b in batches}, args.s128_steps, kind == "compile")
        elif kind == "memory":
            res = _worker_memory(model, upstream, rest[0], int(rest[1]), args.s128_steps, args.memory_steps)
        else:
            res = _worker_profile(model, upstream, int(rest[0]), int(rest[1]), args.s128_steps)
        print(json.dumps(res))
        return

    if args.quick:
        args.l32_batches, args.s128_batches, args.s128_steps, args.repeats = [2], [2], 2, 1
    out_path = args.out or (QUICK_OUT if args.quick else DEFAULT_OUT)
    waits = []

    def wait_others(before: str):
        """Timings must not share the 2 cores: before every measurement, wait for the other benchmarks."""
        if args.no_wait:
            return
        waited = _wait_for(OTHER_BENCHMARKS)
        if waited < 0 or waited >= 5:
            waits.append({"before": before, "waited_s": round(waited, 1), "still_running": waited < 0})
            if waited < 0:
                print("another benchmark still running after 20 minutes; measuring anyway (recorded)", flush=True)

    batches = {"titok-l32": args.l32_batches, "titok-s128": args.s128_batches}
    common = ["--upstream-1d", str(upstream), "--s128-steps", str(args.s128_steps), "--repeats", str(args.repeats),
              "--memory-steps", str(args.memory_steps)]
    started = time.perf_counter()

    def child(*worker, timeout=1800):
        wait_others(" ".join(map(str, worker)))
        t = time.perf_counter()
        # a cold compile: an empty inductor cache per process (an earlier run's cache would hide the compile time)
        with tempfile.TemporaryDirectory(prefix="bench_maskgit_inductor_") as cache:
            res = run_child(__file__, [*common, "--_worker", *map(str, worker)], timeout=timeout,
                            env={"TORCHINDUCTOR_CACHE_DIR": cache})
        res["wall_s"] = round(time.perf_counter() - t, 1)
        return res

    results = {}
    for model in args.models:
        entry = results[model] = {"eager": child("time", model, *batches[model])}
        print(f"{model} eager: " + json.dumps({k: v for k, v in entry["eager"].items() if k != "settings"})[:600], flush=True)
        if not args.no_compile:
            entry["compile"] = child("compile", model, *(batches[model] if args.compile_all_batches else batches[model][:1]))
            print(f"{model} compile: " + json.dumps({k: v for k, v in entry["compile"].items() if k != "settings"})[:600], flush=True)
        if not args.no_memory:
            entry["memory"] = {}
            for batch in batches[model]:
                for impl in ("original", "vistok"):
                    res = child("memory", model, impl, batch)
                    entry["memory"].setdefault(str(batch), {})[impl] = res
                    print(f"{model} memory b{batch} {impl}: {res}", flush=True)

    # ---- summary rows
    rows, goals = [], []
    for model, entry in results.items():
        eager, comp = entry["eager"], entry.get("compile", {})
        settings = eager.get("settings") or _settings(model, args.s128_steps)
        for batch in batches[model]:
            e = eager.get("batches", {}).get(str(batch), {})
            c = comp.get("batches", {}).get(str(batch), {})
            mem = entry.get("memory", {}).get(str(batch), {})
            row = {"model": model, "batch": batch, "steps": settings["num_inference_steps"]}
            if "original" in e:
                row.update(original_images_per_s=e["original"]["images_per_s"], vistok_images_per_s=e["vistok"]["images_per_s"],
                           ratio=e["ratio_vs_original"], ids_equal=all(e["ids_equal"]),
                           min_cpu_per_wall=min(v for vals in e["cpu_per_wall"].values() for v in vals))
            else:
                row["error"] = eager.get("error") or e.get("error") or "no timing"
            for impl in ("original", "vistok"):
                m = mem.get(impl, {})
                row[f"{impl}_peak_mib"] = m.get("peak_mib", m.get("error"))
            if "vistok-compile" in c:
                row.update(compile_images_per_s=c["vistok-compile"]["images_per_s"], compile_ratio=c["ratio_vs_original"],
                           compile_s=c["compile_s"], compile_first_call_s=c["first_call_s"],
                           compile_ids_equal=all(c["ids_equal"]))
            elif comp.get("error") or c.get("error"):
                row["compile_error"] = comp.get("error") or c.get("error")
            elif comp:
                row["compile"] = "not measured at this batch size (see --compile-all-batches)"
            if model == "titok-s128" and "original" in e and settings["num_inference_steps"] != 64:
                scale = settings["num_inference_steps"] / 64
                row["extrapolated_64_steps"] = {"original_images_per_s": round(e["original"]["images_per_s"] * scale, 4),
                                                "vistok_images_per_s": round(e["vistok"]["images_per_s"] * scale, 4)}
            rows.append(row)
            if "ratio" in row:
                goals.append({"goal": f"{model} batch {batch}: vistok images/s >= {GOAL_RATIO}x original (eager, fp32)",
                              "ratio": row["ratio"], "met": row["ratio"] >= GOAL_RATIO})
                if "compile_ratio" in row:
                    goals.append({"goal": f"{model} batch {batch}: vistok + torch.compile images/s >= {GOAL_RATIO}x original (eager)",
                                  "ratio": row["compile_ratio"], "met": row["compile_ratio"] >= GOAL_RATIO})

    profile = {}
    for model in args.models:
        missed = any(not g["met"] for g in goals if g["goal"].startswith(model) and "compile" not in g["goal"])
        if args.profile == "always" or (args.profile == "auto" and missed):
            steps = 2 if model == "titok-l32" else 1  # L-32 "linear": step 0 is unguided, step 1 guided
            profile[model] = child("profile", model, batches[model][0], steps)
            print(f"profile {model}: " + json.dumps(profile[model])[:1500], flush=True)

    report = {
        "benchmark": "maskgit generator token sampling (tokenizer decode excluded)",
        "device": "cpu", "dtype": "float32", "threads": NUM_THREADS, "machine": machine_info(),
        "versions": versions("torch", "transformers", "diffusers", "vistok"),
        "upstream": {"repo": "bytedance/1d-tokenizer", "commit": _git_head(upstream)},
        "measured": ("MaskGITPipeline.sample_tokens (vistok) vs ImageBert/UViTBert.generate (original): token sampling only, "
                     "the tokenizer's decode is NOT included"),
        "weights": "random (original constructor init, fixed seed); the same weights in both via vistok's converter, strict load",
        "settings": {m: (results[m]["eager"].get("settings") or _settings(m, args.s128_steps)) for m in results},
        "s128_steps_note": (f"S-128 released sampling uses 64 steps; both implementations ran {args.s128_steps} steps here "
                            "(each step costs the same, extrapolated_64_steps = measured * steps/64)"),
        "method": {
            "timing": (f"fresh process per model; both implementations built there on the same weights; warm-up (2 steps each); "
                       f"{args.repeats} repeats per batch, interleaved (alternating order), same seed per repeat for both; "
                       "median -> images/s; torch.inference_mode, torch.set_num_threads(2); cpu_per_wall = process CPU seconds per "
                       "wall second of each timed call (about 2 when uncontended); a repeat pair where either call had "
                       f"< {MIN_CPU_PER_WALL} is dropped (rejected_contended) and redone, up to {MAX_ATTEMPTS} attempts; every pair "
                       f"starts only when no other benchmark runs and the machine is < {BUSY_LIMIT:.0%} busy"),
            "compile": ("separate fresh process: pipe.transformer = torch.compile(transformer, dynamic=False); the first full "
                        "sampling call compiles (batch B and 2B graphs): compile_s = first call - steady-state median; "
                        "steady state interleaved with the eager original in the same process; every process starts with an empty "
                        "TORCHINDUCTOR_CACHE_DIR, so compile_s is a cold compile"),
            "memory": ("fresh subprocess per (model, implementation, batch), only that implementation built; one 1-step "
                       "warm-up call, gc + malloc_trim(0), then peak = RSS high-water (VmHWM after clear_refs) above the RSS "
                       f"before one sampling call of {args.memory_steps} steps (weights excluded; every guided step has the "
                       "same shapes, so the peak does not depend on the step count)"),
            "profile": ("torch.profiler (CPU) over one sampling call per implementation at the first batch size (L-32: 2 "
                        "steps, S-128: 1 step), after a throwaway profiled call; top ops by self CPU time"),
        },
        "waited_for_other_benchmarks": waits or "none running at any measurement start",
        "total_wall_s": round(time.perf_counter() - started, 1),
        "rows": rows, "goals": goals, "profile": profile, "raw": results,
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=2))
    tmp.replace(out_path)

    head = f"{'model':<11} {'batch':>5} {'steps':>5} {'orig img/s':>10} {'vistok img/s':>12} {'ratio':>6} {'ids=':>5} " \
           f"{'compile img/s':>13} {'c.ratio':>7} {'compile s':>9} {'orig MiB':>9} {'vistok MiB':>10}"
    print(head)
    print("-" * len(head))

    def f(v, width, prec=3):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return format("-" if v is None else str(v)[:width], f">{width}")
        return format(v, f"{width}.{prec}f")

    for r in rows:
        print(f"{r['model']:<11} {r['batch']:>5} {r['steps']:>5} {f(r.get('original_images_per_s'), 10)} "
              f"{f(r.get('vistok_images_per_s'), 12)} {f(r.get('ratio'), 6)} {f(r.get('ids_equal'), 5)} "
              f"{f(r.get('compile_images_per_s'), 13)} {f(r.get('compile_ratio'), 7)} {f(r.get('compile_s'), 9, 1)} "
              f"{f(r.get('original_peak_mib'), 9, 1)} {f(r.get('vistok_peak_mib'), 10, 1)}")
    for g in goals:
        print(("MET   " if g["met"] else "MISSED") + f" {g['goal']} (ratio {g['ratio']})")
    print(f"wrote {out_path}")


def _git_head(path: Path) -> str | None:
    try:
        return subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


if __name__ == "__main__":
    main()
