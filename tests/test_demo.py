"""The default model shipped inside the package and `vistok demo`: offline outputs, the figures `vistok eval`
reproduces, a monotone rate-distortion curve on held-out photographs, and the JPEG comparison it claims."""

from __future__ import annotations

import json
import math
import shlex

import numpy as np
import PIL.Image
import pytest

import vistok.demo as demo
from vistok.cli import main as cli_main
from vistok.demo.photos import HELDOUT_GRIDS, HELDOUT_PHOTOS, heldout_crops


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    assert cli_main(["demo", "--output", str(out)]) == 0
    return out, json.loads((out / "demo.json").read_text())


def test_the_shipped_tokenizer_is_a_small_variable_length_1d_tokenizer():
    tokenizer = demo.load_default_tokenizer()
    config = tokenizer.config
    assert config.model_type == "vistok_one_d_piece" and config.variable_length and config.token_layout == "1d"
    assert (demo.DEFAULT_TOKENIZER / "model.safetensors").stat().st_size <= 16 * 2**20
    for folder in (demo.DEFAULT_TOKENIZER, demo.DEFAULT_PIPELINE):
        card = (folder / "README.md").read_text()
        assert "vistok train" in card and "vistok.demo.photos" in card, folder
    pipe = demo.load_default_pipeline()
    names = pipe.transformer.config.id2label
    assert sorted(names.values()) == sorted(demo.photos.TRAIN_PHOTOS)
    assert pipe.transformer.config.codebook_size == config.codebook_size


def test_heldout_images_are_the_documented_crops_of_photographs_kept_out_of_training():
    files = sorted(p.name for p in demo.HELDOUT_IMAGES.glob("*.png"))
    per_photo = sum(n * n for n in HELDOUT_GRIDS)
    assert len(files) == per_photo * len(HELDOUT_PHOTOS)
    assert not set(HELDOUT_PHOTOS) & set(demo.photos.TRAIN_PHOTOS)
    assert files[:len(HELDOUT_PHOTOS)] == sorted(f"1x1_{name}_00.png" for name in HELDOUT_PHOTOS)
    with PIL.Image.open(demo.HELDOUT_IMAGES / files[0]) as image:
        assert image.size == (64, 64) and image.mode == "RGB"
    # the tiling itself, on a synthetic photograph: the 1x1 crop is the centre square
    photo = PIL.Image.fromarray(np.arange(40 * 60 * 3, dtype=np.uint32).reshape(40, 60, 3).astype(np.uint8))
    crops = heldout_crops(photo, 8)
    assert [n for n, _ in crops] == [n for n in HELDOUT_GRIDS for _ in range(n * n)]
    expected = photo.crop((10, 0, 50, 40)).resize((8, 8), PIL.Image.BICUBIC)
    assert np.array_equal(np.asarray(crops[0][1]), np.asarray(expected))


def test_heldout_images_are_reproduced_by_the_recipe(tmp_path):
    pytest.importorskip("skimage")
    pytest.importorskip("matplotlib")
    written = demo.photos.write_heldout(tmp_path)
    assert sorted(p.name for p in written) == sorted(p.name for p in demo.HELDOUT_IMAGES.glob("*.png"))
    for path in written:
        assert np.array_equal(np.asarray(PIL.Image.open(path)), np.asarray(PIL.Image.open(demo.HELDOUT_IMAGES / path.name)))


def test_demo_writes_every_output(demo_run):
    out, summary = demo_run
    for name in ("reconstructions.png", "rate_distortion.png", "samples.png", "demo.json", "tokenizer/results.json",
                 "pipeline/results.json"):
        assert (out / name).is_file(), name
    assert len(list((out / "heldout").glob("*.png"))) == summary["heldout_images"] == 90
    counts = [row["num_tokens"] for row in summary["reconstruction"]]
    assert counts == [2**i for i in range(len(counts))] and counts[-1] == demo.load_default_tokenizer().config.num_tokens
    with PIL.Image.open(out / "reconstructions.png") as grid:  # original + one column per token count
        assert grid.size[0] > (len(counts) + 1) * 96 and grid.size[1] > demo.DEMO_GRID_IMAGES * 96
    with PIL.Image.open(out / "samples.png") as grid:
        assert grid.size[0] > 4 * 96 and grid.size[1] > 4 * 96
    assert len(summary["samples"]["class_labels"]) == demo.DEMO_SAMPLES
    assert set(summary["samples"]["class_labels"]) == set(demo.photos.TRAIN_PHOTOS)
    with PIL.Image.open(out / "rate_distortion.png") as plot:
        assert plot.size[0] > 500


def test_rate_distortion_curve_of_the_shipped_tokenizer_is_monotone(demo_run):
    _, summary = demo_run
    rows = summary["reconstruction"]
    for key in ("bytes_per_image", "psnr", "ssim"):
        values = [row[key] for row in rows]
        assert all(b > a for a, b in zip(values, values[1:])), (key, values)
    assert rows[0]["bytes_per_image"] == pytest.approx(math.log2(summary["codebook_size"]) / 8)


def test_shipped_tokenizer_beats_jpeg_at_its_lowest_rate_settings(demo_run):
    """More PSNR in no more bytes than JPEG at quality 1 (JPEG's lowest rate): the claim of the README and card."""
    _, summary = demo_run
    jpeg = {p["quality"]: p for p in summary["jpeg"]}
    assert 1 in summary["beats_jpeg"]["jpeg_qualities_beaten"]
    rows = {row["num_tokens"]: row for row in summary["reconstruction"]}
    for k in summary["beats_jpeg"]["by_quality"]["1"]:  # JSON keys are strings
        assert rows[k]["bytes_per_image"] <= jpeg[1]["bytes_per_image"] and rows[k]["psnr"] > jpeg[1]["psnr"]


def test_vistok_eval_reproduces_the_demo_figures(demo_run, tmp_path):
    out, summary = demo_run
    commands = summary["reproduce"]
    eval_dir = tmp_path / "tokenizer"
    argv = shlex.split(commands["tokenizer"].replace("EVAL_DIR", str(eval_dir)))
    assert argv[:2] == ["vistok", "eval"] and cli_main(argv[1:]) == 0
    again = json.loads((eval_dir / "results.json").read_text())
    first = json.loads((out / "tokenizer" / "results.json").read_text())
    for a, b in zip(again["results"], first["results"]):
        assert (a["num_tokens"], a["psnr"], a["ssim"]) == (b["num_tokens"], b["psnr"], b["ssim"])
    assert again["rate_distortion"]["jpeg"] == first["rate_distortion"]["jpeg"]
    assert (eval_dir / "reconstructions.png").read_bytes() == (out / "reconstructions.png").read_bytes()
    samples_dir = tmp_path / "pipeline"
    argv = shlex.split(commands["pipeline"].replace("EVAL_DIR", str(samples_dir)))
    assert cli_main(argv[1:]) == 0
    assert (samples_dir / "samples.png").read_bytes() == (out / "samples.png").read_bytes()


def test_demo_refuses_a_non_empty_output_and_keeps_it(tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert cli_main(["demo", "--output", str(out)]) == 2
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["taken"]  # no scratch folder left behind


def test_photo_recipe_writes_an_imagefolder_and_leaves_nothing_when_a_package_is_missing(tmp_path, monkeypatch):
    import vistok.demo.photos as photos

    photo = PIL.Image.fromarray(np.random.default_rng(0).integers(0, 255, (90, 120, 3), dtype=np.uint8))
    monkeypatch.setattr(photos, "load_photo", lambda package, name: photo)
    recipe = photos.build_photo_dataset(tmp_path / "ok", crops_per_class=3)
    assert recipe["train_classes"] == {name: 3 for name in photos.TRAIN_PHOTOS}
    assert sorted(p.name for p in (tmp_path / "ok" / "train").iterdir()) == sorted(photos.TRAIN_PHOTOS)
    assert len(list((tmp_path / "ok" / "heldout").glob("*.png"))) == 90
    with pytest.raises(ValueError, match="not empty"):
        photos.build_photo_dataset(tmp_path / "ok", crops_per_class=3)

    def missing(package, name):
        if package == "sklearn":
            raise ImportError("the demo photographs need sklearn")
        return photo

    monkeypatch.setattr(photos, "load_photo", missing)
    with pytest.raises(ImportError, match="sklearn"):
        photos.build_photo_dataset(tmp_path / "bad", crops_per_class=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok"]  # no partial folder, no scratch
