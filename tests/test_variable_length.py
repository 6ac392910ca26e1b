"""One variable-length API over the 1D tokenizer families (TiTok, One-D-Piece, FlexTok): the same code asks each
model which prefix lengths it supports (``supported_num_tokens``, maximum ``config.num_tokens``), encodes with
``num_tokens=k``, decodes the prefix, and is refused any other length; ``vistok eval``'s default sweep is drawn
from the supported lengths."""

from __future__ import annotations

import functools

import pytest
import torch

from vistok.evaluation.tokenizer_scores import default_token_counts
from vistok.modeling.flextok import FlexTokConfig, FlexTokModel
from vistok.modeling.one_d_piece import OneDPieceConfig, OneDPieceModel
from vistok.modeling.titok import TiTokConfig, TiTokModel

TRUNK = dict(image_size=16, encoder_hidden_size=64, encoder_num_layers=1, encoder_num_heads=1,
             decoder_hidden_size=64, decoder_num_layers=1, decoder_num_heads=1)
TINY_VAE = {"block_out_channels": [16, 16], "down_block_types": ["DownEncoderBlock2D"] * 2,
            "up_block_types": ["UpDecoderBlock2D"] * 2, "layers_per_block": 1, "norm_num_groups": 8,
            "latent_channels": 4, "in_channels": 3, "out_channels": 3}


@functools.lru_cache(maxsize=1)
def tiny_models():
    torch.manual_seed(0)
    return {
        "titok": TiTokModel(TiTokConfig(num_tokens=8, codebook_size=64, token_dim=8, use_l2_norm=False, is_legacy=False,
                                        **TRUNK)),
        "one-d-piece": OneDPieceModel(OneDPieceConfig(num_tokens=8, pixel_hidden_channels=32, pixel_embed_dim=32,
                                                      pixel_codebook_size=64, codebook_size=64, **TRUNK)),
        "flextok": FlexTokModel(FlexTokConfig(image_size=16, num_tokens=8, vae_config=TINY_VAE, vae_scaling_factor=0.5,
                                              encoder_hidden_size=64, encoder_num_layers=1, encoder_head_dim=32,
                                              decoder_hidden_size=64, decoder_num_layers=1, decoder_head_dim=32,
                                              num_inference_steps=2)),
    }


@pytest.mark.parametrize("name", ["titok", "one-d-piece", "flextok"])
def test_same_variable_length_calls_on_every_1d_family(name):
    model = tiny_models()[name].eval()
    supported = model.supported_num_tokens
    maximum = model.config.num_tokens
    assert max(supported) == maximum and model.config.token_layout == "1d"
    assert set(default_token_counts(model.config)) <= set(supported)  # vistok eval sweeps supported lengths only
    low, high = model.config.pixel_range
    pixels = low + (high - low) * torch.rand(2, 3, model.config.image_size, model.config.image_size,
                                             generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = model.encode(pixels)
        assert full.token_ids.shape == (2, maximum)
        for k in sorted({min(supported), (min(supported) + maximum) // 2, maximum}):
            encoded = model.encode(pixels, num_tokens=k)
            assert torch.equal(encoded.token_ids, full.token_ids[:, :k])
            assert model.decode(encoded.token_ids).shape == pixels.shape
            assert model.decode_latents(encoded.latents).shape == pixels.shape
        for k in (min(supported) - 1, maximum + 1):
            with pytest.raises(ValueError, match="num_tokens"):
                model.encode(pixels, num_tokens=k)
        if min(supported) > 1:
            with pytest.raises(ValueError, match="token_ids holds"):
                model.decode(full.token_ids[:, :1])


def test_variable_length_flags():
    models = tiny_models()
    assert models["titok"].supported_num_tokens == range(8, 9)  # TiTok is fixed-length
    assert models["one-d-piece"].supported_num_tokens == range(1, 9)
    assert models["flextok"].supported_num_tokens == range(1, 9)


@pytest.mark.parametrize("name", ["titok", "one-d-piece", "flextok"])
def test_vistok_eval_sweeps_the_supported_token_counts_the_same_way(name, tmp_path, monkeypatch):
    import json
    import sys

    import numpy as np
    import PIL.Image

    import vistok.evaluation.inception as inception
    from vistok.cli import main as cli_main

    monkeypatch.setattr(inception, "packaged_inception_weights", lambda: None)  # no FID network offline
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    model = tiny_models()[name]
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        PIL.Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(images / f"{i}.png")
    rows = []
    for run in ("a", "b"):
        assert cli_main(["eval", str(folder), "--images", str(images), "--output", str(tmp_path / run),
                         "--rd-images", "0"]) == 0
        rows.append(json.loads((tmp_path / run / "results.json").read_text())["results"])
    counts = [row["num_tokens"] for row in rows[0]]
    assert counts == default_token_counts(model.config) and set(counts) <= set(model.supported_num_tokens)
    assert counts == ([8] if name == "titok" else [1, 2, 4, 8])
    assert [row["psnr"] for row in rows[0]] == [row["psnr"] for row in rows[1]]  # FlexTok's flow decode is seeded
