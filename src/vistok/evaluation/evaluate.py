"""``vistok eval``: score a tokenizer (reconstruction) or a pipeline (generation) and write JSON + PNGs.

Tokenizer: every image is encoded once with all tokens; for each requested token count k (any prefix
for variable-length 1D tokenizers) the prefix is decoded and scored — PSNR, SSIM, LPIPS, rFID (and IS
when the Inception model has a classifier), codebook usage and entropy of the ids, encode/decode
throughput, bytes per image — and the first ``rate_distortion_images`` images also go through JPEG and
WebP for the rate–distortion plot. Pipeline: ``num_images`` samples (class labels cycled over all
classes, seeded) scored with gFID against a reference statistics file, IS, and precision/recall when the
reference file carries images.

Metrics whose network weights are missing are skipped, with the reason in the JSON's ``skipped``.
"""

from __future__ import annotations

import inspect
import itertools
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch

from . import metrics
from .rate_distortion import (CODECS, QUALITIES, codec_round_trip, from_uint8, plot_rate_distortion, reconstruction_grid,
                              sample_grid, to_uint8, token_bytes)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
GRID_IMAGES = 4  # rows of the reconstruction grid; the sample grid shows twice as many
CONVENTIONS = {
    "pixels": "images scored in [0, 1] after rounding to 8 bits (data range 1.0, equal to 255 on uint8)",
    "psnr": "per image over all pixels and channels, mean over images, dB",
    "ssim": "Gaussian window 11 taps sigma 1.5, valid filtering, K1=0.01 K2=0.03, per channel, data range 1.0 "
            "(= skimage structural_similarity gaussian_weights=True, use_sample_covariance=False)",
    "fid": "Frechet distance of Inception pool3 features (TF inception-2015-12-05 TorchScript, 299x299 "
           "TF-style bilinear resize); covariance with N-1",
    "inception_score": "10 consecutive splits, no shuffling (torch-fidelity order)",
    "bytes_per_image": "tokens: k*log2(codebook_size)/8; jpeg/webp: mean Pillow file size",
    "continuous_tokenizers": "decoded from the posterior mean (no sampling)",
}


# -- inputs ---------------------------------------------------------------------------------------------
def image_folder_files(folder: str | os.PathLike) -> list[Path]:
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise ValueError(f"--images {str(root)!r} is not a folder of images")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise ValueError(f"--images {str(root)!r} holds no images (expected files ending in {', '.join(IMAGE_SUFFIXES)})")
    return files


def iterate_images(*, images=None, dataset=None, split="validation", image_column="image", num_images=None,
                   streaming=False):
    """PIL images from a plain folder (``images``) or any dataset form ``vistok.data.load_image_dataset`` takes."""
    import PIL.Image

    if (images is None) == (dataset is None):
        raise ValueError("give exactly one of --images DIR or --dataset SOURCE")
    if images is not None:
        files = image_folder_files(images)
        count = len(files) if num_images is None else min(num_images, len(files))

        def generate():
            for path in files[:count]:
                with PIL.Image.open(path) as image:
                    yield image.convert("RGB")

        return generate(), count
    from ..data import load_image_dataset

    ds = load_image_dataset(dataset, split=split, image_column=image_column, streaming=streaming)
    if streaming:
        if num_images is None:
            raise ValueError("a streamed dataset has no length: give --num-images")
        rows, count = itertools.islice(iter(ds), num_images), num_images
    else:
        count = len(ds) if num_images is None else min(num_images, len(ds))
        rows = (ds[index] for index in range(count))

    def generate():
        for row in rows:
            image = row[image_column]
            if not hasattr(image, "convert"):
                raise TypeError(f"the {image_column!r} column must hold images, got {type(image).__name__}")
            yield image.convert("RGB")

    return generate(), count


def batches(iterable, size: int):
    batch = []
    for item in iterable:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


# -- models ---------------------------------------------------------------------------------------------
def load_model(source: str | os.PathLike):
    """(kind, model, folder): a pipeline when the folder has model_index.json, else a tokenizer."""
    import vistok  # noqa: F401  (registers the Auto classes and pipeline classes)
    from ..utils.io import resolve_source

    folder = resolve_source(str(source))
    if (folder / "model_index.json").is_file():
        index = json.loads((folder / "model_index.json").read_text())
        name = index.get("_class_name")
        name = name[-1] if isinstance(name, list) else name
        from .. import pipelines

        cls = getattr(pipelines, str(name), None)
        if cls is None:
            raise ValueError(f"{folder}/model_index.json names pipeline {name!r}; vistok pipelines are "
                             f"{sorted(n for n in pipelines.__all__ if n != 'VistokPipeline')}")
        return "pipeline", cls.from_pretrained(str(folder)), folder
    if not (folder / "config.json").is_file():
        raise ValueError(f"{folder} is neither a tokenizer folder (config.json) nor a pipeline folder (model_index.json)")
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(folder))
    if not hasattr(model, "encode") or not hasattr(model.config, "token_layout"):
        raise ValueError(f"{folder} holds a {type(model).__name__}, not a vistok VisualTokenizer")
    return "tokenizer", model, folder


def _processor_for(model, folder: Path | None):
    from ..image_processing import VistokImageProcessor

    if folder is not None and (folder / "preprocessor_config.json").is_file():
        return VistokImageProcessor.from_pretrained(str(folder))
    return VistokImageProcessor.from_model_config(model.config)


def default_token_counts(config) -> list[int]:
    """Powers of two up to the maximum, plus the maximum, for variable-length 1D tokenizers; else the maximum."""
    maximum = int(config.num_tokens)
    if not getattr(config, "variable_length", False):
        return [maximum]
    counts = [2**i for i in range(int(math.log2(maximum)) + 1)]
    return sorted(set(counts + [maximum]))


def _check_token_counts(config, token_counts) -> list[int]:
    if token_counts is None:
        return default_token_counts(config)
    counts = sorted(set(int(k) for k in token_counts))
    for k in counts:
        config_check = k == config.num_tokens or (getattr(config, "variable_length", False) and 1 <= k <= config.num_tokens)
        if not config_check:
            allowed = f"1..{config.num_tokens}" if getattr(config, "variable_length", False) else str(config.num_tokens)
            raise ValueError(f"token count {k} is not valid for this tokenizer: expected values in {allowed}")
    return counts


# -- optional networks ------------------------------------------------------------------------------------
def _load_networks(inception_weights, lpips_weights, lpips_heads, device, skipped: dict, fid: bool = True):
    """Missing *default* weights skip a metric (reason in ``skipped``); a path given explicitly must load.
    ``fid=False`` skips the Inception network (FID, IS) on purpose."""
    from .inception import InceptionFeatureExtractor
    from .lpips import LPIPS

    inception = lpips = None
    if not fid:
        if inception_weights is not None:
            raise ValueError("inception weights were given but FID is switched off (fid=False / --no-fid)")
        skipped["fid"] = "switched off (fid=False / --no-fid)"
    else:
        try:
            inception = InceptionFeatureExtractor.load(inception_weights, device=device)
        except FileNotFoundError as err:
            if inception_weights is not None:
                raise
            skipped["fid"] = str(err)
    if inception is not None and not inception.has_classifier:
        skipped["inception_score"] = (f"{inception.source} has no classifier head (pool3 features only); pass NVIDIA's "
                                      "inception-2015-12-05.pt as --inception-weights for IS")
    if lpips_weights is None:
        skipped["lpips"] = ("no LPIPS backbone: pass --lpips-weights with a torchvision AlexNet or VGG16 state dict "
                            "(e.g. alexnet-owt-7be5be79.pth); no package ships these weights")
    else:
        if not Path(lpips_weights).expanduser().is_file():
            raise FileNotFoundError(f"--lpips-weights {str(lpips_weights)!r} does not exist")
        try:
            lpips = LPIPS.load(lpips_weights, lpips_heads).to(device)
        except FileNotFoundError as err:  # only the default heads can be missing here
            if lpips_heads is not None:
                raise
            skipped["lpips"] = str(err)
    return inception, lpips


class _Scores:
    """Accumulates per-image metrics and Inception outputs for one set of images."""

    def __init__(self):
        self.psnr, self.ssim, self.lpips, self.features, self.logits = [], [], [], [], []

    def add(self, originals, images, lpips=None, inception=None):
        self.psnr.append(metrics.psnr(images, originals))
        self.ssim.append(metrics.ssim(images, originals))
        if lpips is not None:
            self.lpips.append(lpips(images, originals).double().cpu())
        if inception is not None:
            out = inception(images)
            self.features.append(out.features)
            if out.logits is not None:
                self.logits.append(out.logits)

    def summary(self, reference_features=None, first: int | None = None) -> dict:
        """Means over all images (or the ``first`` ones: PSNR/SSIM/LPIPS only); FID and IS over all.

        PSNR averages the finite values (an exact reconstruction has infinite PSNR)."""
        psnr = torch.cat(self.psnr)[:first]
        out = {"psnr": float(psnr[torch.isfinite(psnr)].mean()) if torch.isfinite(psnr).any() else float("inf"),
               "ssim": float(torch.cat(self.ssim)[:first].mean()),
               "lpips": float(torch.cat(self.lpips)[:first].mean()) if self.lpips else None}
        if first is not None:
            return out
        if self.features and reference_features is not None:
            features = torch.cat(self.features).numpy()
            out["rfid"] = metrics.frechet_distance(*metrics.feature_statistics(features),
                                                   *metrics.feature_statistics(reference_features))
        if self.logits:
            logits = torch.cat(self.logits)
            mean, std = metrics.inception_score(logits.numpy(), splits=min(10, logits.shape[0]))
            out["inception_score"], out["inception_score_std"] = mean, std
        return out


# -- tokenizer evaluation ---------------------------------------------------------------------------------
@torch.no_grad()
def evaluate_tokenizer(model, *, images=None, dataset=None, split="validation", image_column="image", streaming=False,
                       num_images=None,
                       batch_size=8, token_counts=None, folder=None, inception_weights=None, lpips_weights=None,
                       lpips_heads=None, rate_distortion_images=256, fid=True, grid_images=GRID_IMAGES,
                       progress=True) -> tuple[dict, dict]:
    """Returns (results, artefacts): the JSON-ready dict and the arrays the figures are drawn from.

    The JPEG/WebP sweep (32 encodes per image) runs on the first ``rate_distortion_images`` images (0: none);
    the tokenizer's rate-distortion points are averaged over the same images.
    """
    from tqdm.auto import tqdm

    config = model.config
    counts = _check_token_counts(config, token_counts)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if num_images is not None and (not isinstance(num_images, int) or num_images < 2):
        raise ValueError(f"num_images must be an int >= 2 (FID needs a covariance), got {num_images!r}")
    model.train(False)
    device = model.device
    processor = _processor_for(model, folder)
    low, high = processor.pixel_range
    stream, total = iterate_images(images=images, dataset=dataset, split=split, image_column=image_column,
                                   num_images=num_images, streaming=streaming)
    if total < 2:
        raise ValueError(f"need at least 2 images to evaluate, found {total}")
    skipped: dict[str, str] = {}
    inception, lpips = _load_networks(inception_weights, lpips_weights, lpips_heads, device, skipped, fid)
    continuous = config.token_layout == "continuous"
    # A continuous (KL) tokenizer is scored on its posterior mean, so the figures do not depend on the RNG.
    encode_kwargs = {}
    if continuous and "sample_posterior" in inspect.signature(model._encode).parameters:
        encode_kwargs["sample_posterior"] = False
    scores = {k: _Scores() for k in counts}
    if not isinstance(rate_distortion_images, int) or rate_distortion_images < 0:
        raise ValueError(f"rate_distortion_images must be an int >= 0, got {rate_distortion_images!r}")
    rd_images = min(rate_distortion_images, total)
    codec_scores = {(c, q): _Scores() for c in CODECS for q in QUALITIES} if rd_images else {}
    codec_bytes = {key: [] for key in codec_scores}
    ids_by_count = {k: [] for k in counts}
    timing = {"encode_s": 0.0, "decode_s": {k: 0.0 for k in counts}}
    original_features, original_logits, grid = [], [], {"originals": None, "reconstructions": {}}

    bar = tqdm(total=total, desc="vistok eval", unit="img", disable=not progress)
    seen = 0
    for batch in batches(stream, batch_size):
        pixel_values = processor(images=batch, return_tensors="pt").pixel_values.to(device, model.dtype)
        originals = from_uint8(to_uint8((pixel_values.float() - low) / (high - low)))
        if inception is not None:
            out = inception(originals)
            original_features.append(out.features)
            if out.logits is not None:
                original_logits.append(out.logits)
        start = time.perf_counter()
        encoded = model.encode(pixel_values, **encode_kwargs)
        timing["encode_s"] += time.perf_counter() - start
        for k in counts:
            start = time.perf_counter()
            if continuous:
                pixels = model.decode_latents(encoded.latents[:, :k])
            else:
                ids = encoded.token_ids[:, :k] if config.token_layout == "1d" else encoded.token_ids
                pixels = model.decode(ids)
                ids_by_count[k].append(ids.cpu())
            timing["decode_s"][k] += time.perf_counter() - start
            reconstructions_u8 = to_uint8(processor.postprocess(pixels, output_type="pt"))
            scores[k].add(originals, from_uint8(reconstructions_u8), lpips, inception)
            if grid["originals"] is None or len(grid["originals"]) < grid_images:
                grid["reconstructions"].setdefault(k, []).append(reconstructions_u8)
        originals_u8 = to_uint8(originals)
        if grid["originals"] is None or len(grid["originals"]) < grid_images:
            grid["originals"] = originals_u8 if grid["originals"] is None else np.concatenate([grid["originals"], originals_u8])
        in_sweep = max(0, min(len(batch), rd_images - seen))
        for (codec, quality), codec_score in codec_scores.items():
            if in_sweep:
                decoded, sizes = codec_round_trip(originals_u8[:in_sweep], codec, quality)
                codec_bytes[(codec, quality)] += sizes
                codec_score.add(originals[:in_sweep], from_uint8(decoded), lpips, None)
        seen += len(batch)
        bar.update(len(batch))
    bar.close()

    reference = torch.cat(original_features).numpy() if original_features else None
    results = []
    for k in counts:
        entry = {"num_tokens": k}
        if not continuous:
            entry["bytes_per_image"] = token_bytes(k, config.codebook_size)
        entry.update(scores[k].summary(reference))
        if not continuous:
            entry.update(metrics.codebook_statistics(torch.cat(ids_by_count[k]), config.codebook_size))
        entry["encode_images_per_s"] = total / timing["encode_s"]
        entry["decode_images_per_s"] = total / timing["decode_s"][k]
        entry["decode_tokens_per_s"] = total * k / timing["decode_s"][k]
        results.append(entry)
    if original_logits:
        logits = torch.cat(original_logits)
        mean, std = metrics.inception_score(logits.numpy(), splits=min(10, logits.shape[0]))
        originals_is = {"inception_score": mean, "inception_score_std": std}
    else:
        originals_is = None

    curves = None
    if rd_images and not continuous:
        curves = {"num_images": rd_images, "tokenizer": []}
        for entry in results:
            point = {"num_tokens": entry["num_tokens"], "bytes_per_image": entry["bytes_per_image"]}
            point.update(scores[entry["num_tokens"]].summary(first=rd_images))
            curves["tokenizer"].append(point)
        for codec in CODECS:
            curves[codec] = []
            for quality in QUALITIES:
                point = {"quality": quality, "bytes_per_image": float(np.mean(codec_bytes[(codec, quality)]))}
                point.update(codec_scores[(codec, quality)].summary())
                curves[codec].append(point)
        curves["matched"] = matched_sizes(curves)
        curves["dominance"] = codec_dominance(curves)
    report = {
        "kind": "tokenizer",
        "model_type": config.model_type,
        "token_layout": config.token_layout,
        "codebook_size": None if continuous else int(config.codebook_size),
        "max_tokens": int(config.num_tokens),
        "image_size": int(config.image_size),
        "num_images": total,
        "batch_size": batch_size,
        "device": str(device),
        "dtype": str(model.dtype).replace("torch.", ""),
        "encode_tokens_per_s": total * int(config.num_tokens) / timing["encode_s"],
        "results": results,
        "originals": originals_is,
        "rate_distortion": curves,
        "feature_extractor": None if inception is None else inception.source,
        "lpips_backbone": None if lpips is None else lpips.net,
        "skipped": skipped,
        "conventions": CONVENTIONS,
    }
    if inception is not None and total < 2048:
        report["notes"] = [f"rFID on {total} images is biased upwards relative to the 50k-image protocol"]
    grid["reconstructions"] = {k: np.concatenate(v)[:grid_images] for k, v in grid["reconstructions"].items()}
    grid["originals"] = grid["originals"][:grid_images]
    return report, grid


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


MATCH_TOLERANCE = 1.25


def matched_sizes(curves: dict) -> list[dict]:
    """For each tokenizer point, the JPEG/WebP quality whose mean size is nearest (in ratio), or None when
    no quality comes within a factor ``MATCH_TOLERANCE`` (typical at small token counts: the codecs cannot
    get that small)."""
    out = []
    for point in curves["tokenizer"]:
        row = {"num_tokens": point["num_tokens"], "bytes_per_image": point["bytes_per_image"]}
        for codec in CODECS:
            nearest = min(curves[codec], key=lambda p: abs(math.log(p["bytes_per_image"] / point["bytes_per_image"])))
            ratio = nearest["bytes_per_image"] / point["bytes_per_image"]
            row[codec] = nearest if 1 / MATCH_TOLERANCE <= ratio <= MATCH_TOLERANCE else None
        out.append(row)
    return out


def codec_dominance(curves: dict, key: str = "psnr") -> dict:
    """Which codec settings the tokenizer beats outright: a tokenizer point with no more bytes per image and a
    higher ``key`` (higher is better). Unlike ``matched_sizes`` this needs no size match, so it also speaks
    for the smallest settings, where the token stream is far smaller than any file the codec can write.

    Per codec: ``beaten_qualities`` (ascending) and, per quality, the token counts that beat it."""
    out = {"metric": key}
    for codec in CODECS:
        points = []
        for point in curves[codec]:
            winners = [t["num_tokens"] for t in curves["tokenizer"]
                       if t["bytes_per_image"] <= point["bytes_per_image"] and t.get(key) is not None
                       and point.get(key) is not None and t[key] > point[key]]
            points.append({"quality": point["quality"], "bytes_per_image": point["bytes_per_image"], key: point.get(key),
                           "beaten_by_num_tokens": winners})
        out[codec] = {"beaten_qualities": [p["quality"] for p in points if p["beaten_by_num_tokens"]], "points": points}
    return out


def _torch_statistics(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``{"mu", "sigma"}`` numpy arrays saved with ``torch.save`` (torch-fidelity's statistics cache), read
    with ``weights_only=True`` and only numpy's array-rebuilding globals allowed."""
    core = getattr(np, "_core", None) or np.core
    allowed = [core.multiarray._reconstruct, np.ndarray, np.dtype,
               *(type(np.dtype(t)) for t in (np.float16, np.float32, np.float64))]
    try:
        with torch.serialization.safe_globals(allowed):
            data = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:  # the unpickler raises UnpicklingError/RuntimeError for anything not allowed
        raise ValueError(f"{path} could not be read as statistics with weights_only=True: {err}") from err
    if not isinstance(data, dict) or "mu" not in data or "sigma" not in data:
        raise ValueError(f"{path} must hold a dict with 'mu' and 'sigma' (torch-fidelity's statistics cache)")
    return np.asarray(data["mu"], np.float64), np.asarray(data["sigma"], np.float64)


@torch.no_grad()
def evaluate_pipeline(pipe, *, num_images=50, batch_size=8, reference_stats=None, inception_weights=None,
                      class_labels=None, seed=0, fid=True, grid_images=GRID_IMAGES * 2, progress=True,
                      call_kwargs=None) -> tuple[dict, np.ndarray]:
    """Generate ``num_images`` class-conditional samples (labels cycled over ``class_labels`` or all classes)."""
    from tqdm.auto import tqdm

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
    features, logits, samples = [], [], []
    bar = tqdm(total=num_images, desc="vistok eval (samples)", unit="img", disable=not progress)
    start = time.perf_counter()
    for offset in range(0, num_images, batch_size):
        chunk = all_labels[offset:offset + batch_size]
        images = pipe(class_labels=chunk, generator=generator, output_type="pt", **(call_kwargs or {})).images
        images = from_uint8(to_uint8(images))
        if inception is not None:
            out = inception(images)
            features.append(out.features)
            if out.logits is not None:
                logits.append(out.logits)
        if sum(len(s) for s in samples) < grid_images:
            samples.append(to_uint8(images))
        bar.update(len(chunk))
    bar.close()
    elapsed = time.perf_counter() - start
    report = {"kind": "pipeline", "pipeline": type(pipe).__name__, "num_images": num_images, "batch_size": batch_size,
              "seed": int(seed), "class_labels": "all classes" if class_labels is None else labels,
              "device": str(device), "images_per_s": num_images / elapsed, "feature_extractor": None,
              "reference_stats": None if reference_stats is None else str(reference_stats), "skipped": skipped,
              "conventions": CONVENTIONS}
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


# -- orchestration ----------------------------------------------------------------------------------------
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
    if device is not None:
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
