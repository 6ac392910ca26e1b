"""Shared taming-style conv encoder/decoder: shapes, configuration space, gradients. Numerical parity
with the originals is proven through the families that use it (VAR VQVAE in tests/test_var.py)."""

import pytest
import torch

from vistok.modeling.layers.conv_autoencoder import ConvAttentionBlock, ConvDecoder, ConvEncoder, ConvResnetBlock


def test_encoder_decoder_shapes_and_gradients():
    torch.manual_seed(0)
    enc = ConvEncoder(channels=32, channel_mult=(1, 2, 2), num_res_blocks=1, z_channels=4)
    dec = ConvDecoder(channels=32, channel_mult=(1, 2, 2), num_res_blocks=2, z_channels=4)
    assert enc.downsample_factor == dec.upsample_factor == 4
    x = torch.randn(2, 3, 16, 16, requires_grad=True)
    z = enc(x)
    assert z.shape == (2, 4, 4, 4)
    y = dec(z)
    assert y.shape == (2, 3, 16, 16)
    y.square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for name, p in [*enc.named_parameters(), *dec.named_parameters()]:
        assert p.grad is not None, name


def test_layout_options():
    enc = ConvEncoder(channels=32, channel_mult=(1, 2), num_res_blocks=2, z_channels=8, double_z=True)
    assert enc(torch.randn(1, 3, 8, 8)).shape == (1, 16, 4, 4)
    # default: attention after every block of the lowest level only, plus the mid attention
    assert [len(level.attentions) for level in enc.down_levels] == [0, 2]
    assert isinstance(enc.mid.attention, ConvAttentionBlock)
    assert enc.down_levels[-1].resample is None and enc.down_levels[0].resample is not None
    dec = ConvDecoder(channels=32, channel_mult=(1, 2), num_res_blocks=3, z_channels=8, attention_levels=(),
                      mid_attention=False)
    assert [len(level.res_blocks) for level in dec.up_levels] == [3, 3]
    assert not any(isinstance(m, ConvAttentionBlock) for m in dec.modules())
    # up_levels run lowest resolution first: the first has the widest channels, the last no upsampling
    assert dec.up_levels[0].res_blocks[0].out_channels == 64 and dec.up_levels[-1].resample is None
    dec = ConvDecoder(channels=32, channel_mult=(1, 2), num_res_blocks=1, z_channels=8, attention_levels=(0, 1))
    assert [len(level.attentions) for level in dec.up_levels] == [1, 1]


def test_resnet_shortcut_only_when_channels_change():
    assert isinstance(ConvResnetBlock(32, 32).shortcut, torch.nn.Identity)
    block = ConvResnetBlock(32, 64)
    assert block.shortcut.weight.shape == (64, 32, 1, 1)
    assert block(torch.randn(1, 32, 4, 4)).shape == (1, 64, 4, 4)


def test_attention_block_matches_its_definition():
    torch.manual_seed(1)
    block = ConvAttentionBlock(32).eval()
    x = torch.randn(2, 32, 3, 5)
    b, c, h, w = x.shape
    q, k, v = block.qkv(block.norm(x)).reshape(b, 3, c, h * w).unbind(1)  # [B, C, HW]
    attn = torch.softmax(q.transpose(1, 2) @ k * c ** -0.5, dim=-1)      # [B, HWq, HWk]
    expected = x + block.proj_out((v @ attn.transpose(1, 2)).reshape(b, c, h, w))
    torch.testing.assert_close(block(x), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kwargs, message", [
    (dict(channel_mult=()), "channel_mult"),
    (dict(channels=40), "multiples of 32"),
    (dict(num_res_blocks=0), "num_res_blocks"),
    (dict(attention_levels=(3,)), "attention_levels"),
])
def test_bad_architecture(kwargs, message):
    args = dict(channels=32, channel_mult=(1, 2), num_res_blocks=1, z_channels=4)
    with pytest.raises(ValueError, match=message):
        ConvEncoder(**{**args, **kwargs})
