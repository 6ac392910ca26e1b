"""Shared benchmark plumbing: machine/version info, and peak-memory measurement in a fresh process."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from importlib import metadata


def machine_info() -> dict:
    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kb = next(int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal"))
    except OSError:
        mem_kb = 0
    return {"cpu": cpu, "cores": os.cpu_count(), "ram_gib": round(mem_kb / 2**20, 1), "platform": platform.platform()}


def versions(*packages: str) -> dict:
    out = {"python": platform.python_version()}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _status_kb(field: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def reset_peak_rss() -> int:
    """Reset the process's RSS high-water mark (Linux clear_refs 5); returns the current RSS in KiB."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status_kb("VmRSS")


def peak_rss_since_reset_kb(baseline_kb: int) -> int:
    return _status_kb("VmHWM") - baseline_kb


def run_child(script: str, args: list[str], timeout: float, env: dict | None = None) -> dict:
    """Run one measurement in a fresh interpreter (so peaks do not mix); its last stdout line is JSON."""
    try:
        proc = subprocess.run([sys.executable, script, *args], capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **(env or {})})
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    lines = [l for l in proc.stdout.strip().splitlines() if l.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        reason = "killed (out of memory?)" if proc.returncode in (-9, 137) else f"exit {proc.returncode}"
        return {"error": f"{reason}: {' | '.join(tail)[-400:]}"}
    return json.loads(lines[-1])


def fused_kernels_active(model) -> dict:
    """Which of VAR's optional fused kernels (flash-attn, xformers, fused add+LayerNorm, fused MLP) a VAR-style
    original (VAR, STAR) actually uses: how many modules hold each. Its constructor turns them on only when the
    package imports; flash-attn also only runs on non-fp32 inputs (the original's own condition)."""
    counts = {"flash_attn": 0, "xformers": 0, "fused_add_norm": 0, "fused_mlp": 0}
    for module in model.modules():
        counts["flash_attn"] += bool(getattr(module, "using_flash", False))
        counts["xformers"] += bool(getattr(module, "using_xform", False))
        counts["fused_add_norm"] += getattr(module, "fused_add_norm_fn", None) is not None
        counts["fused_mlp"] += getattr(module, "fused_mlp_func", None) is not None
    return counts


def paired_speedup(original_seconds: list[float], vistok_seconds: list[float]) -> dict:
    """The like-with-like speed figure: the ratio original/vistok of each interleaved same-seed pair, their median
    (the headline) and spread. Pairs run back to back, so each ratio sees one machine load."""
    import statistics

    ratios = [o / v for o, v in zip(original_seconds, vistok_seconds)]
    return {"pair_ratios_original_over_vistok": [round(r, 3) for r in ratios],
            "median_pair_ratio": round(statistics.median(ratios), 3),
            "pair_ratio_range": [round(min(ratios), 3), round(max(ratios), 3)]}


def bench_threads(default: int = 2) -> int:
    """Torch threads per benchmark process: ``VISTOK_BENCH_THREADS`` (e.g. 1 where another job holds a core, so that
    both sides of a pair see the same free core), else ``default`` (this machine's 2 cores). Results record it."""
    import os

    value = os.environ.get("VISTOK_BENCH_THREADS", str(default))
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"VISTOK_BENCH_THREADS must be a positive integer, got {value!r}")
    return int(value)
