"""The VisualTokenizer contract per token layout: encode/forward/decode agree, ``return_dict=False``
works for every family, and token ids / latents of the wrong shape raise ValueErrors that name them."""

import pytest
import torch

from vistok import LlamaGenVQModel, OneDPieceModel, TiTokModel
from vistok.modeling.llamagen.configuration_llamagen import LlamaGenVQConfig
from vistok.modeling.one_d_piece.configuration_one_d_piece import OneDPieceConfig
from vistok.modeling.titok.configuration_titok import TiTokConfig
from vistok.modeling.var.configuration_var import VARVQVAEConfig
from vistok.modeling.var.modeling_var import VARVQVAE

TITOK_TINY = dict(image_size=16, encoder_hidden_size=64, encoder_num_layers=1, encoder_num_heads=1,
                  decoder_hidden_size=64, decoder_num_layers=1, decoder_num_heads=1,
                  pixel_hidden_channels=32, pixel_embed_dim=32, pixel_channel_mult=[1, 1, 1, 1, 2])


def _build(name):
    torch.manual_seed(0)
    if name == "titok":
        return TiTokModel(TiTokConfig(num_tokens=8, **TITOK_TINY)).eval()
    if name == "one-d-piece":
        return OneDPieceModel(OneDPieceConfig(num_tokens=8, **TITOK_TINY)).eval()
    if name == "titok-vae":
        return TiTokModel(TiTokConfig(num_tokens=4, quantize_mode="vae", token_dim=8, is_legacy=False, **TITOK_TINY)).eval()
    if name == "llamagen-vq":
        return LlamaGenVQModel(LlamaGenVQConfig(image_size=16, codebook_size=16, token_dim=4, hidden_channels=32,
                                                encoder_channel_mult=[1, 2], decoder_channel_mult=[2, 1],
                                                z_channels=32, num_res_blocks=1)).eval()
    return VARVQVAE(VARVQVAEConfig(codebook_size=16, z_channels=4, channels=32, channel_mult=[1, 2],
                                   patch_nums=[1, 2, 4])).eval()


FAMILIES = ["titok", "one-d-piece", "titok-vae", "llamagen-vq", "var-vqvae"]


@pytest.mark.parametrize("name", FAMILIES)
def test_encode_and_forward_return_dict_false(name):
    model = _build(name)
    size = model.config.image_size
    low, high = model.config.pixel_range
    pixels = low + (high - low) * torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    kwargs = {"sample_posterior": False} if name == "titok-vae" else {}
    with torch.no_grad():
        enc = model.encode(pixels, **kwargs)
        enc_tuple = model.encode(pixels, return_dict=False, **kwargs)
        out = model(pixels, **kwargs)
        out_tuple = model(pixels, return_dict=False, **kwargs)
    assert isinstance(enc_tuple, tuple) and len(enc_tuple) == len(enc.to_tuple())
    for a, b in zip(enc_tuple, enc.to_tuple()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # same input, same model, same thread: identical
    torch.testing.assert_close(out_tuple[0], out.reconstruction, rtol=0, atol=0)
    if model.is_continuous:
        torch.testing.assert_close(model.decode_latents(enc.latents), out.reconstruction, rtol=0, atol=0)
    else:
        assert torch.equal(enc.token_ids, out.token_ids)
        # decode(token ids) is the reconstruction forward computes. forward decodes the straight-through
        # latents z + (q - z), equal to the codebook rows q up to one fp32 rounding of |z| (~1e-7 relative),
        # which the decoder's layers amplify by their gain: 1e-4 absolute on O(1) pixels bounds that.
        torch.testing.assert_close(model.decode(enc.token_ids), out.reconstruction, rtol=1e-4, atol=1e-4)


def test_2d_token_ids_shape_errors():
    model = _build("llamagen-vq")
    with pytest.raises(ValueError, match="token_ids must be a square grid"):
        model.decode(torch.zeros(1, 16, dtype=torch.long))
    with pytest.raises(ValueError, match="token_ids must be a square grid"):
        model.decode(torch.zeros(1, 4, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="token_ids must lie in"):
        model.decode(torch.full((1, 4, 4), 16, dtype=torch.long))


def test_multiscale_token_ids_and_latents_shape_errors():
    model = _build("var-vqvae")
    with pytest.raises(ValueError, match=r"token_ids must have shape \[B, 21\]"):
        model.decode(torch.zeros(1, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"latents must have shape \[B, 4, 4, 4\]"):
        model.decode_latents(torch.zeros(1, 16, 4))
    with pytest.raises(TypeError, match="latents must be a floating-point tensor"):
        model.decode_latents(torch.zeros(1, 4, 4, 4, dtype=torch.long))


def test_multiscale_next_scale_operations_agree_with_decode_and_teacher_forcing():
    model = _build("var-vqvae")
    pixels = torch.rand(2, 3, model.config.image_size, model.config.image_size,
                        generator=torch.Generator().manual_seed(2)) * 2 - 1
    nums, dim = model.config.patch_nums, model.config.z_channels
    with torch.no_grad():
        ids = model.encode(pixels).token_ids
        f_hat = torch.zeros(2, dim, nums[-1], nums[-1])
        inputs = []
        for k, scale_ids in enumerate(model.split_scales(ids)):
            flat = scale_ids.flatten(1)
            h = model.embed_scale(k, flat)
            # soft weights that are one-hot pick the same codebook rows (sum of one exact product)
            one_hot = torch.nn.functional.one_hot(flat, model.config.codebook_size).float()
            torch.testing.assert_close(model.embed_scale(k, one_hot), h, rtol=0, atol=0)
            assert h.shape == (2, dim, nums[k], nums[k])
            f_hat, next_input = model.next_scale_input(k, f_hat, h)
            if k != len(nums) - 1:
                inputs.append(next_input.flatten(2).transpose(1, 2))
        # the same operations in the same order as decode's lookup and the trainer's teacher forcing
        torch.testing.assert_close(model.decode_latents(f_hat), model.decode(ids), rtol=0, atol=0)
        torch.testing.assert_close(torch.cat(inputs, dim=1), model.teacher_forcing_input(ids), rtol=0, atol=0)
