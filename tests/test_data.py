import numpy as np
import PIL.Image
import pytest
import torch

from vistok.data import ImageTransform, collate_examples, load_image_dataset


@pytest.fixture
def imagefolder(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("cat", "dog"):
        (tmp_path / name).mkdir()
        for i in range(3):
            PIL.Image.fromarray(rng.integers(0, 255, (40, 52, 3), dtype=np.uint8)).save(tmp_path / name / f"{i}.png")
    return tmp_path


def test_imagefolder_labels_and_transform(imagefolder):
    ds = load_image_dataset(imagefolder, label_column="label")
    assert ds.features["label"].names == ["cat", "dog"] and len(ds) == 6
    batch = collate_examples([ds.with_transform(ImageTransform(32, (-1, 1), label_column="label"))[i] for i in (0, 3)])
    assert batch["pixel_values"].shape == (2, 3, 32, 32) and batch["labels"].tolist() == [0, 1]
    assert batch["pixel_values"].min() >= -1 and batch["pixel_values"].max() <= 1


def test_saved_dataset_and_streaming(imagefolder, tmp_path_factory):
    saved = tmp_path_factory.mktemp("saved")
    load_image_dataset(imagefolder, label_column="label").save_to_disk(str(saved))
    assert len(load_image_dataset(saved, label_column="label")) == 6
    first = next(iter(load_image_dataset(saved, streaming=True, label_column="label")))
    assert isinstance(first["image"], PIL.Image.Image)


def test_eval_transform_is_deterministic_and_train_transform_is_seeded(imagefolder):
    ds = load_image_dataset(imagefolder)
    images = [ds[0]["image"], ds[1]["image"]]
    evaluate = ImageTransform(32, train=False)
    assert torch.equal(evaluate.pixels(images), evaluate.pixels(images))
    train = ImageTransform(32, crop_scale=(0.3, 1.0))
    torch.manual_seed(0)
    first = train.pixels(images)
    torch.manual_seed(0)
    assert torch.equal(first, train.pixels(images))
    assert not torch.equal(first, train.pixels(images))


def test_bad_sources_and_columns_fail_early(imagefolder):
    with pytest.raises(ValueError, match="label_column='lbl' is not a column.*\\['image', 'label'\\]"):
        load_image_dataset(imagefolder, label_column="lbl")
    with pytest.raises(ValueError, match="does not exist"):
        load_image_dataset(imagefolder / "missing")
    with pytest.raises(ValueError, match="could not be loaded"):
        load_image_dataset("nobody/no-such-dataset")
    with pytest.raises(ValueError, match="split='validation'"):
        load_image_dataset(imagefolder, split="validation")
    with pytest.raises(ValueError, match="crop_scale"):
        ImageTransform(32, crop_scale=(0.0, 1.0))


def test_hub_dataset_id_loads_from_the_local_hub_cache_offline(imagefolder, tmp_path, monkeypatch):
    import huggingface_hub.constants as hub_constants

    cache = tmp_path / "hub"
    repo, commit = cache / "datasets--someone--tiny-images", "0" * 40
    (repo / "snapshots" / commit / "data").mkdir(parents=True)
    load_image_dataset(imagefolder, label_column="label").to_parquet(
        str(repo / "snapshots" / commit / "data" / "train-00000-of-00001.parquet"))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    ds = load_image_dataset("someone/tiny-images", label_column="label")
    assert len(ds) == 6 and ds.features["label"].names == ["cat", "dog"]
    assert isinstance(ds[0]["image"], PIL.Image.Image)
    with pytest.raises(ValueError, match="not in the local hub cache"):
        load_image_dataset("someone/not-cached")


def test_imagefolder_metadata_captions(tmp_path):
    rng = np.random.default_rng(1)
    for i in range(2):
        PIL.Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    (tmp_path / "metadata.jsonl").write_text('{"file_name": "0.png", "text": "a red square"}\n'
                                             '{"file_name": "1.png", "text": "noise"}\n')
    ds = load_image_dataset(tmp_path, caption_column="text")
    batch = ImageTransform(16, caption_column="text", train=False)(ds[:2])
    assert batch["captions"] == ["a red square", "noise"] and batch["pixel_values"].shape == (2, 3, 16, 16)
