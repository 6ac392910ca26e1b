"""Pipeline scoring: seeded samples (class labels cycled over every class) scored with gFID against reference
statistics (ADM / pytorch-fid ``.npz`` or torch-fidelity ``.pt``), IS, and precision/recall."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import torch

from . import metrics
from .loading import _load_networks
from .metrics import CONVENTIONS
from .rate_distortion import GRID_IMAGES, from_uint8, to_uint8


# -- pipeline evaluation ----------------------------------------------------------------------------------
def load_reference_statistics(path: str | os.PathLike, inception=None, batch_size=50):
    """``(mu, sigma, features)`` from an ADM / pytorch-fid style ``.npz`` or torch-fidelity's ``.pt`` cache.

    The statistics must come from the same network, TF Inception pool3 (ADM's evaluator, pytorch-fid,
    torch-fidelity and clean-fid all port it; their features differ only by numerics).

    ``mu``/``sigma`` are used as stored when present. ``arr_0`` (uint8 ``[N, H, W, 3]`` images, the ADM
    reference batch layout) is featurised with ``inception`` when given — for the statistics when the
    file has none, and for precision/recall; ``features`` is None otherwise."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ValueError(f"reference statistics {str(path)!r} do not exist")
    if path.suffix in (".pt", ".pth"):
        return (*_torch_statistics(path), None)
    with np.load(path, allow_pickle=False) as data:
        features = None
        if "arr_0" in data and inception is not None:
            images = data["arr_0"]
            if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
                raise ValueError(f"{path}: arr_0 must be uint8 images [N, H, W, 3], got {images.dtype} {images.shape}")
            features = torch.cat([inception(from_uint8(images[i:i + batch_size]).float()).features
                                  for i in range(0, len(images), batch_size)]).numpy()
        if "mu" in data and "sigma" in data:
            return np.asarray(data["mu"], np.float64), np.asarray(data["sigma"], np.float64), features
        if features is not None:
            return (*metrics.feature_statistics(features), features)
        raise ValueError(f"{path} has keys {sorted(data.files)}; expected 'mu' and 'sigma' (ADM, pytorch-fid or "
                         "torch-fidelity statistics) or 'arr_0' images")



def _torch_statistics(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``{"mu", "sigma"}`` numpy arrays saved with ``torch.save`` (torch-fidelity's statistics cache), read
    with ``weights_only=True`` and only numpy's array-rebuilding globals allowed."""
    core = getattr(np, "_core", None) or np.core
    allowed = [core.multiarray._reconstruct, np.ndarray, np.dtype,
               *(type(np.dtype(t)) for t in (np.float16, np.float32, np.float64))]
    from ..utils.io import load_pickle

    data = load_pickle(path, safe_globals=allowed)  # only numpy's array-rebuilding globals
    if not isinstance(data, dict) or "mu" not in data or "sigma" not in data:
        raise ValueError(f"{path} must hold a dict with 'mu' and 'sigma' (torch-fidelity's statistics cache)")
    return np.asarray(data["mu"], np.float64), np.asarray(data["sigma"], np.float64)


@torch.no_grad()
def evaluate_pipeline(pipe, *, num_images=50, batch_size=8, reference_stats=None, inception_weights=None,
                      class_labels=None, seed=0, fid=True, grid_images=GRID_IMAGES * 2, progress=True,
                      call_kwargs=None) -> tuple[dict, np.ndarray]:
    """Generate ``num_images`` class-conditional samples (labels cycled over ``class_labels`` or all classes)."""
    if not isinstance(num_images, int) or num_images < 2:
        raise ValueError(f"num_images must be an int >= 2, got {num_images!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    num_classes = getattr(getattr(getattr(pipe, "transformer", None), "config", None), "num_classes", None)
    if num_classes is None:
        raise ValueError(f"{type(pipe).__name__} is not class-conditional (no transformer.config.num_classes); "
                         "vistok eval scores class-conditional pipelines")
    labels = list(range(num_classes)) if class_labels is None else [int(c) for c in class_labels]
    if not labels or min(labels) < 0 or max(labels) >= num_classes:
        raise ValueError(f"class labels must lie in [0, {num_classes - 1}], got {labels}")
    all_labels = [labels[i % len(labels)] for i in range(num_images)]
    skipped: dict[str, str] = {}
    device = pipe.device if hasattr(pipe, "device") else torch.device("cpu")
    inception, _ = _load_networks(inception_weights, None, None, device, skipped, fid)
    skipped.pop("lpips", None)
    generator = torch.Generator().manual_seed(int(seed))
    pipe.set_progress_bar_config(disable=True)

    def batches():
        for offset in range(0, num_images, batch_size):
            chunk = all_labels[offset:offset + batch_size]
            yield to_uint8(pipe(class_labels=chunk, generator=generator, output_type="pt", **(call_kwargs or {})).images)

    start = time.perf_counter()
    report, grid = _score_batches(batches(), num_images, inception, reference_stats, skipped, grid_images, progress,
                                  "vistok eval (samples)")
    elapsed = time.perf_counter() - start
    report = {"kind": "pipeline", "pipeline": type(pipe).__name__, "num_images": num_images, "batch_size": batch_size,
              "seed": int(seed), "class_labels": "all classes" if class_labels is None else labels,
              "device": str(device), "images_per_s": num_images / elapsed, **report}
    return report, grid


def evaluate_samples(folder: str | os.PathLike, *, batch_size=50, reference_stats=None, inception_weights=None,
                     fid=True, grid_images=GRID_IMAGES * 2, progress=True) -> tuple[dict, np.ndarray]:
    """Score the images a ``vistok sample`` run wrote (its ``samples.npz``) with gFID/IS, as ``evaluate_pipeline``."""
    import json

    folder = Path(folder).expanduser()
    manifest = json.loads((folder / "manifest.json").read_text())
    npz = folder / (manifest.get("npz") or "samples.npz")
    if not npz.is_file():
        raise ValueError(f"{folder} has no {npz.name}: sample it again with the npz output on")
    skipped: dict[str, str] = {}
    inception, _ = _load_networks(inception_weights, None, None, torch.device("cpu"), skipped, fid)
    skipped.pop("lpips", None)
    with np.load(npz, allow_pickle=False) as data:
        images = data["arr_0"]
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"{npz}: arr_0 must be uint8 images [N, H, W, 3], got {images.dtype} {images.shape}")
    batches = (images[i:i + batch_size] for i in range(0, len(images), batch_size))
    report, grid = _score_batches(batches, len(images), inception, reference_stats, skipped, grid_images, progress,
                                  "vistok eval (sample folder)")
    report = {"kind": "samples", "pipeline": manifest.get("class"), "num_images": int(len(images)),
              "seed": manifest.get("seed"), "class_labels": manifest.get("class_labels"), "sampled_from": manifest.get("pipeline"),
              **report}
    return report, grid


def _score_batches(batches, total, inception, reference_stats, skipped, grid_images, progress, desc):
    """gFID (against ``reference_stats``), IS and precision/recall of uint8 ``[B, H, W, 3]`` image batches."""
    from tqdm.auto import tqdm

    features, logits, samples = [], [], []
    bar = tqdm(total=total, desc=desc, unit="img", disable=not progress)
    for batch in batches:
        images = from_uint8(batch)
        if inception is not None:
            out = inception(images)
            features.append(out.features)
            if out.logits is not None:
                logits.append(out.logits)
        if sum(len(s) for s in samples) < grid_images:
            samples.append(batch)
        bar.update(len(batch))
    bar.close()
    report = {"feature_extractor": None, "reference_stats": None if reference_stats is None else str(reference_stats),
              "skipped": skipped, "conventions": CONVENTIONS}
    if inception is not None:
        report["feature_extractor"] = inception.source
        sample_features = torch.cat(features).numpy()
        mu, sigma = metrics.feature_statistics(sample_features)
        report["sample_statistics"] = {"mu": mu, "sigma": sigma}  # written as an .npz, not into the JSON
        if reference_stats is None:
            skipped["gfid"] = skipped["precision_recall"] = "no --reference-stats NPZ given"
        else:
            ref_mu, ref_sigma, ref_features = load_reference_statistics(reference_stats, inception)
            report["gfid"] = metrics.frechet_distance(mu, sigma, ref_mu, ref_sigma)
            k = 3
            if ref_features is not None and min(len(ref_features), len(sample_features)) > k:
                report["precision"], report["recall"] = metrics.precision_recall(ref_features, sample_features, k=k)
            else:
                skipped["precision_recall"] = ("needs reference images (arr_0 in the --reference-stats NPZ) and more "
                                               f"than {k} samples per side")
        if logits:
            all_logits = torch.cat(logits).numpy()
            report["inception_score"], report["inception_score_std"] = metrics.inception_score(
                all_logits, splits=min(10, len(all_logits)))
    else:
        skipped["gfid"] = skipped["fid"]
    return report, np.concatenate(samples)[:grid_images]
