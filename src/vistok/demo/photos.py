"""The photographs the default model is trained and evaluated on, and how the crops are made.

Every photograph ships inside a package on PyPI (scikit-image, scikit-learn, matplotlib), so the
recipe runs offline once those are installed. The split is by photograph: the held-out photographs
(ten: a cat, a still life, faces, text, a page, a clock, a cell) never appear in training, in any crop. Training classes are the source
photographs, which is what the class-conditional generators are conditioned on. ``--whole-fraction`` makes a share of
each photograph's training crops the whole photograph (the shipped model was trained with none; see the README for
what a retrain with a quarter of whole photographs measured). For a tokenizer that has to generalise beyond 14
photographs: ``--dead-leaves N`` adds a class of N synthetic "dead leaves" images (occluding discs of random colour
and size, sizes power-law distributed as in natural images: every colour and edge a photograph can hold), and
``--permute-fraction`` swaps the colour channels of that share of the photographs' crops.

    pip install scikit-image scikit-learn matplotlib
    python -m vistok.demo.photos --output data/demo-photos
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path

import numpy as np
import PIL.Image

# class name -> photographs (package, name). Grey-scale photographs are used as RGB.
TRAIN_PHOTOS: dict[str, tuple[tuple[str, str], ...]] = {
    "astronaut": (("skimage", "astronaut"),),
    "rocket": (("skimage", "rocket"),),
    "hubble_deep_field": (("skimage", "hubble_deep_field"),),
    "retina": (("skimage", "retina"),),
    "immunohistochemistry": (("skimage", "immunohistochemistry"),),
    "camera": (("skimage", "camera"),),
    "brick": (("skimage", "brick"),),
    "grass": (("skimage", "grass"),),
    "gravel": (("skimage", "gravel"),),
    "coins": (("skimage", "coins"),),
    "moon": (("skimage", "moon"),),
    "motorcycle": (("skimage", "motorcycle_left"), ("skimage", "motorcycle_right")),
    "china": (("sklearn", "china.jpg"),),
    "flower": (("sklearn", "flower.jpg"),),
}
HELDOUT_PHOTOS: dict[str, tuple[str, str]] = {
    "chelsea": ("skimage", "chelsea"),            # CC0, Stefan van der Walt: a cat (skimage's "cat" is this photograph)
    "coffee": ("skimage", "coffee"),              # CC0, Rachel Michetti
    "grace_hopper": ("matplotlib", "grace_hopper.jpg"),  # public domain, U.S. Navy: a face
    "clock": ("skimage", "clock"),                # public domain, Stefan van der Walt: grey, motion-blurred
    "text": ("skimage", "text"),                  # public domain (Wikipedia File:Corner.png): grey, painted text
    "page": ("skimage", "page"),                  # scikit-image sample data: grey, a scanned printed page
    "cell": ("skimage", "cell"),                  # CC0: a quantitative phase image of a cell
    "face_a": ("skimage", "lfw_subset:0"),        # Labeled Faces in the Wild, 25 x 25 grey, via scikit-image
    "face_b": ("skimage", "lfw_subset:1"),
    "face_c": ("skimage", "lfw_subset:2"),
}
HELDOUT_GRIDS = (1, 2, 3, 4)  # n x n square crops of each held-out photograph's centre square (n = 1: the whole photograph)
# the crop grids of each held-out photograph: every one is also evaluated whole; the faces are too small to crop
HELDOUT_CROP_GRIDS: dict[str, tuple[int, ...]] = {
    "chelsea": (2, 3, 4), "coffee": (2, 3, 4), "grace_hopper": (2, 3, 4),
    "clock": (2, 3), "text": (2, 3), "page": (2, 3), "cell": (2, 3),
    "face_a": (), "face_b": (), "face_c": (),
}
WHOLE_SIZE = 32  # the whole photographs are stored as the default tokenizer's image processor sees them


def load_photo(package: str, name: str) -> PIL.Image.Image:
    """One photograph as an RGB PIL image, read from the installed package that ships it."""
    try:
        if package == "skimage":
            import skimage.data

            if name.startswith("motorcycle_"):
                left, right, _ = skimage.data.stereo_motorcycle()
                array = left if name.endswith("left") else right
            elif name.startswith("lfw_subset:"):  # one of the 100 faces (the first 100 of 200 crops)
                array = skimage.data.lfw_subset()[int(name.split(":")[1])]
            else:
                array = getattr(skimage.data, name)()
        elif package == "sklearn":
            import sklearn.datasets

            images = sklearn.datasets.load_sample_images()
            array = images.images[[Path(f).name for f in images.filenames].index(name)]
        elif package == "matplotlib":
            import matplotlib.cbook

            with matplotlib.cbook.get_sample_data(name) as handle:
                return PIL.Image.open(handle).convert("RGB")
        else:
            raise ValueError(f"unknown photo package {package!r}")
    except ImportError as err:
        raise ImportError(f"the demo photographs need {package}: pip install scikit-image scikit-learn matplotlib") from err
    array = np.asarray(array)
    if array.dtype != np.uint8:  # a few skimage images are bool/float
        array = (np.clip(array.astype(np.float64) / max(1.0, float(array.max())), 0, 1) * 255).round().astype(np.uint8)
    image = PIL.Image.fromarray(array)
    return image.convert("RGB")


def heldout_crops(image: PIL.Image.Image, size: int, grids=HELDOUT_GRIDS) -> list[tuple[int, PIL.Image.Image]]:
    """(n, crop) for the square crops tiling the centre square at each n x n of ``grids``, resized to ``size``."""
    width, height = image.size
    side = min(width, height)
    left0, top0 = (width - side) // 2, (height - side) // 2
    crops = []
    for n in grids:
        step = side / n
        for row in range(n):
            for column in range(n):
                box = tuple(int(round(v)) for v in (left0 + column * step, top0 + row * step,
                                                    left0 + (column + 1) * step, top0 + (row + 1) * step))
                crops.append((n, image.crop(box).resize((size, size), PIL.Image.BICUBIC)))
    return crops


def whole_photo(image: PIL.Image.Image, size: int = WHOLE_SIZE) -> PIL.Image.Image:
    """The whole photograph as vistok's image processor prepares it for a ``size`` px tokenizer: the shorter edge
    resized to ``size`` (bicubic), then the centre ``size`` x ``size`` square."""
    from ..image_processing import VistokImageProcessor

    processor = VistokImageProcessor(size=size, resample="bicubic")
    pixels = processor(images=[image], return_tensors="np").pixel_values[0]  # [3, size, size] in [0, 1]
    return PIL.Image.fromarray(np.clip(np.rint(pixels.transpose(1, 2, 0) * 255.0), 0, 255).astype(np.uint8), "RGB")


def heldout_kind(filename: str) -> tuple[str, str]:
    """(photograph, "whole" or "crops") of a held-out file name ``<n>x<n>_<photo>_<i>.png``."""
    grid, rest = filename.split("_", 1)
    photo = rest.rsplit("_", 1)[0]
    return photo, "whole" if grid == "1x1" else "crops"


def write_heldout(folder: str | os.PathLike, size: int = 64, whole_size: int = WHOLE_SIZE) -> list[Path]:
    """The held-out evaluation images: ``1x1_<photo>_00.png``, the whole photograph as the image processor sees it
    (``whole_size`` px), then ``<n>x<n>_<photo>_<i>.png``, the crops (``size`` px). File order puts the whole
    photographs first."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, (package, photo) in HELDOUT_PHOTOS.items():
        image = load_photo(package, photo)
        path = folder / f"1x1_{name}_00.png"
        whole_photo(image, whole_size).save(path)
        written.append(path)
        for i, (n, crop) in enumerate(heldout_crops(image, size, HELDOUT_CROP_GRIDS[name]), start=1):
            path = folder / f"{n}x{n}_{name}_{i:02d}.png"
            crop.save(path)
            written.append(path)
    return written


def random_crops(image: PIL.Image.Image, count: int, size: int, rng: np.random.Generator,
                 min_side: int, whole_fraction: float = 0.0) -> list[PIL.Image.Image]:
    """``count`` square crops resized to ``size``: the first ``round(count * whole_fraction)`` span the shorter edge
    (the whole photograph as the image processor's centre square sees it, at a random offset along the longer
    edge), the rest have side log-uniform in [min_side, shorter edge]."""
    width, height = image.size
    short = min(width, height)
    wholes = int(round(count * whole_fraction))
    crops = []
    for i in range(count):
        side = short if i < wholes else int(round(math.exp(rng.uniform(math.log(min(min_side, short)), math.log(short)))))
        left, top = int(rng.integers(0, width - side + 1)), int(rng.integers(0, height - side + 1))
        crops.append(image.crop((left, top, left + side, top + side)).resize((size, size), PIL.Image.BICUBIC))
    return crops


def dead_leaves(size: int, rng: np.random.Generator, *, min_radius: float | None = None, max_radius: float | None = None,
                oversample: int = 4, max_discs: int = 20000) -> PIL.Image.Image:
    """A "dead leaves" image (Lee, Mumford & Huang 2001): opaque discs of uniformly random RGB colour dropped on top of
    each other until they cover the square, radii drawn with density ~ r^-3 between ``min_radius`` and ``max_radius``
    (default 1/32 and 1/2 of the side: every octave of sizes covers about the same area, the scale-invariant
    statistics of natural images; smaller leaves would make confetti no downsampled photograph looks like). Drawn front to back (a
    disc only fills what the ones in front left uncovered) at ``oversample`` x the size, then box-filtered down, so
    edges are anti-aliased like a resized photograph's."""
    side = size * oversample
    max_radius = (max_radius or size / 2) * oversample
    min_radius = (min_radius or size / 32) * oversample
    canvas = np.zeros((side, side, 3), dtype=np.float64)
    uncovered = np.ones((side, side), dtype=bool)
    colour = np.full(3, 0.5)
    for _ in range(max_discs):
        # inverse CDF of p(r) ~ r^-3 on [min_radius, max_radius]
        u = rng.random()
        radius = (min_radius ** -2 - u * (min_radius ** -2 - max_radius ** -2)) ** -0.5
        cy, cx = rng.uniform(-radius, side + radius, size=2)
        top, bottom = max(0, int(cy - radius)), min(side, int(cy + radius) + 1)
        left, right = max(0, int(cx - radius)), min(side, int(cx + radius) + 1)
        if top >= bottom or left >= right:
            continue
        yy, xx = np.ogrid[top:bottom, left:right]  # only the disc's bounding box
        window = uncovered[top:bottom, left:right]
        disc = ((yy - cy) ** 2 + (xx - cx) ** 2 < radius ** 2) & window
        colour = rng.random(3)
        canvas[top:bottom, left:right][disc] = colour
        window &= ~disc
        if not uncovered.any():
            break
    else:  # the last specks no disc happened to reach: a background in the last disc's colour
        canvas[uncovered] = colour
    pixels = canvas.reshape(size, oversample, size, oversample, 3).mean(axis=(1, 3))
    return PIL.Image.fromarray(np.clip(np.rint(pixels * 255), 0, 255).astype(np.uint8), "RGB")


def build_photo_dataset(output: str | os.PathLike, *, crops_per_class: int = 320, train_size: int = 80,
                        heldout_size: int = 64, min_side: int = 48, whole_fraction: float = 0.0, dead_leaves_count: int = 0,
                        permute_fraction: float = 0.0, seed: int = 0, overwrite: bool = False) -> dict:
    """Write ``output/train/<class>/*.png`` (an imagefolder: labels are the class folders) and
    ``output/heldout/<photo>_<i>.png``; returns (and writes) the recipe as ``recipe.json``. ``whole_fraction`` of
    each photograph's crops are whole photographs (its full shorter edge); ``dead_leaves_count`` synthetic images
    make a class ``dead_leaves``; ``permute_fraction`` of the crops get their colour channels swapped (a random
    non-identity permutation). With both at 0 the recipe draws exactly what it drew before they existed."""
    from ..utils.io import atomic_output_dir

    if not 0.0 <= permute_fraction <= 1.0 or not 0.0 <= whole_fraction <= 1.0 or dead_leaves_count < 0:
        raise ValueError(f"whole_fraction and permute_fraction must lie in [0, 1] and dead_leaves_count be >= 0, got "
                         f"{whole_fraction}, {permute_fraction}, {dead_leaves_count}")
    rng = np.random.default_rng(seed)
    permutations = [(0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)]
    counts = {}
    with atomic_output_dir(output, overwrite=overwrite) as scratch:  # a missing package part-way leaves nothing behind
        for name, sources in TRAIN_PHOTOS.items():
            folder = scratch / "train" / name
            folder.mkdir(parents=True)
            per_photo = [crops_per_class // len(sources) + (i < crops_per_class % len(sources)) for i in range(len(sources))]
            index = 0
            for (package, photo), count in zip(sources, per_photo):
                for crop in random_crops(load_photo(package, photo), count, train_size, rng, min_side, whole_fraction):
                    if permute_fraction and rng.random() < permute_fraction:  # (no draw at 0: the old recipe's stream)
                        crop = PIL.Image.fromarray(np.asarray(crop)[..., list(permutations[rng.integers(5)])])
                    crop.save(folder / f"{index:04d}.png")
                    index += 1
            counts[name] = index
        if dead_leaves_count:
            folder = scratch / "train" / "dead_leaves"
            folder.mkdir(parents=True)
            for index in range(dead_leaves_count):
                dead_leaves(train_size, rng).save(folder / f"{index:04d}.png")
            counts["dead_leaves"] = dead_leaves_count
        write_heldout(scratch / "heldout", heldout_size)
        recipe = {"train_classes": counts, "train_size": train_size, "heldout_size": heldout_size, "min_side": min_side,
                  "whole_fraction": whole_fraction, "dead_leaves": dead_leaves_count, "permute_fraction": permute_fraction,
                  "seed": seed, "heldout_photos": list(HELDOUT_PHOTOS), "heldout_whole_size": WHOLE_SIZE,
                  "heldout_crop_grids": {name: list(grids) for name, grids in HELDOUT_CROP_GRIDS.items()}}
        (scratch / "recipe.json").write_text(json.dumps(recipe, indent=2) + "\n")
    return recipe


# recipe.json field -> (command-line option, build_photo_dataset parameter): what photos_command spells out
_RECIPE_OPTIONS = {"train_size": ("--train-size", "train_size"), "whole_fraction": ("--whole-fraction", "whole_fraction"),
                   "permute_fraction": ("--permute-fraction", "permute_fraction"),
                   "dead_leaves": ("--dead-leaves", "dead_leaves_count"), "seed": ("--seed", "seed")}


def photos_command(recipe: dict, output: str) -> str:
    """The ``python -m vistok.demo.photos`` command that writes ``recipe`` (a recipe.json) into ``output``, naming
    the options that differ from the defaults: model cards give exactly the data their model was trained on."""
    import inspect

    defaults = {name: p.default for name, p in inspect.signature(build_photo_dataset).parameters.items()}
    photo_counts = {n for name, n in recipe["train_classes"].items() if name != "dead_leaves"}
    fixed = {field: recipe.get(field, defaults[field]) for field in ("heldout_size", "min_side")}
    if len(photo_counts) != 1 or any(value != defaults[field] for field, value in fixed.items()):
        raise ValueError(f"recipe ({recipe['train_classes']}, {fixed}) was not written by the command line of "
                         "vistok.demo.photos")
    parts = ["python -m vistok.demo.photos", f"--output {output}"]
    if photo_counts != {defaults["crops_per_class"]}:
        parts.append(f"--crops-per-class {photo_counts.pop()}")
    for field, (option, parameter) in _RECIPE_OPTIONS.items():
        if recipe.get(field, defaults[parameter]) != defaults[parameter]:
            parts.append(f"{option} {recipe[field]}")
    return " ".join(parts)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", required=True)
    parser.add_argument("--crops-per-class", type=int, default=320)
    parser.add_argument("--train-size", type=int, default=80,
                        help="side of the stored training crops in px (default 80, for the shipped 32 px tokenizer)")
    parser.add_argument("--whole-fraction", type=float, default=0.0,
                        help="share of each photograph's crops that are the whole photograph (default 0, the shipped model)")
    parser.add_argument("--dead-leaves", type=int, default=0,
                        help="synthetic dead-leaves images to add as a class 'dead_leaves' (default 0, the shipped model)")
    parser.add_argument("--permute-fraction", type=float, default=0.0,
                        help="share of the photographs' crops with their colour channels swapped (default 0)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    args = parser.parse_args(argv)
    try:
        recipe = build_photo_dataset(args.output, crops_per_class=args.crops_per_class, train_size=args.train_size,
                                     whole_fraction=args.whole_fraction, dead_leaves_count=args.dead_leaves,
                                     permute_fraction=args.permute_fraction, seed=args.seed,
                                     overwrite=args.overwrite)
    except (ValueError, ImportError) as err:
        raise SystemExit(f"vistok.demo.photos: error: {err}") from err
    print(json.dumps(recipe, indent=2))


if __name__ == "__main__":
    main()
