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
