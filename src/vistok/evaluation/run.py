"""``vistok eval``: score a tokenizer (reconstruction) or a pipeline (generation) and write ``results.json`` and
PNGs atomically; metrics whose network weights are missing are skipped, with the reason in ``skipped``."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import torch

from .loading import load_model
from .pipeline_scores import evaluate_pipeline, evaluate_samples
from .rate_distortion import GRID_IMAGES, plot_rate_distortion, reconstruction_grid, sample_grid
from .tokenizer_scores import evaluate_tokenizer


def run_eval(model: str | os.PathLike, output: str | os.PathLike, *, images=None, dataset=None, split="validation",
             image_column="image", streaming=False, num_images=None, rate_distortion_images=256, batch_size=8,
             token_counts=None, inception_weights=None, lpips_weights=None, lpips_heads=None, reference_stats=None,
             class_labels=None, seed=0, device=None, card=None, overwrite=False, fid=True, grid_images=None,
             progress=True) -> dict:
    """Evaluate ``model`` (a folder or hub id) and write ``results.json`` + PNGs into ``output``.

    Nothing is written unless the whole evaluation succeeds.
    """
    from ..utils.io import atomic_output_dir

    if grid_images is not None and (not isinstance(grid_images, int) or grid_images < 1):
        raise ValueError(f"grid_images must be an int >= 1, got {grid_images!r}")
    kind, loaded, folder = load_model(model)
    if device is not None and kind != "samples":
        loaded = loaded.to(device)
    with atomic_output_dir(output, overwrite=overwrite) as scratch:
        files = {"json": "results.json"}
        if kind == "tokenizer":
            report, grid = evaluate_tokenizer(
                loaded, images=images, dataset=dataset, split=split, image_column=image_column, streaming=streaming,
                num_images=num_images, rate_distortion_images=rate_distortion_images,
                batch_size=batch_size, token_counts=token_counts, folder=folder, inception_weights=inception_weights,
                lpips_weights=lpips_weights, lpips_heads=lpips_heads, fid=fid,
                grid_images=grid_images or GRID_IMAGES, progress=progress)
            reconstruction_grid(grid["originals"], grid["reconstructions"], scratch / "reconstructions.png")
            files["reconstructions"] = "reconstructions.png"
            if report["rate_distortion"] is not None:
                rd = report["rate_distortion"]
                curves = {Path(str(model)).name or "tokenizer": rd["tokenizer"], "jpeg": rd["jpeg"], "webp": rd["webp"]}
                keys = ("psnr", "lpips") if report["lpips_backbone"] else ("psnr", "ssim")
                try:
                    plot_rate_distortion(curves, scratch / "rate_distortion.png",
                                         f"{report['model_type']} on {rd['num_images']} images", keys)
                    files["rate_distortion"] = "rate_distortion.png"
                except ImportError:
                    report["skipped"]["rate_distortion_plot"] = "matplotlib is not installed (pip install 'vistok[eval]')"
        else:
            if images is not None or dataset is not None:
                raise ValueError("a pipeline is evaluated on its own samples: --images/--dataset apply to tokenizers; "
                                 "give --reference-stats NPZ for gFID")
            if kind == "samples":
                report, samples = evaluate_samples(loaded, reference_stats=reference_stats, inception_weights=inception_weights,
                                                   fid=fid, grid_images=grid_images or GRID_IMAGES * 2, progress=progress)
            else:
                report, samples = evaluate_pipeline(
                    loaded, num_images=num_images or 50, batch_size=batch_size, reference_stats=reference_stats,
                    inception_weights=inception_weights, class_labels=class_labels, seed=seed, fid=fid,
                    grid_images=grid_images or GRID_IMAGES * 2, progress=progress)
            stats = report.pop("sample_statistics", None)
            if stats is not None:
                np.savez(scratch / "sample_statistics.npz", mu=stats["mu"], sigma=stats["sigma"])
                files["sample_statistics"] = "sample_statistics.npz"
            sample_grid(samples, scratch / "samples.png")
            files["samples"] = "samples.png"
        report["model"] = str(model)
        report["source"] = {"images": None if images is None else str(images),
                            "dataset": None if dataset is None else str(dataset),
                            "split": split if dataset is not None else None}
        report["files"] = files
        import vistok

        report["versions"] = {"vistok": vistok.__version__, "torch": torch.__version__}
        (scratch / "results.json").write_text(json.dumps(_jsonable(report), indent=2) + "\n")
        if card is not None:
            from .card import write_card_results

            write_card_results(card, report, model_name=Path(str(model)).name)
    return report


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else str(value)
    if isinstance(value, np.integer):
        return int(value)
    return value
