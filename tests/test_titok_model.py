"""TiTok / One-D-Piece model behaviour beyond parity: training outputs, attention backends, dtypes, loading."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoConfig, AutoModel

import vistok
from vistok import OneDPieceConfig, OneDPieceModel, TiTokConfig, TiTokModel
from vistok.conversion import ConversionError
from _tolerances import assert_matches_original
from vistok.modeling.one_d_piece.convert_one_d_piece import convert as convert_one_d_piece
from vistok.modeling.titok.convert_titok import convert as convert_titok
from _titok_fixtures import load_fixture, original_state_dict, write_pickle_release

SMALL = dict(image_size=32, encoder_hidden_size=64, encoder_num_layers=2, encoder_num_heads=2,
             decoder_hidden_size=64, decoder_num_layers=2, decoder_num_heads=2)


def single_stage(**kw):
    return TiTokModel(TiTokConfig(num_tokens=4, codebook_size=64, token_dim=8, use_l2_norm=False, is_legacy=False, **SMALL, **kw))


def test_forward_returns_losses_and_gradients_reach_the_encoder():
    torch.manual_seed(0)
    model = single_stage().train()
    pixels = torch.rand(2, 3, 32, 32)
    out = model(pixels)
    assert out.reconstruction.shape == pixels.shape
    loss = (out.reconstruction - pixels).pow(2).mean() + out.quantizer_loss
    loss.backward()
    assert model.encoder.patch_embed.weight.grad.abs().sum() > 0, "straight-through path"
    assert model.quantizer.embedding.weight.grad.abs().sum() > 0, "codebook loss"


def test_vae_forward_has_kl_and_samples_from_generator():
    model = TiTokModel(TiTokConfig(num_tokens=4, quantize_mode="vae", token_dim=8, is_legacy=False, **SMALL)).eval()
    pixels = torch.rand(1, 3, 32, 32)
    a = model(pixels, generator=torch.Generator().manual_seed(1))
    b = model(pixels, generator=torch.Generator().manual_seed(1))
    assert a.kl_loss.ndim == 0 and a.kl_loss > 0
    assert torch.equal(a.reconstruction, b.reconstruction)


def test_one_d_piece_tail_token_drop_in_training():
    model = OneDPieceModel(OneDPieceConfig(num_tokens=8, pixel_hidden_channels=32, pixel_embed_dim=32,
                                           pixel_channel_mult=[1, 1, 2], **{**SMALL, "image_size": 32},
                                           decoder_patch_size=8)).train()
    pixels = torch.rand(1, 3, 32, 32)
    lengths = {model(pixels, generator=torch.Generator().manual_seed(s)).token_ids.shape[1] for s in range(12)}
    assert len(lengths) > 1 and lengths <= set(range(1, 9))
    model.eval()
    assert model(pixels).token_ids.shape[1] == 8


def test_sdpa_and_eager_attention_agree():
    torch.manual_seed(0)
    model = single_stage().eval()
    pixels = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        sdpa = model(pixels).reconstruction
        model.set_attn_implementation("eager")
        eager = model(pixels).reconstruction
    torch.testing.assert_close(sdpa, eager, atol=1e-5, rtol=0)


def test_bf16_round_trip(tmp_path):
    torch.manual_seed(0)
    model = single_stage().eval()
    model.save_pretrained(tmp_path)
    half = AutoModel.from_pretrained(tmp_path, dtype=torch.bfloat16).eval()
    assert half.dtype == torch.bfloat16
    with torch.no_grad():
        enc = half.encode(torch.rand(1, 3, 32, 32))
        rec = half.decode(enc.token_ids)
    assert enc.token_ids.dtype == torch.long and rec.dtype == torch.bfloat16 and torch.isfinite(rec.float()).all()


def test_auto_classes_resolve_vistok_types():
    for config_cls, model_cls in ((TiTokConfig, TiTokModel), (OneDPieceConfig, OneDPieceModel)):
        config = AutoConfig.for_model(config_cls.model_type)
        assert type(config) is config_cls and config.model_type.startswith("vistok_")
        assert AutoModel._model_mapping[config_cls] is model_cls


def test_one_d_piece_pickle_release_needs_config_or_preset(tmp_path):
    meta, _ = load_fixture("one_d_piece")
    checkpoint, config = write_pickle_release(meta, tmp_path / "odp")
    config.unlink()
    with pytest.raises(ConversionError, match="--config ORIGINAL.yaml or --preset"):
        convert_one_d_piece(str(tmp_path / "odp"), str(tmp_path / "out"))
    # a preset whose sizes disagree with the checkpoint is refused, naming the disagreement
    with pytest.raises(ConversionError, match="num_latent_tokens 256 disagrees with latent_tokens \\(16\\)"):
        convert_one_d_piece(str(checkpoint), str(tmp_path / "out"), preset="one-d-piece-s256")
    assert not (tmp_path / "out").exists()


def test_stage1_legacy_checkpoint_takes_pixel_decoder(tmp_path):
    meta, expected = load_fixture("titok_legacy")
    state = original_state_dict(meta)
    pixel = {k: v for k, v in state.items() if k.startswith("pixel_")}
    stage1 = {k: v for k, v in state.items() if not k.startswith("pixel_")}
    torch.save(stage1, tmp_path / "stage1.bin")
    # maskgit-vqgan-imagenet-f16-256.bin layout: decoder.*, quantize.*, plus an encoder the converter drops
    vqgan = {k.removeprefix("pixel_"): v for k, v in pixel.items()}
    vqgan["encoder.conv_in.weight"] = torch.zeros(1)
    torch.save(vqgan, tmp_path / "maskgit-vqgan.bin")
    (tmp_path / "config.yaml").write_text(__import__("yaml").safe_dump(meta["original_config"]))
    args = dict(config=str(tmp_path / "config.yaml"))
    with pytest.raises(ConversionError, match="--pixel-decoder"):
        convert_titok(str(tmp_path / "stage1.bin"), str(tmp_path / "out"), **args)
    out = convert_titok(str(tmp_path / "stage1.bin"), str(tmp_path / "out"),
                        pixel_decoder=str(tmp_path / "maskgit-vqgan.bin"), **args)
    model = AutoModel.from_pretrained(out).eval()
    assert_matches_original(model, lambda m: m.decode(expected["token_ids"]), expected["reconstruction"], "reconstruction")


def test_convert_from_hub_repo_id_uses_the_local_cache_offline(tmp_path, monkeypatch):
    import shutil

    import huggingface_hub.constants as hf_constants

    from _titok_fixtures import write_release_folder

    meta, expected = load_fixture("titok_vq")
    release = write_release_folder(meta, tmp_path / "release")
    repo = tmp_path / "cache" / "models--yucornetto--tokenizer_titok_bl64_vq8k_imagenet"
    shutil.copytree(release, repo / "snapshots" / ("0" * 40))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    out = convert_titok("yucornetto/tokenizer_titok_bl64_vq8k_imagenet", str(tmp_path / "out"))
    card = (out / "README.md").read_text()
    assert "base_model: yucornetto/tokenizer_titok_bl64_vq8k_imagenet" in card and "2.06" in card  # preset metrics
    model = AutoModel.from_pretrained(out).eval()
    with torch.no_grad():
        assert torch.equal(model.encode(expected["pixel_values"]).token_ids, expected["token_ids"])


def test_fsq_variant_round_trips_through_save_pretrained(tmp_path):
    """quantize_mode="fsq": codebook_size = prod(levels); ids, prefix decoding and the FSQ constant buffers
    survive save_pretrained / from_pretrained (meta-device init)."""
    torch.manual_seed(0)
    config = OneDPieceConfig(num_tokens=6, quantize_mode="fsq", fsq_levels=[7, 5, 3], token_dim=3, is_legacy=False, **SMALL)
    assert config.codebook_size == 105 and config.token_layout == "1d"
    model = OneDPieceModel(config)
    pixels = torch.rand(2, 3, 32, 32)
    out = model.train()(pixels, num_tokens=6)
    (out.reconstruction - pixels).pow(2).mean().backward()
    assert model.encoder.patch_embed.weight.grad.abs().sum() > 0, "FSQ's straight-through rounding"
    model.eval()
    ids = model.encode(pixels).token_ids
    assert ids.shape == (2, 6) and 0 <= int(ids.min()) and int(ids.max()) < 105
    model.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path)
    assert loaded.config.fsq_levels == [7, 5, 3]
    assert torch.equal(loaded.encode(pixels).token_ids, ids)
    assert torch.equal(loaded.decode(ids[:, :2]), model.decode(ids[:, :2]))
    with pytest.raises(ValueError, match="fsq_levels"):
        OneDPieceConfig(quantize_mode="fsq", is_legacy=False, **SMALL)
    with pytest.raises(ValueError, match="fsq_levels applies"):
        OneDPieceConfig(fsq_levels=[5, 5], is_legacy=False, **SMALL)
    with pytest.raises(ValueError, match="single-stage"):
        OneDPieceConfig(quantize_mode="fsq", fsq_levels=[5, 5], **SMALL)
