"""The default model shipped inside the package, and ``vistok demo``.

``DEFAULT_PIPELINE`` is a MaskGIT pipeline folder (``model_index.json``, ``image_tokenizer/``,
``transformer/``, each with its card) trained with ``vistok train`` on crops of real photographs
(``vistok.demo.photos``); ``DEFAULT_TOKENIZER`` is its 1D variable-length tokenizer, a plain
transformers model folder. ``HELDOUT_IMAGES`` holds the crops of the photographs kept out of training.

``vistok demo`` reconstructs the held-out crops at 1, 2, 4, ... tokens, scores them against JPEG and
WebP, samples every class, and writes the figures and one JSON. Everything is ``vistok eval`` underneath,
so the figures can be reproduced with the commands the JSON records.
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
HELDOUT_IMAGES = ASSETS / "heldout"
DEMO_GRID_IMAGES = 6  # reconstruction rows: the three whole photographs, then the first crops
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


def _check_assets() -> None:
    missing = [str(p) for p in (DEFAULT_PIPELINE / "model_index.json", DEFAULT_TOKENIZER / "model.safetensors",
                                DEFAULT_PIPELINE / "transformer" / "model.safetensors", HELDOUT_IMAGES) if not p.exists()]
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
    }


def run_demo(output: str | os.PathLike = "vistok-demo", *, overwrite: bool = False, progress: bool = True) -> dict:
    """Write into ``output``: ``heldout/`` (the images), ``reconstructions.png``, ``rate_distortion.png``,
    ``samples.png``, ``demo.json`` (all figures) and the full ``tokenizer/`` and ``pipeline/`` eval reports.

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
        for name, folder in (("reconstructions.png", "tokenizer"), ("rate_distortion.png", "tokenizer"),
                             ("samples.png", "pipeline")):
            shutil.copyfile(scratch / folder / name, scratch / name)
        summary = _summary(tokenizer_report, pipeline_report)
        summary["seconds"] = {"tokenizer_eval": round(tokenizer_seconds, 2),
                              "total": round(time.perf_counter() - start, 2)}
        summary["reproduce"] = eval_commands(output)
        (scratch / "demo.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _summary(tokenizer_report: dict, pipeline_report: dict) -> dict:
    rd = tokenizer_report["rate_distortion"]
    by_count = {p["num_tokens"]: p for p in rd["tokenizer"]}
    tokenizer = [{"num_tokens": r["num_tokens"], "bytes_per_image": r["bytes_per_image"], "psnr": r["psnr"],
                  "ssim": r["ssim"], "codebook_usage": r.get("codebook_usage")}
                 for r in tokenizer_report["results"] if r["num_tokens"] in by_count]
    jpeg = rd["dominance"]["jpeg"]
    pipe = json.loads((DEFAULT_PIPELINE / "transformer" / "config.json").read_text())
    names = pipe.get("id2label") or {}
    classes = [names.get(str(c), str(c)) for c in range(int(pipe["num_classes"]))]
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
        "samples": {"pipeline": str(DEFAULT_PIPELINE), "num_images": pipeline_report["num_images"],
                    "class_labels": [classes[i % len(classes)] for i in range(pipeline_report["num_images"])],
                    "images_per_s": pipeline_report["images_per_s"]},
        "conventions": tokenizer_report["conventions"],
        "files": {"reconstructions": "reconstructions.png", "rate_distortion": "rate_distortion.png",
                  "samples": "samples.png", "tokenizer_eval": "tokenizer/results.json",
                  "pipeline_eval": "pipeline/results.json", "heldout_images": "heldout/"},
    }
