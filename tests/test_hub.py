"""Uploads go to the loopback hub of tests/hub_server.py (the `hub_server` fixture); nothing leaves the machine."""

import json

import pytest
import torch
from transformers import AutoImageProcessor, AutoModel

import vistok
from vistok import TiTokConfig, TiTokModel, VistokImageProcessor
from vistok.hub import push_folder


def tiny_titok(seed: int = 0) -> TiTokModel:
    torch.manual_seed(seed)
    config = TiTokConfig(
        image_size=64, num_tokens=8, encoder_hidden_size=128, encoder_num_layers=2, encoder_num_heads=2,
        decoder_hidden_size=128, decoder_num_layers=2, decoder_num_heads=2, pixel_hidden_channels=32, pixel_embed_dim=32,
        pixel_num_res_blocks=1,
    )
    return TiTokModel(config).eval()


@pytest.fixture(scope="module")
def model():
    return tiny_titok()


@pytest.fixture(scope="module")
def reference(model):
    """What the original model computes: (pixels, token ids, decoded pixels)."""
    pixels = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ids = model.encode(pixels).token_ids
        return pixels, ids, model.decode(ids)


@pytest.fixture(scope="module")
def saved_folder(model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("titok")
    model.save_pretrained(folder)
    VistokImageProcessor(size=64).save_pretrained(folder)
    (folder / "README.md").write_text("---\nlibrary_name: vistok\n---\n# tiny titok\n")
    return folder


def assert_same_tokenizer(reference, folder):
    """The uploaded folder loads through the Auto classes and computes exactly what the original did."""
    pixels, ids, decoded = reference
    loaded = AutoModel.from_pretrained(folder).eval()
    processor = AutoImageProcessor.from_pretrained(folder)
    assert isinstance(loaded, TiTokModel)
    assert isinstance(processor, VistokImageProcessor) and processor.size == loaded.config.image_size == 64
    with torch.no_grad():
        assert torch.equal(loaded.encode(pixels).token_ids, ids)
        assert torch.equal(loaded.decode(ids), decoded)


def test_model_push_to_hub(model, reference, hub_server):
    url = model.push_to_hub("me/tiny-titok")

    assert url.startswith(f"{hub_server.endpoint}/me/tiny-titok/commit/")
    repo = hub_server.root / "me" / "tiny-titok"
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "README.md"} <= {p.name for p in repo.iterdir()}
    assert not any(p.suffix in (".bin", ".pt", ".pkl") for p in repo.iterdir())
    assert not hub_server.unhandled, hub_server.unhandled
    card = (repo / "README.md").read_text()
    assert card.startswith("---\n") and "library_name: vistok" in card
    for tag in ("- vistok", "- image-tokenization", "- vistok_titok"):
        assert tag in card
    assert 'AutoModel.from_pretrained("me/tiny-titok")' in card
    assert json.loads((repo / "preprocessor_config.json").read_text())["size"] == 64
    assert hub_server.commits[-1]["summary"] == "Upload TiTokModel"
    assert_same_tokenizer(reference, repo)


def test_push_keeps_local_card_and_forwards_options(hub_server, saved_folder):
    loaded = AutoModel.from_pretrained(saved_folder)  # name_or_path is the folder with its README.md
    loaded.push_to_hub("org/copy", private=True, commit_message="first", tags=["extra-tag"])
    card = (hub_server.root / "org" / "copy" / "README.md").read_text()
    assert "# tiny titok" in card and "extra-tag" in card
    assert hub_server.commits[-1]["summary"] == "first"

    loaded.push_to_hub("org/copy", revision="dev", model_card="# custom\n")
    assert (hub_server.root / "org" / "copy@dev" / "README.md").read_text() == "# custom\n"
    assert ("POST", "/api/models/org/copy/branch/dev") in hub_server.requests


@pytest.mark.parametrize("xet", [True, False], ids=["pipelined-upload", "create-commit"])
def test_push_folder_as_pull_request(hub_server, saved_folder, monkeypatch, xet):
    # huggingface_hub uploads through a pipelined path when hf_xet is installed, else through create_commit.
    import huggingface_hub.hf_api

    monkeypatch.setattr(huggingface_hub.hf_api, "is_xet_available", lambda: xet)
    push_folder(saved_folder, "me/pr-target")
    push_folder(saved_folder, "me/pr-target", create_pr=True)
    assert (hub_server.root / "me" / "pr-target@refs%2Fpr%2F1" / "model.safetensors").is_file()
    assert hub_server.commits[-1]["revision"] == "refs/pr/1"
    assert not hub_server.unhandled, hub_server.unhandled
    with pytest.raises(ValueError, match="leave revision unset"):
        push_folder(saved_folder, "me/pr-target", create_pr=True, revision="dev")


def test_push_folder(reference, hub_server, saved_folder):
    url = push_folder(saved_folder, "me/folder", commit_message="upload folder")
    assert url.startswith(f"{hub_server.endpoint}/me/folder/commit/")
    repo = hub_server.root / "me" / "folder"
    assert sorted(p.name for p in repo.iterdir()) == sorted(p.name for p in saved_folder.iterdir())
    assert_same_tokenizer(reference, repo)


def test_cli_push(reference, hub_server, saved_folder, capsys):
    from vistok.cli import main

    assert main(["push", str(saved_folder), "me/other", "--commit-message", "via cli"]) == 0
    repo = hub_server.root / "me" / "other"
    assert (repo / "model.safetensors").is_file() and (repo / "preprocessor_config.json").is_file()
    assert hub_server.commits[-1]["summary"] == "via cli"
    assert f"{hub_server.endpoint}/me/other/commit/" in capsys.readouterr().out
    assert_same_tokenizer(reference, repo)


def test_push_folder_without_config_is_refused(hub_server, tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="no config.json or model_index.json in"):
        push_folder(folder, "me/bad")
    with pytest.raises(ValueError, match="is not a directory"):
        push_folder(tmp_path / "missing", "me/bad")
    assert not (hub_server.root / "me" / "bad").exists()
    assert hub_server.requests == []


def test_push_folder_without_weights_is_refused(hub_server, tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="no model.safetensors"):
        push_folder(tmp_path, "me/bad")
    assert hub_server.requests == []


@pytest.mark.parametrize("name", ["pytorch_model.bin", "sub/weights.pt", "state.pkl"])
def test_push_folder_with_pickle_is_refused(hub_server, saved_folder, tmp_path, name):
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(saved_folder, folder)
    (folder / name).parent.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(b"\x80\x04pickle")
    with pytest.raises(ValueError, match="pickled checkpoint.*safetensors only"):
        push_folder(folder, "me/pickled")
    assert not (hub_server.root / "me" / "pickled").exists()
    assert hub_server.requests == []


def test_push_pipeline_folder(hub_server, saved_folder, tmp_path):
    import shutil

    folder = tmp_path / "pipe"
    shutil.copytree(saved_folder, folder / "image_tokenizer")
    index = {"_class_name": "MaskGITPipeline", "image_tokenizer": ["vistok", "TiTokModel"], "scheduler": [None, None]}
    (folder / "model_index.json").write_text(json.dumps(index))
    push_folder(folder, "me/pipe")
    assert (hub_server.root / "me" / "pipe" / "image_tokenizer" / "model.safetensors").is_file()

    index["transformer"] = ["vistok", "MaskGITTransformer"]
    (folder / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match="transformer"):
        push_folder(folder, "me/pipe2")


def test_bad_arguments(model, hub_server):
    with pytest.raises(ValueError, match="repo_id"):
        model.push_to_hub("")
    with pytest.raises(TypeError, match="image_processor"):
        model.push_to_hub("me/x", image_processor="not a processor")
    with pytest.raises(TypeError, match="model_card"):
        model.push_to_hub("me/x", model_card=123)
    assert hub_server.requests == []
