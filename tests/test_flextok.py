"""FlexTok: the converted model reproduces the original apple/ml-flextok code (token ids exactly; flow decodes
of several prefix lengths with guidance and APG, same seed, within the float32 rounding bound), and the
converter reads the hydra config only as data."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from transformers import AutoImageProcessor, AutoModel

import vistok  # noqa: F401  (registers the Auto classes)
from vistok.cli import main as cli_main
from vistok.conversion import ConversionError
from vistok.modeling.flextok import FlexTokConfig, FlexTokModel
from vistok.modeling.flextok.convert_flextok import convert
from _flextok_fixtures import load_fixture, write_release
from _tolerances import assert_matches_original


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    meta, expected = load_fixture()
    root = tmp_path_factory.mktemp("flextok")
    release, vae = write_release(meta, root)
    out = root / "vistok"
    assert cli_main(["convert", "flextok", "--original", str(release), "--vae", str(vae), "--output", str(out)]) == 0
    return AutoModel.from_pretrained(out).eval(), AutoImageProcessor.from_pretrained(out), meta, expected, out


def test_token_ids_match_original(converted):
    model, _, _, expected, _ = converted
    assert isinstance(model, FlexTokModel)
    with torch.no_grad():
        ids = model.encode(expected["images"]).token_ids
    assert ids.shape == expected["tokens"].shape == (4, model.config.num_tokens)
    assert torch.equal(ids, expected["tokens"])
    assert len(set(ids[:, 0].tolist())) > 1  # the images tokenize differently


@pytest.mark.parametrize("k", [1, 4, 16, 32])
def test_flow_decode_matches_original_with_guidance_and_apg(converted, k):
    model, _, meta, expected, _ = converted
    settings = meta["decode"]
    assert k in settings["ks"] and settings["guidance_scale"] != 1 and settings["perform_norm_guidance"]
    ids = expected["tokens"][:, :k]

    def decode(m):
        return m.decode(ids, num_inference_steps=settings["timesteps"], guidance_scale=settings["guidance_scale"],
                        use_apg=True, generator=torch.Generator().manual_seed(settings["seed"]))

    assert_matches_original(model, decode, expected[f"decode_k{k}"], f"decode k={k}")


def test_prefix_lengths_decode_differently_and_encode_keeps_a_prefix(converted):
    model, _, _, expected, _ = converted
    with torch.no_grad():
        full = model.encode(expected["images"][:2])
        short = model.encode(expected["images"][:2], num_tokens=5)
    assert torch.equal(short.token_ids, full.token_ids[:, :5])
    assert short.latents.shape == (2, 5, model.config.token_dim)
    # the decode of a prefix depends on the prefix (the nested-dropout mask token replaces the rest)
    assert (expected["decode_k1"] - expected["decode_k32"]).abs().max() > 1e-4
    assert model.supported_num_tokens == range(1, model.config.num_tokens + 1)


def test_seeded_decode_draws_noise_per_image_in_order(converted):
    model, _, _, expected, _ = converted
    ids = expected["tokens"][:2, :3]
    kwargs = dict(num_inference_steps=2, guidance_scale=2.0)
    with torch.no_grad():
        both = model.decode(ids, generator=torch.Generator().manual_seed(3), **kwargs)
        again = model.decode(ids, generator=torch.Generator().manual_seed(3), **kwargs)
        first = model.decode(ids[:1], generator=torch.Generator().manual_seed(3), **kwargs)
        per_image = model.decode(ids, generator=[torch.Generator().manual_seed(s) for s in (3, 4)], **kwargs)
        second = model.decode(ids[1:], generator=torch.Generator().manual_seed(4), **kwargs)
    torch.testing.assert_close(both, again, rtol=0, atol=0)
    torch.testing.assert_close(both[:1], first, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(per_image[1:], second, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="generators for 2 images"):
        model.decode(ids, generator=[torch.Generator()], **kwargs)


def test_given_flow_noise_replaces_the_drawn_noise(converted):
    model, _, _, expected, _ = converted
    ids = expected["tokens"][:2, :3]
    kwargs = dict(num_inference_steps=2, guidance_scale=2.0)
    side, channels = model.config.latent_size, model.config.latent_channels
    seeded = torch.Generator().manual_seed(3)
    noise = torch.cat([torch.randn(1, channels, side, side, generator=seeded) for _ in range(2)])
    with torch.no_grad():
        drawn = model.decode(ids, generator=torch.Generator().manual_seed(3), **kwargs)
        given = model.decode(ids, flow_noise=noise, **kwargs)
        other = model.decode(ids, flow_noise=torch.randn_like(noise), **kwargs)
    torch.testing.assert_close(given, drawn, rtol=0, atol=0)
    assert not torch.allclose(other, drawn)
    with pytest.raises(ValueError, match="flow_noise must have shape"):
        model.decode(ids, flow_noise=noise[:1], **kwargs)


def test_released_decoding_defaults_are_in_the_config(converted):
    model, processor, _, _, out = converted
    cfg = model.config
    assert (cfg.num_inference_steps, cfg.guidance_scale, cfg.use_apg) == (20, 7.5, True)
    assert (cfg.apg_momentum, cfg.apg_eta, cfg.apg_norm_threshold) == (-0.5, 0.0, 2.5)
    assert list(processor.pixel_range) == [-1.0, 1.0] and processor.size == cfg.image_size
    assert "vistok convert flextok" in (out / "README.md").read_text()


def test_bad_decode_settings_and_token_counts_are_clear_errors(converted):
    model, _, _, expected, _ = converted
    n = model.config.num_tokens
    with pytest.raises(ValueError, match=f"1..{n}"):
        model.encode(expected["images"][:1], num_tokens=n + 1)
    with pytest.raises(ValueError, match="num_inference_steps"):
        model.decode(expected["tokens"][:1, :2], num_inference_steps=0)
    with pytest.raises(ValueError, match="guidance_scale"):
        model.decode(expected["tokens"][:1, :2], guidance_scale=float("nan"))
    with pytest.raises(ValueError, match="codebook_size"):
        model.decode(torch.full((1, 2), model.config.codebook_size))


def test_unknown_target_is_an_error_naming_it_and_nothing_is_written(tmp_path):
    meta, _ = load_fixture()
    config = copy.deepcopy(meta["config"])
    config["decoder"]["module_dict"]["dec_time_embedder"]["_target_"] = "os.system"
    release, vae = write_release(meta, tmp_path, config)
    out = tmp_path / "out"
    with pytest.raises(ConversionError, match=r"unknown _target_ 'os\.system' at config\.decoder\.module_dict\.dec_time_embedder"):
        convert(str(release), str(out), vae=str(vae))
    assert not out.exists()


def test_converter_errors_name_what_is_wrong(tmp_path):
    meta, _ = load_fixture()
    config = copy.deepcopy(meta["config"])
    config["encoder"]["module_dict"]["enc_seq_packer"]["mask_mode"] = "full"
    release, vae = write_release(meta, tmp_path / "a", config)
    with pytest.raises(ConversionError, match="causal_last"):
        convert(str(release), str(tmp_path / "out"), vae=str(vae))
    release, vae = write_release(meta, tmp_path / "b")
    (vae / "config.json").write_text(json.dumps({**json.loads((vae / "config.json").read_text()), "latent_channels": 16}))
    with pytest.raises(ConversionError, match="16 latent channels"):
        convert(str(release), str(tmp_path / "out"), vae=str(vae))
    release, vae = write_release(meta, tmp_path / "c")
    (release / "config.json").unlink()
    with pytest.raises(ConversionError, match="--config"):
        convert(str(release), str(tmp_path / "out"), vae=str(vae))


def test_config_checks_fields():
    with pytest.raises(ValueError, match="fsq_levels"):
        FlexTokConfig(fsq_levels=[1, 2])
    with pytest.raises(ValueError, match="encoder_head_dim"):
        FlexTokConfig(encoder_hidden_size=100)
    with pytest.raises(ValueError, match="image_size"):
        FlexTokConfig(image_size=100)


def test_sdpa_and_eager_attention_agree_and_masks_are_prefix_lm(converted):
    from vistok.modeling.flextok.modeling_flextok import prefix_lm_mask

    model, _, _, expected, out = converted
    eager = FlexTokModel.from_pretrained(out, attn_implementation="eager").eval()
    with torch.no_grad():
        latents = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(0))
        torch.testing.assert_close(eager.encoder(latents), model.encoder(latents), rtol=1e-5, atol=1e-5)
    allowed = prefix_lm_mask(3, 5, torch.float32, "cpu")[0, 0] == 0
    assert allowed.tolist() == [[True, True, True, False, False]] * 3 + [[True, True, True, True, False],
                                                                         [True, True, True, True, True]]
    # the registers are causal: a later register never changes an earlier token
    with torch.no_grad():
        ids = model.encode(expected["images"][:1]).token_ids
        model.encoder.registers.data[-1] += 1.0
        try:
            changed = model.encode(expected["images"][:1]).token_ids
        finally:
            model.encoder.registers.data[-1] -= 1.0
    assert torch.equal(changed[:, :-1], ids[:, :-1])


def test_forward_reconstructs_in_eval_and_refuses_training(converted):
    model, _, _, expected, _ = converted
    images = expected["images"][:1]
    steps, model.config.num_inference_steps = model.config.num_inference_steps, 2  # forward decodes with the defaults
    try:
        with torch.no_grad():
            out = model(images, num_tokens=4, generator=torch.Generator().manual_seed(1))
            decoded = model.decode(out.token_ids, generator=torch.Generator().manual_seed(1))
    finally:
        model.config.num_inference_steps = steps
    assert out.token_ids.shape == (1, 4)
    torch.testing.assert_close(out.reconstruction, decoded, rtol=0, atol=0)
    model.train()
    try:
        with pytest.raises(ValueError, match="flow-matching objective"):
            model(images)
    finally:
        model.eval()


def test_config_embedded_in_safetensors_metadata_is_read_as_data(tmp_path):
    from safetensors.torch import load_file, save_file

    meta, expected = load_fixture()
    release, vae = write_release(meta, tmp_path)
    (release / "config.json").unlink()
    weights = load_file(str(release / "model.safetensors"))
    # the original's save_safetensors stores str(value) per top-level key, read back with ast.literal_eval
    save_file(weights, str(release / "model.safetensors"), metadata={k: str(v) for k, v in meta["config"].items()})
    out = convert(str(release), str(tmp_path / "out"), vae=str(vae))
    model = FlexTokModel.from_pretrained(out).eval()
    with torch.no_grad():
        assert torch.equal(model.encode(expected["images"]).token_ids, expected["tokens"])
