"""MaskGIT generators and MaskGITPipeline: parity with the original ImageBert / UViTBert and their
``generate`` (tests/fixtures/README.md, "maskgit/"), the pipeline contract, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from safetensors.torch import load_file, save_file

import vistok
from vistok import MaskGITPipeline, TiTokConfig, TiTokModel
from vistok.cli import main as cli_main
from vistok.conversion import ConversionError
from vistok.modeling.maskgit.convert_maskgit import convert as convert_maskgit
from _random_weights import random_state_dict

FIXTURES = Path(__file__).parent / "fixtures" / "maskgit"
VARIANTS = ("imagebert", "uvitbert")


def load(name):
    return json.loads((FIXTURES / f"{name}.json").read_text()), load_file(str(FIXTURES / f"{name}.safetensors"))


def write_release(meta, folder: Path) -> Path:
    folder.mkdir(parents=True)
    save_file(random_state_dict(meta["state_dict_shapes"], meta["weights_seed"]), str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(meta["original_config"]))
    return folder


@pytest.fixture(scope="module")
def tokenizer_folder(tmp_path_factory):
    """A tiny random single-stage TiTok with the fixtures' 64 codes and 8 tokens."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tok")
    TiTokModel(TiTokConfig(image_size=32, num_tokens=8, codebook_size=64, token_dim=8, use_l2_norm=False, is_legacy=False,
                           encoder_hidden_size=64, encoder_num_layers=1, encoder_num_heads=1, decoder_hidden_size=64,
                           decoder_num_layers=1, decoder_num_heads=1)).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def pipelines(tmp_path_factory, tokenizer_folder):
    root = tmp_path_factory.mktemp("maskgit")
    out = {}
    for name in VARIANTS:
        meta, expected = load(name)
        release = write_release(meta, root / f"{name}-original")
        folder = root / f"{name}-pipeline"
        assert cli_main(["convert", "maskgit", "--original", str(release), "--tokenizer", str(tokenizer_folder),
                         "--output", str(folder)]) == 0
        out[name] = (MaskGITPipeline.from_pretrained(folder), meta, expected, folder)
    return out


@pytest.mark.parametrize("name", VARIANTS)
def test_logits_match_original(pipelines, name):
    pipe, meta, expected, _ = pipelines[name]
    labels = torch.tensor(meta["condition"])
    with torch.no_grad():
        cond = pipe.transformer(expected["input_ids"], labels).logits
        uncond = pipe.transformer(expected["input_ids"], labels, drop_labels=torch.ones(3, dtype=torch.bool)).logits
    torch.testing.assert_close(cond, expected["logits_cond"], atol=1e-4, rtol=0)
    torch.testing.assert_close(uncond, expected["logits_uncond"], atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize("setting", ["constant", "linear", "power_cosine", "no_guidance"])
def test_seeded_samples_equal_original_generate(pipelines, name, setting):
    pipe, meta, expected, _ = pipelines[name]
    s = meta["settings"][setting]
    ids = pipe.sample_tokens(
        meta["condition"], num_inference_steps=s["num_sample_steps"], guidance_scale=s["guidance_scale"],
        guidance_schedule=s["guidance_decay"], guidance_scale_pow=s["guidance_scale_pow"],
        randomize_temperature=s["randomize_temperature"], softmax_temperature_annealing=s["softmax_temperature_annealing"],
        generator=torch.Generator().manual_seed(s["seed"]),
    )
    assert torch.equal(ids, expected[f"generated_{setting}"])


def test_pipeline_outputs_and_defaults(pipelines):
    pipe, meta, expected, folder = pipelines["imagebert"]
    config = pipe.transformer.config
    assert config.backbone == "bert" and config.num_classes == 10 and config.num_tokens == 8
    assert config.sampling_defaults["num_inference_steps"] == 4  # the release config's num_steps
    assert "library_name: vistok" in (folder / "README.md").read_text()
    out = pipe(class_labels=[1, 2], generator=torch.Generator().manual_seed(0))
    assert len(out.images) == 2 and isinstance(out.images[0], PIL.Image.Image) and out.images[0].size == (32, 32)
    arr = pipe(class_labels=[1], output_type="np", generator=torch.Generator().manual_seed(0)).images
    assert arr.shape == (1, 32, 32, 3) and arr.min() >= 0 and arr.max() <= 1
    (pt,) = pipe(class_labels=[1], output_type="pt", return_dict=False, generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(pt.permute(0, 2, 3, 1).numpy(), arr, atol=1e-6)
    again = pipe(class_labels=[1], output_type="np", generator=torch.Generator().manual_seed(0)).images
    np.testing.assert_array_equal(arr, again)


def test_variable_length_generation(tmp_path, pipelines):
    """One-D-Piece-style: a variable-length tokenizer decodes a shorter sampled prefix."""
    pipe, meta, _, _ = pipelines["uvitbert"]
    from vistok import OneDPieceConfig, OneDPieceModel

    tok = OneDPieceModel(OneDPieceConfig(image_size=16, num_tokens=8, codebook_size=64, token_dim=8, use_l2_norm=False,
                                         encoder_hidden_size=64, encoder_num_layers=1, encoder_num_heads=1,
                                         decoder_hidden_size=64, decoder_num_layers=1, decoder_num_heads=1,
                                         pixel_hidden_channels=32, pixel_embed_dim=32, pixel_channel_mult=[1, 1, 1, 1, 2])).eval()
    short = MaskGITPipeline(image_tokenizer=tok, transformer=pipe.transformer)
    ids = short.sample_tokens([3], num_tokens=5, num_inference_steps=3, generator=torch.Generator().manual_seed(0))
    assert ids.shape == (1, 5) and int(ids.max()) < 64
    assert short(class_labels=[3], num_tokens=5, num_inference_steps=3, output_type="pt").images.shape == (1, 3, 16, 16)


def test_bad_input(pipelines, tokenizer_folder):
    pipe, *_ = pipelines["imagebert"]
    with pytest.raises(ValueError, match=r"class_labels must lie in \[0, 9\]"):
        pipe(class_labels=[10])
    with pytest.raises(ValueError, match="num_inference_steps must be an int >= 1"):
        pipe(class_labels=[1], num_inference_steps=0)
    with pytest.raises(ValueError, match="guidance_scale must be >= 0"):
        pipe(class_labels=[1], guidance_scale=-1.0)
    with pytest.raises(ValueError, match="guidance_schedule must be one of"):
        pipe(class_labels=[1], guidance_schedule="cosine")
    with pytest.raises(ValueError, match="num_tokens must be in 1..8"):
        pipe(class_labels=[1], num_tokens=9)
    with pytest.raises(ValueError, match="output_type"):
        pipe(class_labels=[1], output_type="jpg")  # "latent" (token ids) is supported by every pipeline (issue 15)
    other = TiTokModel(TiTokConfig(image_size=32, num_tokens=8, codebook_size=32, token_dim=8, use_l2_norm=False, is_legacy=False,
                                   encoder_hidden_size=64, encoder_num_layers=1, encoder_num_heads=1, decoder_hidden_size=64,
                                   decoder_num_layers=1, decoder_num_heads=1))
    with pytest.raises(ValueError, match="predicts 64 codes but the tokenizer's codebook has 32"):
        MaskGITPipeline(image_tokenizer=other, transformer=pipe.transformer)


def test_converter_refuses_mismatched_tokenizer_and_leaves_nothing(tmp_path):
    meta, _ = load("imagebert")
    release = write_release(meta, tmp_path / "orig")
    tok = tmp_path / "tok32"
    TiTokModel(TiTokConfig(image_size=32, num_tokens=8, codebook_size=32, token_dim=8, use_l2_norm=False, is_legacy=False,
                           encoder_hidden_size=64, encoder_num_layers=1, encoder_num_heads=1, decoder_hidden_size=64,
                           decoder_num_layers=1, decoder_num_heads=1)).save_pretrained(tok)
    with pytest.raises(ConversionError, match="64 codes but the tokenizer's codebook has 32"):
        convert_maskgit(str(release), str(tmp_path / "out"), tokenizer=str(tok))
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["orig", "tok32"]


def test_one_d_piece_generator_converts_with_its_original_tokenizer(tmp_path):
    """`vistok convert maskgit --tokenizer-family one-d-piece` converts the original tokenizer release on the way."""
    from _titok_fixtures import load_fixture, write_release_folder
    from transformers import BertConfig, BertModel

    tok_meta, _ = load_fixture("one_d_piece")  # 16 tokens over 4096 codes
    tokenizer_release = write_release_folder(tok_meta, tmp_path / "odp-tokenizer")
    generator_cfg = {"model_type": "ViT", "hidden_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                     "intermediate_size": 128, "dropout": 0.1, "attn_drop": 0.1, "num_steps": 5, "image_seq_len": 16,
                     "condition_num_classes": 10, "randomize_temperature": 3.0, "guidance_scale": 12.5,
                     "guidance_decay": "power-cosine"}
    bert = BertModel(BertConfig(vocab_size=4096 + 12, hidden_size=64, num_hidden_layers=1, num_attention_heads=2,
                                intermediate_size=128, max_position_embeddings=17), add_pooling_layer=False)
    state = {f"model.{k}": v for k, v in bert.state_dict().items()}
    state.update({"model.lm_head.weight": torch.randn(4096, 64) * 0.02, "model.lm_head.bias": torch.zeros(4096)})
    release = tmp_path / "odp-generator"
    release.mkdir()
    save_file(state, str(release / "model.safetensors"))
    (release / "config.json").write_text(json.dumps({"model": {"vq_model": {"codebook_size": 4096}, "generator": generator_cfg}}))
    out = tmp_path / "pipeline"
    assert cli_main(["convert", "maskgit", "--tokenizer-family", "one-d-piece", "--original", str(release), "--tokenizer", str(tokenizer_release),
                     "--output", str(out)]) == 0
    pipe = MaskGITPipeline.from_pretrained(out)
    assert type(pipe.image_tokenizer).__name__ == "OneDPieceModel" and pipe.image_tokenizer.config.variable_length
    defaults = pipe.transformer.config.sampling_defaults
    assert (defaults["num_inference_steps"], defaults["guidance_schedule"], defaults["softmax_temperature_annealing"]) == (5, "power-cosine", False)
    images = pipe(class_labels=[0], num_tokens=4, num_inference_steps=2, output_type="pt").images
    assert images.shape == (1, 3, 64, 64)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["odp-generator", "odp-tokenizer", "pipeline"]


def _seed_hub_cache(cache: Path, repo_id: str, folder: Path) -> None:
    """Lay ``folder`` out as huggingface_hub's cache holds a downloaded snapshot."""
    import shutil

    repo = cache / f"models--{repo_id.replace('/', '--')}"
    commit = "0" * 40
    shutil.copytree(folder, repo / "snapshots" / commit)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)


def test_from_pretrained_by_repo_id_offline(pipelines, tmp_path, monkeypatch):
    pipe, meta, _, folder = pipelines["uvitbert"]
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    _seed_hub_cache(tmp_path / "cache", "someone/maskgit-tiny", folder)
    loaded = MaskGITPipeline.from_pretrained("someone/maskgit-tiny", cache_dir=tmp_path / "cache")
    seed = torch.Generator().manual_seed(3)
    assert torch.equal(loaded.sample_tokens([1, 2], num_inference_steps=3, generator=seed),
                       pipe.sample_tokens([1, 2], num_inference_steps=3, generator=torch.Generator().manual_seed(3)))


def test_pipeline_push_to_hub_round_trip(pipelines, hub_server):
    pipe, *_ = pipelines["imagebert"]
    pipe.push_to_hub("me/maskgit-tiny")
    uploaded = hub_server.root / "me" / "maskgit-tiny"
    assert (uploaded / "model_index.json").is_file()
    assert (uploaded / "transformer" / "model.safetensors").is_file() and (uploaded / "image_tokenizer" / "config.json").is_file()
    assert "Released sampling settings" in (uploaded / "README.md").read_text()  # the converted folder's card
    again = MaskGITPipeline.from_pretrained(uploaded)
    a = again.sample_tokens([4], num_inference_steps=2, generator=torch.Generator().manual_seed(0))
    b = pipe.sample_tokens([4], num_inference_steps=2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b)
