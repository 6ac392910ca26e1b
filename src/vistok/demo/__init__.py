"""The default model shipped inside the package, and ``vistok demo``.

``DEFAULT_PIPELINE`` is a MaskGIT pipeline folder (``model_index.json``, ``image_tokenizer/``,
``transformer/``, each with its card) trained with ``vistok train`` on crops of real photographs
(``vistok.demo.photos``); ``DEFAULT_TOKENIZER`` is its 1D variable-length tokenizer, a plain
transformers model folder. ``DEFAULT_AR_PIPELINE`` is the autoregressive counterpart (an
``AutoregressiveImagePipeline`` folder: a small LlamaGen GPT over the same tokenizer's tokens), the model the
decoding strategies (``decoding="sjd"`` ...) are measured on. ``HELDOUT_IMAGES`` holds the photographs kept out
of training, whole and cropped.

``vistok demo`` reconstructs the held-out images at 1, 2, 4, ... tokens, scores them against JPEG and
WebP (all together, and per photograph: whole and cropped apart), samples every class with both generators, and
writes the figures
and one JSON. The figures are ``vistok eval`` underneath, so they can be reproduced with the commands the JSON
records.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

ASSETS = Path(__file__).resolve().parent
DEFAULT_PIPELINE = ASSETS / "default"
DEFAULT_TOKENIZER = DEFAULT_PIPELINE / "image_tokenizer"
DEFAULT_AR_PIPELINE = ASSETS / "default_ar"
HELDOUT_IMAGES = ASSETS / "heldout"
DEMO_GRID_IMAGES = 10  # reconstruction rows: the whole held-out photographs (their files sort first)
LOWEST_JPEG_QUALITIES = (1, 2, 3)  # JPEG's lowest-rate settings, compared per photograph
DEMO_SAMPLES = 16
DEMO_RD_IMAGES = 1000  # every held-out image goes through the JPEG/WebP sweep


def load_default_tokenizer(**kwargs):
    """The shipped tokenizer (``AutoModel.from_pretrained`` on ``DEFAULT_TOKENIZER``)."""
    from transformers import AutoModel

    _check_assets()
    return AutoModel.from_pretrained(str(DEFAULT_TOKENIZER), **kwargs)


def load_default_pipeline(**kwargs):
    """The shipped class-conditional ``MaskGITPipeline``."""
    from ..pipelines import MaskGITPipeline

    _check_assets()
    return MaskGITPipeline.from_pretrained(str(DEFAULT_PIPELINE), **kwargs)


def load_default_ar_pipeline(**kwargs):
    """The shipped class-conditional ``AutoregressiveImagePipeline`` (same tokenizer, a LlamaGen GPT)."""
    from ..pipelines import AutoregressiveImagePipeline

    _check_assets()
    return AutoregressiveImagePipeline.from_pretrained(str(DEFAULT_AR_PIPELINE), **kwargs)


def _check_assets() -> None:
    missing = [str(p) for p in (DEFAULT_PIPELINE / "model_index.json", DEFAULT_TOKENIZER / "model.safetensors",
                                DEFAULT_PIPELINE / "transformer" / "model.safetensors",
                                DEFAULT_AR_PIPELINE / "model_index.json",
                                DEFAULT_AR_PIPELINE / "transformer" / "model.safetensors", HELDOUT_IMAGES) if not p.exists()]
    if missing:
        raise FileNotFoundError(f"the default model's files are missing from this installation: {missing}; "
                                "reinstall vistok (they ship as package data)")


def eval_commands(output: Path) -> dict[str, str]:
    """The ``vistok eval`` command lines that reproduce the demo's figures."""
    heldout = output / "heldout"
    return {
        "tokenizer": f'vistok eval "{DEFAULT_TOKENIZER}" --images "{heldout}" --rd-images {DEMO_RD_IMAGES} --no-fid '
                     f"--grid-images {DEMO_GRID_IMAGES} --output EVAL_DIR",
        "pipeline": f'vistok eval "{DEFAULT_PIPELINE}" --num-images {DEMO_SAMPLES} --grid-images {DEMO_SAMPLES} '
                    "--seed 0 --no-fid --output EVAL_DIR",
        "ar_pipeline": f'vistok eval "{DEFAULT_AR_PIPELINE}" --num-images {DEMO_SAMPLES} --grid-images {DEMO_SAMPLES} '
                       "--seed 0 --no-fid --output EVAL_DIR",
    }


def run_demo(output: str | os.PathLike = "vistok-demo", *, overwrite: bool = False, progress: bool = True) -> dict:
    """Write into ``output``: ``heldout/`` (the images), ``reconstructions.png``, ``rate_distortion.png``,
    ``samples.png`` (MaskGIT), ``samples_ar.png`` (the autoregressive generator), ``demo.json`` (all figures) and the
    full ``tokenizer/``, ``pipeline/`` and ``ar_pipeline/`` eval reports.

    Nothing is written unless the whole demo succeeds."""
    from ..utils.io import atomic_output_dir
    from ..evaluation import run_eval

    _check_assets()
    output = Path(output).expanduser().resolve()
    start = time.perf_counter()
    with atomic_output_dir(output, overwrite=overwrite) as scratch:
        heldout = scratch / "heldout"
        shutil.copytree(HELDOUT_IMAGES, heldout, ignore=shutil.ignore_patterns("*.md"))
        tokenizer_report = run_eval(DEFAULT_TOKENIZER, scratch / "tokenizer", images=heldout, rate_distortion_images=DEMO_RD_IMAGES,
                                    fid=False, grid_images=DEMO_GRID_IMAGES, progress=progress)
        tokenizer_seconds = time.perf_counter() - start
        pipeline_report = run_eval(DEFAULT_PIPELINE, scratch / "pipeline", num_images=DEMO_SAMPLES, seed=0, fid=False,
                                   grid_images=DEMO_SAMPLES, progress=progress)
        ar_report = run_eval(DEFAULT_AR_PIPELINE, scratch / "ar_pipeline", num_images=DEMO_SAMPLES, seed=0, fid=False,
                             grid_images=DEMO_SAMPLES, progress=progress)
        for name, folder, target in (("reconstructions.png", "tokenizer", "reconstructions.png"),
                                     ("rate_distortion.png", "tokenizer", "rate_distortion.png"),
                                     ("samples.png", "pipeline", "samples.png"),
                                     ("samples.png", "ar_pipeline", "samples_ar.png")):
            shutil.copyfile(scratch / folder / name, scratch / target)
        summary = _summary(tokenizer_report, pipeline_report, ar_report)
        summary.update(evaluate_per_photograph(heldout))
        summary["seconds"] = {"tokenizer_eval": round(tokenizer_seconds, 2),
                              "total": round(time.perf_counter() - start, 2)}
        summary["reproduce"] = eval_commands(output)
        (scratch / "demo.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _samples_summary(folder: Path, report: dict) -> dict:
    config = json.loads((folder / "transformer" / "config.json").read_text())
    names = config.get("id2label") or {}
    classes = [names.get(str(c), str(c)) for c in range(int(config["num_classes"]))]
    return {"pipeline": str(folder), "num_images": report["num_images"],
            "class_labels": [classes[i % len(classes)] for i in range(report["num_images"])],
            "images_per_s": report["images_per_s"]}


def _summary(tokenizer_report: dict, pipeline_report: dict, ar_report: dict) -> dict:
    rd = tokenizer_report["rate_distortion"]
    by_count = {p["num_tokens"]: p for p in rd["tokenizer"]}
    tokenizer = [{"num_tokens": r["num_tokens"], "bytes_per_image": r["bytes_per_image"], "psnr": r["psnr"],
                  "ssim": r["ssim"], "codebook_usage": r.get("codebook_usage")}
                 for r in tokenizer_report["results"] if r["num_tokens"] in by_count]
    jpeg = rd["dominance"]["jpeg"]
    return {
        "tokenizer": str(DEFAULT_TOKENIZER),
        "heldout_images": tokenizer_report["num_images"],
        "image_size": tokenizer_report["image_size"],
        "codebook_size": tokenizer_report["codebook_size"],
        "reconstruction": tokenizer,
        "jpeg": [{"quality": p["quality"], "bytes_per_image": p["bytes_per_image"], "psnr": p["psnr"]}
                 for p in rd["jpeg"]],
        "webp": [{"quality": p["quality"], "bytes_per_image": p["bytes_per_image"], "psnr": p["psnr"]}
                 for p in rd["webp"]],
        "beats_jpeg": {
            "rule": "a token count with no more bytes per image and a higher mean PSNR than JPEG at that quality",
            "jpeg_qualities_beaten": jpeg["beaten_qualities"],
            "by_quality": {p["quality"]: p["beaten_by_num_tokens"] for p in jpeg["points"] if p["beaten_by_num_tokens"]},
        },
        "beats_webp": {"webp_qualities_beaten": rd["dominance"]["webp"]["beaten_qualities"]},
        "samples": _samples_summary(DEFAULT_PIPELINE, pipeline_report),
        "ar_samples": _samples_summary(DEFAULT_AR_PIPELINE, ar_report),
        "conventions": tokenizer_report["conventions"],
        "files": {"reconstructions": "reconstructions.png", "rate_distortion": "rate_distortion.png",
                  "samples": "samples.png", "ar_samples": "samples_ar.png", "tokenizer_eval": "tokenizer/results.json",
                  "pipeline_eval": "pipeline/results.json", "ar_pipeline_eval": "ar_pipeline/results.json",
                  "heldout_images": "heldout/"},
    }


def evaluate_per_photograph(folder: str | os.PathLike, tokenizer=None, processor=None) -> dict:
    """The shipped tokenizer against JPEG's lowest-rate settings, per held-out photograph, whole and cropped apart.

    ``folder`` holds files named as ``vistok.demo.photos.write_heldout`` names them. Each entry is one photograph's
    whole image or its crops: the mean PSNR (dB, per image then averaged) and bytes per image at every token count
    and at JPEG qualities ``LOWEST_JPEG_QUALITIES``, and whether the full token count beats each (more PSNR in no
    more bytes). ``by_kind`` pools the images of every photograph, whole and crops apart. ``tokenizer`` and its
    ``processor`` default to the shipped ones (a candidate for the default: its own folder's processor)."""
    import numpy as np
    import PIL.Image
    import torch

    from ..evaluation import metrics
    from ..evaluation.rate_distortion import codec_round_trip, from_uint8, to_uint8, token_bytes
    from ..evaluation.tokenizer_scores import default_token_counts
    from ..image_processing import VistokImageProcessor
    from .photos import HELDOUT_PHOTOS, heldout_kind

    tokenizer = (tokenizer or load_default_tokenizer()).eval()
    processor = processor or VistokImageProcessor.from_pretrained(str(DEFAULT_TOKENIZER))
    low, high = processor.pixel_range
    config = tokenizer.config
    counts, full = default_token_counts(config), int(config.num_tokens)
    groups: dict[tuple[str, str], list[Path]] = {}
    for path in sorted(Path(folder).glob("*.png")):
        groups.setdefault(heldout_kind(path.name), []).append(path)
    order = {name: i for i, name in enumerate(HELDOUT_PHOTOS)}
    keys = sorted(groups, key=lambda key: (order.get(key[0], len(order)), key[0], key[1] != "whole"))
    per_image: dict[str, dict] = {}  # kind -> {"tokens": {k: [psnr]}, "jpeg": {q: [psnr]}, "jpeg_bytes": {q: [bytes]}}

    def mean_psnr(values: torch.Tensor) -> float:
        finite = values[torch.isfinite(values)]
        return float(finite.mean()) if len(finite) else float("inf")

    entries = []
    with torch.no_grad():
        for photo, kind in keys:
            images = []
            for path in groups[(photo, kind)]:
                with PIL.Image.open(path) as image:
                    images.append(image.convert("RGB"))
            pixel_values = processor(images=images, return_tensors="pt").pixel_values.to(tokenizer.device, tokenizer.dtype)
            originals = from_uint8(to_uint8((pixel_values.float() - low) / (high - low)))
            token_ids = tokenizer.encode(pixel_values).token_ids
            pooled = per_image.setdefault(kind, {"tokens": {}, "jpeg": {}, "jpeg_bytes": {}})
            tokens = []
            for k in counts:
                decoded = processor.postprocess(tokenizer.decode(token_ids[:, :k]), output_type="pt")
                psnr = metrics.psnr(from_uint8(to_uint8(decoded)), originals)
                pooled["tokens"].setdefault(k, []).append(psnr)
                tokens.append({"num_tokens": k, "bytes_per_image": token_bytes(k, config.codebook_size),
                               "psnr": mean_psnr(psnr)})
            jpeg = []
            for quality in LOWEST_JPEG_QUALITIES:
                decoded, sizes = codec_round_trip(to_uint8(originals), "jpeg", quality)
                psnr = metrics.psnr(from_uint8(decoded), originals)
                pooled["jpeg"].setdefault(quality, []).append(psnr)
                pooled["jpeg_bytes"].setdefault(quality, []).extend(sizes)
                jpeg.append({"quality": quality, "bytes_per_image": float(np.mean(sizes)), "psnr": mean_psnr(psnr)})
            entries.append({"photo": photo, "kind": kind, "num_images": len(images), "tokenizer": tokens, "jpeg": jpeg,
                            **_verdict(tokens[-1], jpeg)})
    by_kind = {}
    for kind, pooled in per_image.items():
        tokens = [{"num_tokens": k, "bytes_per_image": token_bytes(k, config.codebook_size),
                   "psnr": mean_psnr(torch.cat(values))} for k, values in pooled["tokens"].items()]
        jpeg = [{"quality": q, "bytes_per_image": float(np.mean(pooled["jpeg_bytes"][q])),
                 "psnr": mean_psnr(torch.cat(values))} for q, values in pooled["jpeg"].items()]
        by_kind[kind] = {"num_images": int(sum(len(v) for v in pooled["tokens"][full])), "tokenizer": tokens,
                         "jpeg": jpeg, **_verdict(tokens[-1], jpeg)}
    return {"per_photograph": {
        "rule": (f"the tokenizer at its full {full} tokens against JPEG at qualities {list(LOWEST_JPEG_QUALITIES)} (its "
                 "smallest files) on the same images: it beats a quality with no more bytes per image and a higher mean "
                 "PSNR; whole = the whole photograph as the image processor sees it, crops = tiles of its centre square"),
        "photographs": entries, "by_kind": by_kind,
        "not_beaten": [f"{e['photo']} ({e['kind']})" for e in entries if not e["beats_jpeg_q1"]]}}


def _verdict(full: dict, jpeg: list[dict]) -> dict:
    beaten = [p["quality"] for p in jpeg if full["bytes_per_image"] <= p["bytes_per_image"] and full["psnr"] > p["psnr"]]
    lowest = jpeg[0]
    return {"full_tokens": full, "jpeg_qualities_beaten": beaten, "beats_jpeg_q1": lowest["quality"] in beaten,
            "psnr_margin_over_jpeg_q1": full["psnr"] - lowest["psnr"],
            "bytes_ratio_jpeg_q1": lowest["bytes_per_image"] / full["bytes_per_image"]}


def format_summary(summary: dict, output: str | os.PathLike) -> str:
    """What ``vistok demo`` prints at the end: where each picture is and what it shows, and the headline numbers."""
    from ..evaluation.rate_distortion import token_heading

    out = Path(output)
    files = summary["files"]
    counts = [row["num_tokens"] for row in summary["reconstruction"]]
    per_photo = summary["per_photograph"]
    photos = sorted({e["photo"] for e in per_photo["photographs"]})
    lines = [f"vistok demo: the default tokenizer ({summary['image_size']} px images, up to {counts[-1]} tokens of "
             f"{summary['codebook_size']} codes) on {summary['heldout_images']} held-out images of {len(photos)} "
             "photographs it never saw in training, and the two generators trained with it", "",
             f"{out / files['reconstructions']}",
             f"    each row a whole held-out photograph: 'original' column, then its reconstruction from "
             f"{', '.join(map(str, counts))} tokens (column headings), PSNR in dB on each tile",
             f"{out / files['rate_distortion']}",
             "    quality against size over all held-out images: PSNR (dB) and SSIM against bytes per image (log scale); "
             "the tokenizer's points are labelled with their token count, JPEG's and WebP's with their quality (q1 = "
             "smallest file)",
             f"{out / files['samples']}",
             f"    {summary['samples']['num_images']} samples of the class-conditional masked generator (MaskGIT), each "
             "captioned with its class (a training photograph)",
             f"{out / files['ar_samples']}",
             f"    {summary['ar_samples']['num_images']} samples of the class-conditional autoregressive generator "
             "(LlamaGen), same classes and captions",
             f"{out / 'demo.json'}",
             "    every number: the curves, the per-photograph comparison with JPEG, the `vistok eval` commands that "
             f"redraw the figures; full reports in {out / files['tokenizer_eval']}, {out / files['pipeline_eval']} and "
             f"{out / files['ar_pipeline_eval']}",
             f"{out / files['heldout_images']}",
             "    the held-out images themselves", ""]
    for row in summary["reconstruction"]:
        lines.append(f"{token_heading(row['num_tokens']):>9}  {row['bytes_per_image']:7.1f} B  PSNR {row['psnr']:6.2f} dB  "
                     f"SSIM {row['ssim']:.3f}")
    beaten = summary["beats_jpeg"]["jpeg_qualities_beaten"]
    lines.append(f"over all held-out images, beats JPEG (more PSNR in no more bytes) at qualities: {beaten or 'none'}")
    for kind, row in per_photo["by_kind"].items():
        q1 = row["jpeg"][0]
        lines.append(f"{kind:>6} ({row['num_images']} images): {row['full_tokens']['num_tokens']} tokens "
                     f"{row['full_tokens']['psnr']:.2f} dB in {row['full_tokens']['bytes_per_image']:.0f} B, "
                     f"JPEG q{q1['quality']} {q1['psnr']:.2f} dB in {q1['bytes_per_image']:.0f} B")
    groups = len(per_photo["photographs"])
    lost = per_photo["not_beaten"]
    lines.append(f"per photograph: beats JPEG q1 on {groups - len(lost)} of {groups} (photograph, whole/crops) groups"
                 + (f"; not on {', '.join(lost)}" if lost else ""))
    return "\n".join(lines)


def per_photograph_table(per_photograph: dict) -> str:
    """The per-photograph comparison with JPEG as a Markdown table (the default model's card and the README)."""
    entries = per_photograph["photographs"]
    full = entries[0]["full_tokens"]
    quality = entries[0]["jpeg"][0]["quality"]
    lines = [f"Per held-out photograph, the tokenizer at its full {full['num_tokens']} tokens "
             f"({full['bytes_per_image']:.1f} bytes per image) against JPEG's smallest file (quality {quality}); "
             "whole = the whole photograph as the image processor sees it, crops = tiles of its centre square "
             "(mean PSNR over the images):", "",
             f"| photograph | images | tokens PSNR (dB) | JPEG q{quality} PSNR (dB) | JPEG q{quality} bytes | "
             f"beats JPEG q{quality} |", "|---|---|---|---|---|---|"]
    rows = entries + [{"photo": "**all**", "kind": kind, **row}
                      for kind, row in per_photograph["by_kind"].items()]
    for row in rows:
        jpeg = row["jpeg"][0]
        lines.append(f"| {row['photo']} ({row['kind']}) | {row['num_images']} | {row['full_tokens']['psnr']:.2f} | "
                     f"{jpeg['psnr']:.2f} | {jpeg['bytes_per_image']:.0f} | "
                     f"{'yes' if row['beats_jpeg_q1'] else '**no**'} ({row['psnr_margin_over_jpeg_q1']:+.2f} dB) |")
    lost = per_photograph["not_beaten"]
    lines += ["", f"Not beaten: {', '.join(lost)}." if lost else "Every photograph, whole and cropped, is beaten."]
    return "\n".join(lines)
