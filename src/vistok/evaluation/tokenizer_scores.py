"""Tokenizer scoring: every image encoded once, each token count's prefix decoded and scored (PSNR, SSIM,
LPIPS, rFID, IS, codebook usage, throughput, bytes), plus the JPEG/WebP sweep of the rate-distortion curve."""

from __future__ import annotations

import inspect
import math
import time

import numpy as np
import torch

from . import metrics
from .loading import _load_networks, _processor_for, batches, iterate_images
from .metrics import CONVENTIONS
from .rate_distortion import (CODECS, GRID_IMAGES, QUALITIES, codec_dominance, codec_round_trip, from_uint8, matched_sizes,
                              to_uint8, token_bytes)


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
    model.eval()
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
    # A decoder that samples (a flow or diffusion decoder) draws from one seeded generator, so the figures are reproducible.
    seeded_decode = "generator" in inspect.signature(model.decode).parameters
    decode_generator = torch.Generator(device).manual_seed(0) if seeded_decode else None
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
                pixels = model.decode(ids, generator=decode_generator) if seeded_decode else model.decode(ids)
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
