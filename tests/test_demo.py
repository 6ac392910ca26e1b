"""The default model shipped inside the package and `vistok demo`: offline outputs, the figures `vistok eval`
reproduces, a monotone rate-distortion curve on held-out photographs, and the JPEG comparison it claims."""

from __future__ import annotations

import contextlib
import io
import json
import math
import shlex

import numpy as np
import PIL.Image
import pytest

import vistok.demo as demo
from vistok.cli import main as cli_main
from vistok.demo.photos import HELDOUT_CROP_GRIDS, HELDOUT_GRIDS, HELDOUT_PHOTOS, heldout_crops, heldout_kind, whole_photo
from vistok.evaluation.rate_distortion import psnr_uint8, reconstruction_grid, sample_grid, token_heading

HELDOUT_COUNT = sum(1 + sum(n * n for n in HELDOUT_CROP_GRIDS[name]) for name in HELDOUT_PHOTOS)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert cli_main(["demo", "--output", str(out)]) == 0
    summary = json.loads((out / "demo.json").read_text())
    summary["_printed"] = printed.getvalue()
    return out, summary


def test_the_shipped_tokenizer_is_a_small_variable_length_1d_tokenizer():
    tokenizer = demo.load_default_tokenizer()
    config = tokenizer.config
    assert config.model_type == "vistok_one_d_piece" and config.variable_length and config.token_layout == "1d"
    assert (demo.DEFAULT_TOKENIZER / "model.safetensors").stat().st_size <= 16 * 2**20
    for folder in (demo.DEFAULT_TOKENIZER, demo.DEFAULT_PIPELINE, demo.DEFAULT_AR_PIPELINE):
        card = (folder / "README.md").read_text()
        assert "vistok train" in card and "vistok.demo.photos" in card, folder
    pipe = demo.load_default_pipeline()
    names = pipe.transformer.config.id2label
    assert sorted(names.values()) == sorted(demo.photos.TRAIN_PHOTOS)
    assert pipe.transformer.config.codebook_size == config.codebook_size


def test_heldout_images_are_the_documented_crops_of_photographs_kept_out_of_training():
    files = sorted(p.name for p in demo.HELDOUT_IMAGES.glob("*.png"))
    assert len(files) == HELDOUT_COUNT == 149
    assert set(HELDOUT_CROP_GRIDS) == set(HELDOUT_PHOTOS)
    assert not set(HELDOUT_PHOTOS) & set(demo.photos.TRAIN_PHOTOS)
    assert not {source for source in HELDOUT_PHOTOS.values()} & {s for v in demo.photos.TRAIN_PHOTOS.values() for s in v}
    # the whole photographs sort first (the reconstruction grid's rows), one per photograph
    assert files[:len(HELDOUT_PHOTOS)] == sorted(f"1x1_{name}_00.png" for name in HELDOUT_PHOTOS)
    assert demo.DEMO_GRID_IMAGES == len(HELDOUT_PHOTOS)
    kinds = [heldout_kind(name) for name in files]
    assert {photo for photo, _ in kinds} == set(HELDOUT_PHOTOS)
    for name in HELDOUT_PHOTOS:
        assert kinds.count((name, "whole")) == 1
        assert kinds.count((name, "crops")) == sum(n * n for n in HELDOUT_CROP_GRIDS[name])
    with PIL.Image.open(demo.HELDOUT_IMAGES / files[0]) as image:  # whole: as the 32 px processor sees it
        assert image.size == (32, 32) and image.mode == "RGB"
    with PIL.Image.open(demo.HELDOUT_IMAGES / "2x2_chelsea_01.png") as image:
        assert image.size == (64, 64) and image.mode == "RGB"
    # the tiling itself, on a synthetic photograph: the 1x1 crop is the centre square
    photo = PIL.Image.fromarray(np.arange(40 * 60 * 3, dtype=np.uint32).reshape(40, 60, 3).astype(np.uint8))
    crops = heldout_crops(photo, 8)
    assert [n for n, _ in crops] == [n for n in HELDOUT_GRIDS for _ in range(n * n)]
    expected = photo.crop((10, 0, 50, 40)).resize((8, 8), PIL.Image.BICUBIC)
    assert np.array_equal(np.asarray(crops[0][1]), np.asarray(expected))
    # the whole photograph: what the default tokenizer's processor makes of the photograph itself
    from transformers import AutoImageProcessor

    processor = AutoImageProcessor.from_pretrained(str(demo.DEFAULT_TOKENIZER))
    pixels = processor(images=[photo], return_tensors="np").pixel_values[0]
    assert np.array_equal(np.asarray(whole_photo(photo)), np.rint(pixels.transpose(1, 2, 0) * 255).astype(np.uint8))


def test_heldout_images_are_reproduced_by_the_recipe(tmp_path):
    pytest.importorskip("skimage")
    pytest.importorskip("matplotlib")
    written = demo.photos.write_heldout(tmp_path)
    assert sorted(p.name for p in written) == sorted(p.name for p in demo.HELDOUT_IMAGES.glob("*.png"))
    for path in written:
        assert np.array_equal(np.asarray(PIL.Image.open(path)), np.asarray(PIL.Image.open(demo.HELDOUT_IMAGES / path.name)))


def test_demo_writes_every_output(demo_run):
    out, summary = demo_run
    for name in ("reconstructions.png", "rate_distortion.png", "samples.png", "samples_ar.png", "demo.json",
                 "tokenizer/results.json", "pipeline/results.json", "ar_pipeline/results.json"):
        assert (out / name).is_file(), name
    assert len(list((out / "heldout").glob("*.png"))) == summary["heldout_images"] == HELDOUT_COUNT
    counts = [row["num_tokens"] for row in summary["reconstruction"]]
    assert counts == [2**i for i in range(len(counts))] and counts[-1] == demo.load_default_tokenizer().config.num_tokens
    with PIL.Image.open(out / "reconstructions.png") as grid:  # original + one column per token count
        assert grid.size[0] > (len(counts) + 1) * 96 and grid.size[1] > demo.DEMO_GRID_IMAGES * 96
    for samples, key in (("samples.png", "samples"), ("samples_ar.png", "ar_samples")):
        with PIL.Image.open(out / samples) as grid:
            assert grid.size[0] > 4 * 96 and grid.size[1] > 4 * 96
        assert len(summary[key]["class_labels"]) == demo.DEMO_SAMPLES
        assert set(summary[key]["class_labels"]) == set(demo.photos.TRAIN_PHOTOS)
    with PIL.Image.open(out / "rate_distortion.png") as plot:
        assert plot.size[0] > 500


def test_demo_prints_where_each_picture_is_and_what_it_shows(demo_run):
    out, summary = demo_run
    printed = summary["_printed"]
    assert printed == demo.format_summary({k: v for k, v in summary.items() if k != "_printed"}, out) + \
        f"\nwrote {out} in {summary['seconds']['total']:.1f} s\n"
    for name in ("reconstructions.png", "rate_distortion.png", "samples.png", "samples_ar.png", "demo.json",
                 "tokenizer/results.json", "pipeline/results.json", "ar_pipeline/results.json", "heldout"):
        assert str(out / name) in printed, name
        assert (out / name).exists(), name
    for words in ("'original' column", "PSNR in dB", "labelled with their token count", "captioned with its class",
                  "bytes per image", "1 token ", f"{demo.load_default_tokenizer().config.num_tokens} tokens",
                  "autoregressive generator"):
        assert words in printed, words
    for entry in summary["per_photograph"]["not_beaten"]:
        assert entry in printed


def test_demo_scores_every_heldout_photograph_whole_and_cropped_against_jpeg(demo_run):
    _, summary = demo_run
    per_photo = summary["per_photograph"]
    entries = per_photo["photographs"]
    expected = [(name, kind) for name in HELDOUT_PHOTOS for kind in ("whole", "crops")
                if kind == "whole" or HELDOUT_CROP_GRIDS[name]]
    assert [(e["photo"], e["kind"]) for e in entries] == expected
    assert sum(e["num_images"] for e in entries) == summary["heldout_images"]
    full = demo.load_default_tokenizer().config.num_tokens
    for entry in entries + list(per_photo["by_kind"].values()):
        assert entry["num_images"] == (1 if entry.get("kind") == "whole" else entry["num_images"])
        assert entry["full_tokens"]["num_tokens"] == full
        assert [p["quality"] for p in entry["jpeg"]] == list(demo.LOWEST_JPEG_QUALITIES)
        q1 = entry["jpeg"][0]
        beats = entry["full_tokens"]["bytes_per_image"] <= q1["bytes_per_image"] and entry["full_tokens"]["psnr"] > q1["psnr"]
        assert entry["beats_jpeg_q1"] == beats
        assert entry["psnr_margin_over_jpeg_q1"] == pytest.approx(entry["full_tokens"]["psnr"] - q1["psnr"])
    assert per_photo["by_kind"]["whole"]["num_images"] == len(HELDOUT_PHOTOS)
    assert per_photo["not_beaten"] == [f"{e['photo']} ({e['kind']})" for e in entries if not e["beats_jpeg_q1"]]
    # the pooled full-token PSNR is the mean over the same images the whole demo scores
    pooled = per_photo["by_kind"]
    n_whole, n_crops = pooled["whole"]["num_images"], pooled["crops"]["num_images"]
    mean = (pooled["whole"]["full_tokens"]["psnr"] * n_whole + pooled["crops"]["full_tokens"]["psnr"] * n_crops) / (n_whole + n_crops)
    assert mean == pytest.approx(summary["reconstruction"][-1]["psnr"], abs=0.05)


def test_cards_and_readme_carry_the_per_photograph_comparison(demo_run):
    """The default model's cards and the README show the table vistok demo computes (same photographs, same verdicts)."""
    _, summary = demo_run
    per_photo = summary["per_photograph"]
    readme = (demo.ASSETS.parents[2] / "README.md")
    texts = [(demo.DEFAULT_PIPELINE / "README.md").read_text(), (demo.DEFAULT_TOKENIZER / "README.md").read_text()]
    if readme.is_file():  # a source checkout
        texts.append(readme.read_text())
    for text in texts:
        for entry in per_photo["photographs"]:
            verdict = "yes" if entry["beats_jpeg_q1"] else "**no**"
            row = [line for line in text.splitlines() if line.startswith(f"| {entry['photo']} ({entry['kind']}) |")]
            assert len(row) == 1 and f"| {verdict} (" in row[0], (entry["photo"], entry["kind"], row)
            cells = row[0].split("|")
            assert float(cells[3]) == pytest.approx(entry["full_tokens"]["psnr"], abs=0.02)
            assert float(cells[4]) == pytest.approx(entry["jpeg"][0]["psnr"], abs=0.02)


def test_figures_carry_their_labels(tmp_path):
    assert token_heading(1) == "1 token" and token_heading(32, 48.4) == "32 tokens, 48.4 B"
    a = np.zeros((4, 4, 3), np.uint8)
    b = a.copy()
    b[0, 0, 0] = 255
    assert psnr_uint8(a, a) == math.inf
    assert psnr_uint8(b, a) == pytest.approx(10 * math.log10(255**2 / (255**2 / 48)))
    rng = np.random.default_rng(0)
    originals = rng.integers(0, 255, (2, 8, 8, 3), dtype=np.uint8)
    grid = reconstruction_grid(originals, {1: originals[::-1].copy(), 2: originals.copy()}, tmp_path / "r.png",
                               codebook_size=4375)
    with PIL.Image.open(grid) as image:
        pixels = np.asarray(image)
    # headings above the tiles and a PSNR label drawn over each reconstruction (dark box), none over the originals
    assert (pixels[:16] < 128).any()
    tile = 96
    first_reconstruction = pixels[18 + 2: 18 + 2 + tile, 2 + tile + 2: 2 + 2 * tile + 2]
    assert (first_reconstruction[-15:, :40] == 0).all(axis=-1).mean() > 0.3
    samples = rng.integers(0, 255, (3, 8, 8, 3), dtype=np.uint8)
    plain = sample_grid(samples, tmp_path / "plain.png")
    captioned = sample_grid(samples, tmp_path / "captioned.png", captions=["astronaut", "a_very_long_class_name_indeed", "c"])
    with PIL.Image.open(plain) as a_image, PIL.Image.open(captioned) as b_image:
        assert b_image.size[0] == a_image.size[0] and b_image.size[1] > a_image.size[1]
        caption_strip = np.asarray(b_image)[tile + 2: tile + 2 + 16]
        assert (caption_strip < 128).any()
    with pytest.raises(ValueError, match="caption per sample"):
        sample_grid(samples, tmp_path / "x.png", captions=["a"])


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
    ar_dir = tmp_path / "ar_pipeline"
    assert cli_main(shlex.split(commands["ar_pipeline"].replace("EVAL_DIR", str(ar_dir)))[1:]) == 0
    assert (ar_dir / "samples.png").read_bytes() == (out / "samples_ar.png").read_bytes()


def test_default_ar_pipeline_shares_the_tokenizer_and_decodes_with_each_strategy():
    """The shipped LlamaGen generator runs over the very tokenizer of the MaskGIT pipeline, and every decoding
    strategy that applies to 1D tokens generates from it (ZipAR, rows of a 2D grid, is refused)."""
    import torch

    ar_tokenizer = demo.DEFAULT_AR_PIPELINE / "image_tokenizer" / "model.safetensors"
    assert ar_tokenizer.read_bytes() == (demo.DEFAULT_TOKENIZER / "model.safetensors").read_bytes()
    pipe = demo.load_default_ar_pipeline()
    assert sorted(pipe.transformer.config.id2label.values()) == sorted(demo.photos.TRAIN_PHOTOS)
    labels = pipe.get_label_ids(["astronaut", "china"])
    num_tokens = pipe.image_tokenizer.config.num_tokens
    forwards = {}
    for decoding in ("standard", "sjd", "gsd"):
        out = pipe(class_labels=labels, decoding=decoding, generator=torch.Generator().manual_seed(0), output_type="pt")
        assert out.images.shape == (2, 3, 32, 32) and torch.isfinite(out.images).all()
        forwards[decoding] = pipe.decoding_stats["model_forwards"]
    assert forwards["standard"] == num_tokens
    assert forwards["sjd"] < num_tokens and forwards["gsd"] < num_tokens, forwards
    with pytest.raises(ValueError, match="1D"):
        pipe(class_labels=labels, decoding="zipar")


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
    assert len(list((tmp_path / "ok" / "heldout").glob("*.png"))) == HELDOUT_COUNT
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


def test_dead_leaves_images_cover_the_square_with_many_anti_aliased_discs():
    from vistok.demo.photos import dead_leaves

    first = np.asarray(dead_leaves(48, np.random.default_rng(3)))
    assert first.shape == (48, 48, 3) and first.dtype == np.uint8
    assert np.array_equal(first, np.asarray(dead_leaves(48, np.random.default_rng(3))))  # seeded: reproducible
    assert not np.array_equal(first, np.asarray(dead_leaves(48, np.random.default_rng(4))))
    colours = {tuple(p) for p in first.reshape(-1, 3)}
    assert len(colours) > 20  # many discs of random colour, plus the anti-aliased mixtures along their edges
    # big flat regions (the large discs) and sharp-but-smoothed edges: most neighbours equal, some differ a lot
    step = np.abs(np.diff(first.astype(int), axis=1)).max(-1)
    assert (step == 0).mean() > 0.3 and step.max() > 64  # noise would have almost no equal neighbours


def test_photo_recipe_adds_dead_leaves_and_channel_swaps_only_when_asked(tmp_path, monkeypatch):
    import vistok.demo.photos as photos

    photo = PIL.Image.fromarray(np.random.default_rng(0).integers(0, 255, (90, 120, 3), dtype=np.uint8))
    monkeypatch.setattr(photos, "load_photo", lambda package, name: photo)
    plain = photos.build_photo_dataset(tmp_path / "plain", crops_per_class=4, train_size=24)
    mixed = photos.build_photo_dataset(tmp_path / "mixed", crops_per_class=4, train_size=24, dead_leaves_count=3,
                                       permute_fraction=1.0)
    assert "dead_leaves" not in plain["train_classes"] and mixed["train_classes"]["dead_leaves"] == 3
    assert len(list((tmp_path / "mixed" / "train" / "dead_leaves").glob("*.png"))) == 3
    first_class = next(iter(photos.TRAIN_PHOTOS))
    a = np.asarray(PIL.Image.open(tmp_path / "plain" / "train" / first_class / "0000.png"))
    b = np.asarray(PIL.Image.open(tmp_path / "mixed" / "train" / first_class / "0000.png"))
    # the same crop (the permutation draws come after it) with its channels in another order
    assert not np.array_equal(a, b) and sorted(a.reshape(-1, 3).sum(0)) == sorted(b.reshape(-1, 3).sum(0))
    with pytest.raises(ValueError, match="permute_fraction"):
        photos.build_photo_dataset(tmp_path / "bad", permute_fraction=1.5)


def test_photos_command_rebuilds_the_recipe_it_was_made_from(tmp_path, monkeypatch):
    """Model cards print the data command from a recipe.json: running that command asks for the same recipe."""
    import vistok.demo.photos as photos

    photo = PIL.Image.fromarray(np.random.default_rng(0).integers(0, 255, (90, 120, 3), dtype=np.uint8))
    monkeypatch.setattr(photos, "load_photo", lambda package, name: photo)
    asked = [dict(crops_per_class=4, train_size=24), dict(train_size=24),
             dict(crops_per_class=6, train_size=24, whole_fraction=0.5, permute_fraction=0.25, dead_leaves_count=3, seed=7)]
    build = photos.build_photo_dataset
    for index, kwargs in enumerate(asked):
        recipe = build(tmp_path / f"r{index}", **{"crops_per_class": 2, **kwargs})
        if "crops_per_class" not in kwargs:  # the default's 320 crops per class, without writing them
            recipe["train_classes"] = {name: 320 for name in photos.TRAIN_PHOTOS}
        command = photos.photos_command(recipe, "data/out")
        assert command.startswith("python -m vistok.demo.photos --output data/out")
        called = {}
        monkeypatch.setattr(photos, "build_photo_dataset", lambda output, **given: called.update(given) or {})
        photos.main(command.split()[3:])
        monkeypatch.setattr(photos, "build_photo_dataset", build)
        defaults = {"crops_per_class": 320, "whole_fraction": 0.0, "dead_leaves_count": 0, "permute_fraction": 0.0,
                    "seed": 0}
        assert {k: called[k] for k in defaults} == {**defaults, **{k: v for k, v in kwargs.items() if k in defaults}}
        assert called["train_size"] == 24
    unequal = {**recipe, "train_classes": {"astronaut": 3, "rocket": 4}}
    with pytest.raises(ValueError, match="not written by the command line"):
        photos.photos_command(unequal, "data/out")


def test_decoder_packaging_takes_only_a_tokenizer_with_the_shipped_encoder(tmp_path):
    """scripts/package_default_model.py --decoder-run keeps the shipped generators, so it must refuse a tokenizer whose
    token ids could differ from the shipped one's (any weight outside the decoder changed), before writing anything."""
    import importlib.util

    import torch
    from transformers import AutoModel

    script = demo.ASSETS.parents[2] / "scripts" / "package_default_model.py"
    spec = importlib.util.spec_from_file_location("package_default_model", script)
    package = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(package)
    model = AutoModel.from_pretrained(str(demo.DEFAULT_TOKENIZER))
    with torch.no_grad():
        model.encoder.latent_tokens.add_(1e-3)
    model.save_pretrained(tmp_path / "encoder-changed")
    with pytest.raises(SystemExit, match="not a decoder retrain.*encoder.latent_tokens"):
        package.package_decoder(tmp_path / "scratch", demo.DEFAULT_PIPELINE, tmp_path / "encoder-changed",
                                (tmp_path, tmp_path), section="", report={})
    assert not (tmp_path / "scratch").exists()


@pytest.mark.parametrize("path", sorted((demo.ASSETS.parents[2] / "configs").glob("demo_*.yaml")), ids=lambda p: p.stem)
def test_demo_training_recipes_load_and_their_tokenizers_stay_under_16_mb(path):
    """The documented recipes (the shipped models' and the retrain candidates') parse as training configs; a tokenizer
    recipe builds a model whose fp32 weights stay under the 16 MB the package allows a default tokenizer."""
    from vistok.training import load_train_config
    from vistok.training.models import build_model

    kind = "generator" if "generator" in path.stem else "tokenizer"
    given = {"data": {"dataset": "data/demo-photos/train"}}  # the recipes take it on the command line
    if kind == "generator":
        given["loss"] = {"tokenizer": "runs/demo-tokenizer/final"}
    config = load_train_config(kind, path, overrides=given)  # raises on any unknown or invalid setting
    if config.model.pretrained:  # a retrain of a run's model: the shipped one stands in for that run
        config.model.pretrained = str(demo.DEFAULT_TOKENIZER)
    if kind == "tokenizer":
        model = build_model(config.model, kind)
        weight_bytes = sum(p.numel() * 4 for p in model.parameters())
        assert weight_bytes <= 16 * 2**20, f"{path.name}: {weight_bytes / 2**20:.1f} MiB of fp32 weights"
