"""Image datasets for training and evaluation, through Hugging Face ``datasets``.

``load_image_dataset`` accepts every form the training commands take: a hub dataset id (served from
the local cache when offline), a local imagefolder (class subfolders become labels, a
``metadata.jsonl`` adds captions), a folder written by ``save_to_disk``, and streaming. Columns are
checked up front, so a bad path or column name fails before any training starts.

``ImageTransform`` turns a batch of PIL images into model pixels (random-resized crop and flip for
training, shorter-edge resize and center crop for evaluation). When the batch carries an example index
column, each example's crop and flip come from a generator seeded by (seed, epoch, index), so they do not
depend on batch order, prefetching or resumption; otherwise they come from torch's global generator.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import PIL.Image
import torch

from .image_processing import VistokImageProcessor

_HUB_ID_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./")


def _is_saved_dataset(path: Path) -> bool:
    return (path / "dataset_dict.json").is_file() or (path / "state.json").is_file()


def load_image_dataset(source: str | os.PathLike, *, split: str = "train", streaming: bool = False,
                       image_column: str = "image", label_column: str | None = None,
                       caption_column: str | None = None, extra_columns: tuple[str, ...] = ()):
    """Load ``split`` of an image dataset and check that the named columns exist.

    Returns a ``datasets.Dataset`` (or ``IterableDataset`` when ``streaming``). ``image_column`` may be
    None for datasets that carry only other columns (e.g. pre-computed ``token_ids``).
    """
    import datasets

    source_str = os.fspath(source)
    path = Path(source_str).expanduser()
    if path.is_dir():
        from .training.tokenize import is_token_folder, load_token_folder

        if is_token_folder(path):
            loaded = load_token_folder(path)
            ds = loaded.to_iterable_dataset() if streaming else loaded
        elif any(path.glob("shard-*.parquet")) or any(path.glob("part-*.parquet")):
            raise ValueError(f"{source_str} is an unfinished `vistok tokenize` output (no manifest.json): "
                             "finish it with `vistok tokenize ... --resume`")
        elif _is_saved_dataset(path):
            loaded = datasets.load_from_disk(str(path))
            if isinstance(loaded, datasets.DatasetDict):
                if split not in loaded:
                    raise ValueError(f"dataset {source_str} has splits {sorted(loaded)}; split={split!r} is not one of them")
                loaded = loaded[split]
            ds = loaded.to_iterable_dataset() if streaming else loaded
        else:
            ds = _load(datasets, "imagefolder", source_str, split, streaming, data_dir=str(path))
    elif path.exists():
        raise ValueError(f"dataset {source_str} is a file: expected a folder (imagefolder or save_to_disk) or a hub dataset id")
    elif source_str.startswith((".", "/", "~")) or os.sep in source_str.strip("/").replace("/", "", 1) \
            or not set(source_str) <= _HUB_ID_CHARS:
        raise ValueError(f"dataset {source_str} does not exist: expected an existing folder or a hub dataset id like 'owner/name'")
    else:
        ds = _load_hub_dataset(datasets, source_str, split, streaming)

    columns = _column_names(ds)
    for role, name in (("image_column", image_column), ("label_column", label_column),
                       ("caption_column", caption_column), *(("column", c) for c in extra_columns)):
        if name is not None and columns is not None and name not in columns:
            raise ValueError(f"{role}={name!r} is not a column of {source_str}; its columns are {sorted(columns)}")
    return ds


def _load_hub_dataset(datasets, repo_id: str, split: str, streaming: bool):
    """A hub dataset id; offline (or unreachable), from the snapshot huggingface_hub has cached."""
    import huggingface_hub.constants as hub_constants

    if not hub_constants.HF_HUB_OFFLINE:
        try:
            return _load(datasets, repo_id, repo_id, split, streaming)
        except ValueError as err:
            if "split=" in str(err):
                raise
    from huggingface_hub import snapshot_download

    try:
        folder = snapshot_download(repo_id, repo_type="dataset", local_files_only=True)
    except Exception as err:  # LocalEntryNotFoundError and friends
        raise ValueError(f"dataset {repo_id} could not be loaded: it is not in the local hub cache and the hub "
                         f"cannot be reached ({type(err).__name__})") from err
    return _load(datasets, folder, repo_id, split, streaming)


def _load(datasets, name, source_str, split, streaming, **kwargs):
    try:
        return datasets.load_dataset(name, split=split, streaming=streaming, **kwargs)
    except ValueError as err:
        if "split" in str(err).lower():
            raise ValueError(f"dataset {source_str}: split={split!r} does not exist ({err})") from err
        raise
    except FileNotFoundError as err:
        raise ValueError(f"dataset {source_str} could not be found locally or in the hub cache: {err}") from err
    except Exception as err:  # datasets raises ConnectionError/DatasetNotFoundError when offline and uncached
        if type(err).__name__ in {"DatasetNotFoundError", "ConnectionError", "OfflineModeIsEnabled", "EmptyDatasetError"}:
            raise ValueError(f"dataset {source_str} could not be loaded: {err}") from err
        raise


def _column_names(ds):
    names = getattr(ds, "column_names", None)
    if names is None and getattr(ds, "features", None) is not None:
        names = list(ds.features)
    return names


class ImageTransform:
    """Batch transform for ``Dataset.with_transform``: PIL images -> ``pixel_values`` in ``pixel_range``.

    Training: random-resized crop (area fraction in ``crop_scale``, aspect ratio log-uniform in
    ``crop_ratio``, as torchvision's RandomResizedCrop) then a horizontal flip with probability 0.5.
    Evaluation (``train=False``): the image processor's shorter-edge resize and center crop. Labels and
    captions (when their columns are given) pass through as ``labels`` (LongTensor) and ``captions``.
    """

    def __init__(self, image_size: int, pixel_range=(0.0, 1.0), *, train: bool = True, crop_scale=(0.8, 1.0),
                 crop_ratio=(3 / 4, 4 / 3), random_flip: bool = True, image_column: str = "image",
                 label_column: str | None = None, caption_column: str | None = None,
                 passthrough_columns: tuple[str, ...] = (), index_column: str = "__vistok_index__", seed: int = 0):
        low, high = (float(v) for v in crop_scale)
        if not 0 < low <= high <= 1:
            raise ValueError(f"crop_scale must be (low, high) with 0 < low <= high <= 1, got {crop_scale!r}")
        if not 0 < float(crop_ratio[0]) <= float(crop_ratio[1]):
            raise ValueError(f"crop_ratio must be (low, high) with 0 < low <= high, got {crop_ratio!r}")
        self.processor = VistokImageProcessor(size=image_size, pixel_range=pixel_range)
        self.image_size, self.train = image_size, train
        self.crop_scale, self.crop_ratio, self.random_flip = (low, high), tuple(float(v) for v in crop_ratio), random_flip
        self.image_column, self.label_column, self.caption_column = image_column, label_column, caption_column
        self.passthrough_columns = tuple(passthrough_columns)
        self.index_column, self.seed, self.epoch = index_column, seed, 0

    def _random_resized_crop(self, image: PIL.Image.Image, generator: torch.Generator | None) -> PIL.Image.Image:
        width, height = image.size
        area = width * height
        log_ratio = (math.log(self.crop_ratio[0]), math.log(self.crop_ratio[1]))
        for _ in range(10):
            draws = torch.rand(2, generator=generator)
            target_area = area * (self.crop_scale[0] + (self.crop_scale[1] - self.crop_scale[0]) * float(draws[0]))
            ratio = math.exp(log_ratio[0] + (log_ratio[1] - log_ratio[0]) * float(draws[1]))
            w = int(round(math.sqrt(target_area * ratio)))
            h = int(round(math.sqrt(target_area / ratio)))
            if 0 < w <= width and 0 < h <= height:
                top = int(torch.randint(0, height - h + 1, (1,), generator=generator))
                left = int(torch.randint(0, width - w + 1, (1,), generator=generator))
                break
        else:  # fall back to the largest center crop of an allowed ratio
            side = min(width, height)
            w = h = side
            top, left = (height - side) // 2, (width - side) // 2
        crop = image.crop((left, top, left + w, top + h))
        return crop.resize((self.image_size, self.image_size), PIL.Image.BICUBIC)

    def pixels(self, images, indices=None) -> torch.Tensor:
        out = []
        for n, image in enumerate(images):
            generator = None
            if indices is not None:
                generator = torch.Generator().manual_seed(hash((self.seed, self.epoch, int(indices[n]))) & 0x7FFF_FFFF_FFFF)
            if not isinstance(image, PIL.Image.Image):
                raise TypeError(f"the {self.image_column!r} column must hold images, got {type(image).__name__}")
            image = image.convert("RGB")
            if self.train:
                image = self._random_resized_crop(image, generator)
                if self.random_flip and float(torch.rand((), generator=generator)) < 0.5:
                    image = image.transpose(PIL.Image.FLIP_LEFT_RIGHT)
            out.append(self.processor(images=[image], return_tensors="pt").pixel_values[0])
        return torch.stack(out)

    def __call__(self, batch: dict) -> dict:
        out = {"pixel_values": self.pixels(batch[self.image_column], batch.get(self.index_column))}
        if self.label_column is not None:
            out["labels"] = torch.as_tensor(batch[self.label_column], dtype=torch.long)
        if self.caption_column is not None:
            out["captions"] = list(batch[self.caption_column])
        for name in self.passthrough_columns:
            out[name] = batch[name]
        return out


def collate_examples(examples: list[dict]) -> dict:
    """DataLoader collate for transformed examples: stack tensors, keep lists of strings."""
    batch = {}
    for key in examples[0]:
        values = [example[key] for example in examples]
        batch[key] = torch.stack(values) if isinstance(values[0], torch.Tensor) else (
            torch.as_tensor(values) if isinstance(values[0], (int, float)) or (isinstance(values[0], list) and values[0]
                                                                           and isinstance(values[0][0], int)) else values)
    return batch
