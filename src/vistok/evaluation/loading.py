"""Inputs of ``vistok eval``: image folders and datasets as batches of PIL images, tokenizer/pipeline folders
(or hub ids) loaded generically, the image processor a tokenizer expects, and the metric networks."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


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
                try:
                    with PIL.Image.open(path) as image:
                        converted = image.convert("RGB")  # decodes the whole file: a truncated one fails here
                except (OSError, SyntaxError, ValueError) as err:  # PIL raises these for corrupt or non-image files
                    raise ValueError(f"--images: {path} is not a readable image ({type(err).__name__}: {err})") from err
                yield converted

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
    """(kind, model, folder): a pipeline when the folder has model_index.json, "samples" for a `vistok sample`
    output folder, else a tokenizer."""
    import vistok  # noqa: F401  (registers the Auto classes and pipeline classes)
    from ..utils.io import resolve_source

    from .sample import is_samples_folder

    folder = resolve_source(str(source))
    if is_samples_folder(folder):  # `vistok sample` output: scored as it is
        return "samples", folder, folder
    if (folder / "model_index.json").is_file():
        index = _read_json(folder / "model_index.json")
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

    _read_json(folder / "config.json")  # (transformers' own error for a corrupt config does not name the file)
    model = AutoModel.from_pretrained(str(folder))
    if not hasattr(model, "encode") or not hasattr(model.config, "token_layout"):
        raise ValueError(f"{folder} holds a {type(model).__name__}, not a vistok VisualTokenizer")
    return "tokenizer", model, folder


def _read_json(path: Path) -> dict:
    """A folder's JSON description, or a ValueError naming the file (not a bare JSONDecodeError)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not readable JSON ({err}): the folder is damaged or half-written; "
                         "convert or download it again") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


def _processor_for(model, folder: Path | None):
    from ..image_processing import VistokImageProcessor

    if folder is not None and (folder / "preprocessor_config.json").is_file():
        return VistokImageProcessor.from_pretrained(str(folder))
    return VistokImageProcessor.from_model_config(model.config)



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
