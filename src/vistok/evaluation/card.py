"""Write ``vistok eval`` results into a model card's ``model-index`` metadata (huggingface_hub EvalResult)."""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

# (report key, metric type on the hub, display name)
_RECONSTRUCTION_METRICS = (("psnr", "psnr", "PSNR"), ("ssim", "ssim", "SSIM"), ("lpips", "lpips", "LPIPS"),
                           ("rfid", "fid", "rFID"), ("codebook_usage", "codebook_usage", "Codebook usage"))
_GENERATION_METRICS = (("gfid", "fid", "gFID"), ("inception_score", "inception_score", "IS"))


def _tokens(count: int) -> str:
    return f"{count} token" if count == 1 else f"{count} tokens"


def eval_results(report: dict) -> list:
    """EvalResult entries for every finite figure in a ``vistok eval`` report."""
    from huggingface_hub import EvalResult

    source = report.get("source") or {}
    if source.get("dataset"):
        dataset_type = dataset_name = str(source["dataset"])
    elif source.get("images"):
        dataset_type, dataset_name = "imagefolder", Path(source["images"]).name
    else:
        dataset_type = dataset_name = "samples"
    common = dict(dataset_type=dataset_type, dataset_name=dataset_name, dataset_split=source.get("split"))
    entries = []
    if report["kind"] == "tokenizer":
        for row in report["results"]:
            for key, metric_type, name in _RECONSTRUCTION_METRICS:
                value = row.get(key)
                if value is None or not math.isfinite(value):
                    continue
                entries.append(EvalResult(task_type="image-to-image", task_name="Image reconstruction",
                                          metric_type=metric_type, metric_name=f"{name} ({_tokens(row['num_tokens'])})",
                                          metric_value=round(float(value), 4), metric_config=f"num_tokens={row['num_tokens']}",
                                          metric_args={"num_images": report["num_images"]}, **common))
    else:
        for key, metric_type, name in _GENERATION_METRICS:
            value = report.get(key)
            if value is None or not math.isfinite(value):
                continue
            entries.append(EvalResult(task_type="unconditional-image-generation", task_name="Class-conditional generation",
                                      metric_type=metric_type, metric_name=name, metric_value=round(float(value), 4),
                                      metric_args={"num_images": report["num_images"], "seed": report["seed"]},
                                      **{**common, "dataset_type": "samples", "dataset_name": "samples"}))
    return entries


def write_card_results(card_path: str | os.PathLike, report: dict, model_name: str) -> Path:
    """Replace the ``model-index`` results of the card at ``card_path`` (created if missing) with this report's."""
    from huggingface_hub import ModelCard, ModelCardData

    path = Path(card_path).expanduser()
    if path.is_dir():
        path = path / "README.md"
    card = ModelCard.load(path) if path.is_file() else ModelCard(f"---\n---\n\n# {model_name}\n")
    data = card.data if card.data is not None else ModelCardData()
    data.model_name = data.model_name or model_name
    data.eval_results = eval_results(report)
    card.data = data
    text = str(card)
    fd, scratch = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(scratch, path)
    return path
