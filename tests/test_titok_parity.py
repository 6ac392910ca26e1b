"""Converted TiTok / One-D-Piece models reproduce the original implementation (DESIGN.md, "Parity").

Fixtures hold the original code's outputs on tiny random-weight configs (tests/fixtures/README.md);
the weights are rebuilt from a seed, written in the original release layout and converted here.
"""

from __future__ import annotations

import pytest
import torch
from transformers import AutoImageProcessor, AutoModel

import vistok
from vistok.cli import main as cli_main
from _tolerances import assert_matches_original
from _titok_fixtures import VARIANTS, load_fixture, write_pickle_release, write_release_folder



def tokens_first(t: torch.Tensor) -> torch.Tensor:
    """Original layout [B, C, 1, N] -> vistok [B, N, C]."""
    return t.squeeze(2).transpose(1, 2)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """Each variant converted once through the CLI from its original release folder."""
    models = {}
    root = tmp_path_factory.mktemp("titok")
    for name in VARIANTS:
        meta, expected = load_fixture(name)
        release = write_release_folder(meta, root / f"{name}-original")
        out = root / f"{name}-vistok"
        assert cli_main(["convert", meta["family"], "--original", str(release), "--output", str(out)]) == 0
        models[name] = (AutoModel.from_pretrained(out).eval(), AutoImageProcessor.from_pretrained(out), meta, expected, out)
    return models


@pytest.mark.parametrize("name", ["titok_legacy", "titok_vq", "one_d_piece"])
def test_vq_token_ids_and_reconstruction_match_original(converted, name):
    model, _, _, expected, _ = converted[name]
    pixels = expected["pixel_values"]
    assert_matches_original(model, lambda m: m.encoder(pixels.to(m.dtype)), tokens_first(expected["encoder_output"]), "encoder")
    with torch.no_grad():
        enc = model.encode(pixels)
    assert torch.equal(enc.token_ids, expected["token_ids"])
    assert_matches_original(model, lambda m: m.encode(pixels.to(m.dtype)).latents,
                            tokens_first(expected["quantized"]), "quantized")
    assert_matches_original(model, lambda m: m.decode(expected["token_ids"]), expected["reconstruction"], "reconstruction")


def test_vae_latents_and_reconstruction_match_original(converted):
    model, _, _, expected, _ = converted["titok_vae"]
    pixels = expected["pixel_values"]
    with torch.no_grad():
        enc = model.encode(pixels, sample_posterior=False)
        assert enc.token_ids is None
        torch.testing.assert_close(enc.latents, enc.latent_mean)
        sampled = model.encode(pixels, generator=torch.Generator().manual_seed(0)).latents
    for field in ("latent_mean", "latent_logvar"):
        assert_matches_original(model, lambda m: getattr(m.encode(pixels.to(m.dtype), sample_posterior=False), field),
                                tokens_first(expected[field]), field)
    assert_matches_original(model, lambda m: m.decode_latents(m.encode(pixels.to(m.dtype), sample_posterior=False).latent_mean),
                            expected["reconstruction"], "reconstruction")
    assert not torch.allclose(sampled, enc.latent_mean), "encode samples the posterior by default"


@pytest.mark.parametrize("k", [1, 5, 16])
def test_one_d_piece_prefixes_match_original(converted, k):
    model, _, _, expected, _ = converted["one_d_piece"]
    with torch.no_grad():
        enc = model.encode(expected["pixel_values"], num_tokens=k)
        assert enc.token_ids.shape == (2, k)
        assert torch.equal(enc.token_ids, expected["token_ids"][:, :k])
    assert_matches_original(model, lambda m: m.decode(enc.token_ids), expected[f"reconstruction_k{k}"], f"{k} tokens")


def test_converted_config_is_inferred_from_the_checkpoint(converted):
    cfg = converted["titok_vq"][0].config
    assert (cfg.image_size, cfg.num_tokens, cfg.codebook_size, cfg.token_dim) == (64, 8, 1024, 16)
    assert (cfg.encoder_hidden_size, cfg.decoder_hidden_size, cfg.decoder_num_heads) == (128, 192, 3)
    assert not cfg.is_legacy and not cfg.use_l2_norm and cfg.token_layout == "1d"
    legacy = converted["titok_legacy"][0].config
    assert legacy.is_legacy and legacy.use_l2_norm and legacy.pixel_embed_dim == 32
    assert converted["one_d_piece"][0].config.variable_length
    assert converted["titok_vae"][0].config.token_layout == "continuous"


def test_output_folder_has_processor_and_card(converted):
    model, processor, meta, expected, out = converted["titok_legacy"]
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "README.md"} <= {p.name for p in out.iterdir()}
    card = (out / "README.md").read_text()
    assert "library_name: vistok" in card and "license: apache-2.0" in card
    assert processor.size == 64 and processor.pixel_range == [0.0, 1.0]
    # the processor leaves an image already at the model's size unchanged (apart from rescaling)
    pixels = processor(images=list(expected["pixel_values"]), return_tensors="pt").pixel_values
    assert (pixels - expected["pixel_values"]).abs().max() <= 0.5 / 255 + 1e-6


def test_pickle_with_yaml_config_converts_identically(converted, tmp_path):
    model, _, meta, expected, _ = converted["titok_legacy"]
    checkpoint, config = write_pickle_release(meta, tmp_path / "pickle")
    out = tmp_path / "from-pickle"
    assert cli_main(["convert", "titok", "--original", str(checkpoint), "--config", str(config), "--output", str(out)]) == 0
    again = AutoModel.from_pretrained(out).eval()
    for (key, a), (_, b) in zip(sorted(model.state_dict().items()), sorted(again.state_dict().items())):
        assert torch.equal(a, b), key
