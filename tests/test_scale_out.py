"""Scale-out: ``vistok tokenize`` in shards (resumable, several processes, flat memory) and ``vistok sample``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tracemalloc

import numpy as np
import PIL.Image
import pytest
import torch

from vistok import TiTokConfig, TiTokModel
from vistok.cli import main as cli_main
from vistok.data import load_image_dataset
from vistok.training.tokenize import tokenize_dataset
from vistok.utils.io import OutputExistsError

TINY = dict(image_size=16, patch_size=8, decoder_patch_size=8, num_tokens=4, codebook_size=32, token_dim=4,
            encoder_hidden_size=32, encoder_num_layers=1, encoder_num_heads=2, decoder_hidden_size=32,
            decoder_num_layers=1, decoder_num_heads=2, is_legacy=False)


def _imagefolder(root, count: int, classes=("a", "b")):
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        pixels = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
        PIL.Image.fromarray(pixels).save(root / classes[i % len(classes)] / f"{i:05d}.png")
    return root


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tokenizer")
    torch.manual_seed(0)
    TiTokModel(TiTokConfig(**TINY)).eval().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return _imagefolder(tmp_path_factory.mktemp("images"), 10)


def _rows(folder):
    ds = load_image_dataset(folder, image_column=None)
    return sorted(zip(ds["index"], map(tuple, ds["token_ids"]), ds["label"]))


def test_shards_manifest_and_the_encoding_they_hold(tokenizer, images, tmp_path):
    out = tokenize_dataset(str(tokenizer), str(images), str(tmp_path / "tokens"), label_column="label", shard_size=3,
                           batch_size=2)
    manifest = json.loads((out / "manifest.json").read_text())
    assert [s["file"] for s in manifest["shards"]] == [f"shard-{k:05d}.parquet" for k in range(4)]
    assert [s["rows"] for s in manifest["shards"]] == [3, 3, 3, 1] and manifest["rows"] == 10
    ds = load_image_dataset(out, image_column=None, label_column="label")
    assert ds.features["label"].names == ["a", "b"] and ds["index"] == list(range(10))
    # the ids are the tokenizer's, image by image
    model = TiTokModel.from_pretrained(tokenizer).eval()
    source = load_image_dataset(images)
    from vistok.data import ImageTransform

    transform = ImageTransform(16, model.config.pixel_range, train=False)
    with torch.no_grad():
        expected = model.encode(transform.pixels(source["image"])).token_ids.tolist()
    assert ds["token_ids"] == expected and ds["label"] == source["label"]


def test_resume_keeps_finished_shards_and_refuses_to_clobber(tokenizer, images, tmp_path):
    out = tmp_path / "tokens"
    tokenize_dataset(str(tokenizer), str(images), str(out), label_column="label", shard_size=4)
    reference = _rows(out)
    # a crash after shard 0: shards 1 and 2 and the manifest are missing
    for name in ("shard-00001.parquet", "shard-00002.parquet", "manifest.json"):
        (out / name).unlink()
    kept = (out / "shard-00000.parquet").stat().st_mtime_ns
    with pytest.raises(ValueError, match="unfinished `vistok tokenize` output"):
        load_image_dataset(out, image_column=None)
    with pytest.raises(OutputExistsError, match="unfinished run: pass resume=True"):
        tokenize_dataset(str(tokenizer), str(images), str(out), label_column="label", shard_size=4)
    assert cli_main(["tokenize", "--tokenizer", str(tokenizer), "--dataset", str(images), "--output", str(out),
                     "--label-column", "label", "--shard-size", "4", "--resume"]) == 0
    assert (out / "shard-00000.parquet").stat().st_mtime_ns == kept
    assert _rows(out) == reference
    with pytest.raises(OutputExistsError, match="it is complete"):
        tokenize_dataset(str(tokenizer), str(images), str(out), label_column="label")
    with pytest.raises(ValueError, match="overwrite and resume exclude each other"):
        tokenize_dataset(str(tokenizer), str(images), str(out), overwrite=True, resume=True)


def test_streaming_and_workers_give_the_same_rows(tokenizer, images, tmp_path):
    tokenize_dataset(str(tokenizer), str(images), str(tmp_path / "map"), label_column="label", shard_size=4,
                     num_workers=2)
    out = tokenize_dataset(str(tokenizer), str(images), str(tmp_path / "stream"), label_column="label",
                           streaming=True, shard_size=4)
    assert sorted(p.name for p in out.glob("*.parquet")) == [f"part-00000-{k:05d}.parquet" for k in range(3)]
    stream = load_image_dataset(out, image_column=None)
    mapped = load_image_dataset(tmp_path / "map", image_column=None)
    assert stream["token_ids"] == mapped["token_ids"] and stream["label"] == mapped["label"]


def _saved_images(folder, count: int):
    """``count`` tiny images as a save_to_disk dataset (memory-mapped Arrow: loading it costs the same at any size)."""
    import datasets

    rng = np.random.default_rng(1)
    rows = {"image": [PIL.Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)) for _ in range(count)]}
    datasets.Dataset.from_dict(rows, features=datasets.Features({"image": datasets.Image()})).save_to_disk(str(folder))
    return folder


def test_memory_stays_flat_as_the_dataset_grows(tokenizer, tmp_path):
    """Peak Python heap while tokenizing 4x more images (shards of 50 rows) stays about the same: nothing of the
    dataset is held beyond one shard (the previous implementation kept every row in lists until the end)."""
    peaks = []
    for count in (200, 800):
        folder = _saved_images(tmp_path / f"images{count}", count)
        tokenize_dataset(str(tokenizer), str(folder), str(tmp_path / f"warm{count}"), shard_size=50, batch_size=25)
        tracemalloc.start()
        tokenize_dataset(str(tokenizer), str(folder), str(tmp_path / f"tokens{count}"), shard_size=50, batch_size=25)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert peaks[1] < 1.5 * peaks[0], peaks


TWO_PROCESS_TOKENIZE = """
import sys
from vistok.training.tokenize import tokenize_dataset
tokenize_dataset(sys.argv[1], sys.argv[2], sys.argv[3], label_column="label", shard_size=3, batch_size=2)
"""


def _torchrun(tmp_path, script_text: str, *args: str) -> None:
    """Two fresh processes under torchrun (forking this pytest process, which already ran torch, can deadlock)."""
    script = tmp_path / "script.py"
    script.write_text(script_text)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    port = 29500 + (os.getpid() + len(script_text)) % 2000
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                          str(port), str(script), *args], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]


def test_two_processes_write_what_one_process_writes(tokenizer, images, tmp_path):
    one = tokenize_dataset(str(tokenizer), str(images), str(tmp_path / "one"), label_column="label", shard_size=3,
                           batch_size=2)
    _torchrun(tmp_path, TWO_PROCESS_TOKENIZE, str(tokenizer), str(images), str(tmp_path / "two"))
    manifest = json.loads((tmp_path / "two" / "manifest.json").read_text())
    assert manifest["num_processes"] == 2 and manifest["rows"] == 10
    assert [s["file"] for s in manifest["shards"]] == [f"shard-{k:05d}.parquet" for k in range(4)]
    assert _rows(tmp_path / "two") == _rows(one)


# -- vistok sample ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pipeline_folder(tmp_path_factory, tokenizer):
    from vistok import MaskGITConfig, MaskGITPipeline, MaskGITTransformer

    folder = tmp_path_factory.mktemp("pipeline")
    torch.manual_seed(1)
    transformer = MaskGITTransformer(MaskGITConfig(codebook_size=32, num_tokens=4, num_classes=3, hidden_size=32,
                                                   num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                                                   sampling_defaults={"num_inference_steps": 2},
                                                   id2label={0: "cat", 1: "dog", 2: "fox"}))
    MaskGITPipeline(image_tokenizer=TiTokModel.from_pretrained(tokenizer).eval(), transformer=transformer.eval()).save_pretrained(folder)
    return folder


def _pngs(folder):
    return {p.name: np.asarray(PIL.Image.open(p)) for p in sorted((folder / "images").glob("*.png"))}


def test_sample_writes_pngs_npz_and_manifest_and_resumes(pipeline_folder, tmp_path):
    from vistok.evaluation.sample import sample_images

    out = sample_images(str(pipeline_folder), str(tmp_path / "s"), num_images=5, class_labels=["dog", "2"], batch_size=2,
                        seed=3, guidance_scale=1.5)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["class_labels"] == [1, 2] and manifest["sampling"] == {"guidance_scale": 1.5}
    pngs = _pngs(out)
    assert sorted(pngs) == [f"{i:06d}.png" for i in range(5)]
    with np.load(out / "samples.npz") as data:
        assert data["arr_0"].shape == (5, 16, 16, 3) and data["arr_0"].dtype == np.uint8
        assert data["arr_1"].tolist() == [1, 2, 1, 2, 1]
        assert np.array_equal(data["arr_0"][3], pngs["000003.png"])
    # image i depends only on (class, seed + i): another batch size gives the same pixels
    again = sample_images(str(pipeline_folder), str(tmp_path / "s1"), num_images=5, class_labels=[1, 2], batch_size=3,
                          seed=3, guidance_scale=1.5)
    assert {k: v.tobytes() for k, v in _pngs(again).items()} == {k: v.tobytes() for k, v in pngs.items()}
    # an interrupted run: the missing images are redone, the others kept
    (out / "images" / "000004.png").unlink()
    (out / "manifest.json").unlink()
    kept = (out / "images" / "000000.png").stat().st_mtime_ns
    with pytest.raises(OutputExistsError, match="unfinished run"):
        sample_images(str(pipeline_folder), str(out), num_images=5, class_labels=[1, 2], batch_size=2, seed=3)
    assert cli_main(["sample", str(pipeline_folder), "--output", str(out), "--num-images", "5", "--class-labels", "1", "2",
                     "--batch-size", "2", "--seed", "3", "--guidance-scale", "1.5", "--resume"]) == 0
    assert (out / "images" / "000000.png").stat().st_mtime_ns == kept
    assert {k: v.tobytes() for k, v in _pngs(out).items()} == {k: v.tobytes() for k, v in pngs.items()}
    with pytest.raises(ValueError, match=r"does not take \['top_k'\]"):
        sample_images(str(pipeline_folder), str(tmp_path / "bad"), num_images=1, top_k=3)
    with pytest.raises(ValueError, match=r"class labels must lie in \[0, 2\]"):
        sample_images(str(pipeline_folder), str(tmp_path / "bad"), num_images=1, class_labels=[7])


def test_eval_scores_a_sample_folder(pipeline_folder, tmp_path):
    from vistok.evaluation.run import run_eval
    from vistok.evaluation.sample import sample_images

    out = sample_images(str(pipeline_folder), str(tmp_path / "s"), num_images=4, seed=0)
    report = run_eval(str(out), str(tmp_path / "eval"), fid=False, progress=False)
    assert report["kind"] == "samples" and report["num_images"] == 4 and report["pipeline"] == "MaskGITPipeline"
    assert "fid" in report["skipped"] and (tmp_path / "eval" / "samples.png").is_file()


TWO_PROCESS_SAMPLE = """
import sys
from vistok.evaluation.sample import sample_images
sample_images(sys.argv[1], sys.argv[2], num_images=5, batch_size=2, seed=7)
"""


def test_two_processes_sample_the_same_images_as_one(pipeline_folder, tmp_path):
    from vistok.evaluation.sample import sample_images

    one = sample_images(str(pipeline_folder), str(tmp_path / "one"), num_images=5, batch_size=2, seed=7)
    _torchrun(tmp_path, TWO_PROCESS_SAMPLE, str(pipeline_folder), str(tmp_path / "two"))
    assert json.loads((tmp_path / "two" / "manifest.json").read_text())["num_processes"] == 2
    assert {k: v.tobytes() for k, v in _pngs(tmp_path / "two").items()} == {k: v.tobytes() for k, v in _pngs(one).items()}
