"""TA-TiTok (the text-aware decoder option of the TiTok family) reproduces the original implementation.

Fixtures hold bytedance/1d-tokenizer's ``TATiTok`` outputs on tiny random-weight configs with random text
features (tests/fixtures/README.md); the weights are rebuilt from a seed, written in the release layout and
converted with ``vistok convert ta-titok``.
"""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModel, CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from vistok.cli import main as cli_main
from vistok.conversion import ConversionError
from vistok.modeling.layers.clip_text import clip_text_features, open_clip_token_ids
from vistok.modeling.titok import TiTokConfig, TiTokModel
from vistok.modeling.titok.convert_titok import convert_ta_titok
from _titok_fixtures import load_fixture, write_pickle_release, write_release_folder
from _tolerances import assert_matches_original

NAMES = ("tatitok_vq", "tatitok_vae")


def tokens_first(t: torch.Tensor) -> torch.Tensor:
    """Original layout [B, C, 1, N] -> vistok [B, N, C]."""
    return t.squeeze(2).transpose(1, 2)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    models = {}
    root = tmp_path_factory.mktemp("tatitok")
    for name in NAMES:
        meta, expected = load_fixture(name)
        release = write_release_folder(meta, root / f"{name}-original")
        out = root / f"{name}-vistok"
        assert cli_main(["convert", "ta-titok", "--original", str(release), "--output", str(out)]) == 0
        models[name] = (AutoModel.from_pretrained(out).eval(), meta, expected, out)
    return models


def test_vq_token_ids_and_text_conditioned_reconstruction_match_original(converted):
    model, _, expected, _ = converted["tatitok_vq"]
    pixels, text = expected["pixel_values"], expected["text_features"]
    assert isinstance(model, TiTokModel) and model.config.text_conditioned
    assert_matches_original(model, lambda m: m.encoder(pixels.to(m.dtype)), tokens_first(expected["encoder_output"]), "encoder")
    with torch.no_grad():
        enc = model.encode(pixels)
    assert torch.equal(enc.token_ids, expected["token_ids"])
    assert_matches_original(model, lambda m: m.encode(pixels.to(m.dtype)).latents, tokens_first(expected["quantized"]), "quantized")
    assert_matches_original(model, lambda m: m.decode(expected["token_ids"], text_features=text),
                            expected["reconstruction"], "reconstruction")
    # forward decodes with the same text features
    assert_matches_original(model, lambda m: m(pixels.to(m.dtype), text_features=text).reconstruction,
                            expected["reconstruction"], "forward")


def test_vae_latents_and_text_conditioned_reconstruction_match_original(converted):
    model, _, expected, _ = converted["tatitok_vae"]
    pixels, text = expected["pixel_values"], expected["text_features"]
    assert model.config.token_layout == "continuous" and model.config.text_conditioned
    for field in ("latent_mean", "latent_logvar"):
        assert_matches_original(model, lambda m: getattr(m.encode(pixels.to(m.dtype), sample_posterior=False), field),
                                tokens_first(expected[field]), field)
    assert_matches_original(model, lambda m: m.decode_latents(m.encode(pixels.to(m.dtype), sample_posterior=False).latent_mean,
                                                              text_features=text),
                            expected["reconstruction"], "reconstruction")


def test_text_features_change_the_reconstruction(converted):
    model, _, expected, _ = converted["tatitok_vq"]
    with torch.no_grad():
        a = model.decode(expected["token_ids"], text_features=expected["text_features"])
        b = model.decode(expected["token_ids"], text_features=torch.zeros_like(expected["text_features"]))
    assert (a - b).abs().max() > 1e-3


def test_converted_config_and_card(converted):
    model, _, _, out = converted["tatitok_vq"]
    cfg = model.config
    assert (cfg.text_hidden_size, cfg.text_max_length, cfg.num_tokens, cfg.codebook_size) == (32, 8, 8, 1024)
    card = (out / "README.md").read_text()
    assert "TA-TiTok" in card and "text_features=text_features" in card and "8 x 32" in card


def test_text_features_are_checked(converted):
    model, _, expected, _ = converted["tatitok_vq"]
    ids, text = expected["token_ids"], expected["text_features"]
    with pytest.raises(ValueError, match="pass text_features"):
        model.decode(ids)
    with pytest.raises(ValueError, match=r"shape \(2, 8, 32\)"):
        model.decode(ids, text_features=text[:, :4])
    with pytest.raises(TypeError, match="float tensor"):
        model.decode(ids, text_features=text.long())
    with pytest.raises(ValueError, match="pass text_features"):
        model(expected["pixel_values"])
    plain = TiTokModel(TiTokConfig(image_size=32, num_tokens=4, encoder_hidden_size=32, encoder_num_layers=1, encoder_num_heads=2,
                                   decoder_hidden_size=32, decoder_num_layers=1, decoder_num_heads=2, is_legacy=False,
                                   codebook_size=16, token_dim=4, use_l2_norm=False)).eval()
    with pytest.raises(ValueError, match="not text-conditioned"):
        plain.decode(torch.zeros(1, 4, dtype=torch.long), text_features=torch.zeros(1, 77, 768))
    with pytest.raises(ValueError, match="is_legacy must be False"):
        TiTokConfig(text_conditioned=True, is_legacy=True)


def test_pickle_with_yaml_converts_identically_and_plain_titok_is_refused(converted, tmp_path):
    model, meta, _, _ = converted["tatitok_vq"]
    checkpoint, config = write_pickle_release(meta, tmp_path / "pickle")
    out = tmp_path / "from-pickle"
    assert cli_main(["convert", "ta-titok", "--original", str(checkpoint), "--config", str(config), "--output", str(out)]) == 0
    again = AutoModel.from_pretrained(out)
    for (key, a), (_, b) in zip(sorted(model.state_dict().items()), sorted(again.state_dict().items())):
        assert torch.equal(a, b), key
    plain_meta, _ = load_fixture("titok_vq")
    with pytest.raises(ConversionError, match="not a TA-TiTok checkpoint"):
        convert_ta_titok(str(write_release_folder(plain_meta, tmp_path / "plain")), str(tmp_path / "plain-out"))
    assert not (tmp_path / "plain-out").exists()
    bad = dict(meta["original_config"], model={"vq_model": {**meta["original_config"]["model"]["vq_model"], "text_context_length": 77}})
    with pytest.raises(ConversionError, match="text_context_length"):
        convert_ta_titok(str(write_release_folder({**meta, "original_config": bad}, tmp_path / "bad")), str(tmp_path / "bad-out"))


class _WordTokenizer:
    """A stand-in for CLIPTokenizer: start=1, one id per word (2 + its length), end=9."""

    def __call__(self, prompts, padding, truncation, max_length):
        assert padding is False and truncation
        rows = []
        for p in prompts:
            ids = [1] + [2 + len(w) for w in p.split()] + [9]
            rows.append(ids if len(ids) <= max_length else ids[: max_length - 1] + [9])
        return {"input_ids": rows}


def test_open_clip_token_ids_pad_with_zero_and_keep_the_end_token():
    ids = open_clip_token_ids(_WordTokenizer(), ["a bb", "a b c d e f g"], context_length=6)
    assert ids.tolist() == [[1, 3, 4, 9, 0, 0], [1, 3, 3, 3, 3, 9]]
    with pytest.raises(TypeError, match="list of strings"):
        open_clip_token_ids(_WordTokenizer(), [1, 2])


def test_clip_text_features_from_transformers_clip():
    config = CLIPTextConfig(vocab_size=16, hidden_size=16, intermediate_size=32, num_hidden_layers=3, num_attention_heads=2,
                            max_position_embeddings=6, projection_dim=8, eos_token_id=9, bos_token_id=1, pad_token_id=0)
    torch.manual_seed(0)
    model = CLIPTextModelWithProjection(config).eval()
    with torch.no_grad():
        feats = clip_text_features(model, _WordTokenizer(), ["a bb", "ccc"])
        ids = torch.tensor([[1, 3, 4, 9, 0, 0], [1, 5, 9, 0, 0, 0]])
        out = model(input_ids=ids, output_hidden_states=True)
    torch.testing.assert_close(feats.last_hidden_state, out.last_hidden_state)
    torch.testing.assert_close(feats.penultimate_hidden_state, out.hidden_states[-2])
    # pooled at the end token, projected (OpenCLIP: the argmax id)
    torch.testing.assert_close(feats.pooled, model.text_projection(out.last_hidden_state[[0, 1], [3, 2]]))
    plain = CLIPTextModel(config).eval()
    with torch.no_grad():
        assert clip_text_features(plain, _WordTokenizer(), "a").pooled is None
