"""Taming-style convolutional encoder and decoder (Esser et al. 2021 lineage), shared by the
tokenizers that use it: VAR's VQVAE (``models/basic_vae.py``) and LlamaGen's VQ models
(``tokenizer/tokenizer_image/vq_model.py``).

Both originals have the same computation; only their module names differ, and converters map them:

- a ResNet block is GroupNorm(32, eps 1e-6) -> SiLU -> 3x3 conv -> GroupNorm -> SiLU -> dropout ->
  3x3 conv, plus the input (through a 1x1 conv when the channel count changes);
- self-attention over the spatial positions is GroupNorm -> one 1x1 conv to q, k, v ->
  softmax(q k^T / sqrt(C)) v -> 1x1 conv, plus the input (LlamaGen's separate q/k/v convs are
  concatenated into the fused one by its converter);
- downsampling pads right and bottom by one and applies a stride-2 3x3 conv; upsampling is nearest
  2x followed by a 3x3 conv;
- the encoder runs level by level (``num_res_blocks`` ResNet blocks each, attention after each
  block at the levels in ``attention_levels``, downsampling between levels), then a middle
  ResNet -> attention -> ResNet, then GroupNorm -> SiLU -> 3x3 conv to ``z_channels`` (twice that
  with ``double_z``);
- the decoder mirrors it from the lowest resolution up. Both VAR and LlamaGen give the decoder one
  ResNet block more per level than the encoder (``num_res_blocks + 1``); :class:`ConvDecoder` takes
  the count it builds, so a config states the encoder's count and passes ``+ 1`` (see
  ``decoder_res_blocks`` in the families' configs).

Level ``i`` has ``channels * channel_mult[i]`` channels in both encoder and decoder, level 0 being
the full resolution. ``attention_levels=None`` means "the lowest resolution only" (both originals);
``()`` turns level attention off (VAR ``using_sa=False``); ``mid_attention`` is VAR's
``using_mid_sa``. Not ported: LlamaGen's ``norm_type='batch'`` (SyncBatchNorm; no release uses it)
and ``resamp_with_conv=False`` (no release uses it).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def _group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, channels, eps=1e-6)


class ConvResnetBlock(nn.Module):
    """Pre-activation ResNet block with a 1x1 ``shortcut`` conv when the channel count changes."""

    def __init__(self, in_channels: int, out_channels: int | None = None, dropout: float = 0.0):
        super().__init__()
        out_channels = in_channels if out_channels is None else out_channels
        self.in_channels, self.out_channels = in_channels, out_channels
        self.norm1 = _group_norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = _group_norm(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        # one step a statement, so that each intermediate map is freed as soon as the next exists (as the originals
        # do): ``conv2(silu(norm2(conv1(...))))`` in one expression kept conv1's output alive through conv2
        h = self.conv1(F.silu(self.norm1(hidden_states)))
        h = F.silu(self.norm2(h))
        h = self.conv2(self.dropout(h))
        return self.shortcut(hidden_states) + h


class ConvAttentionBlock(nn.Module):
    """Single-head self-attention over the ``H*W`` positions of a feature map, with a fused 1x1
    ``qkv`` conv (output channels ordered q, k, v) and a 1x1 ``proj_out``."""

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        self.norm = _group_norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        b, c, h, w = hidden_states.shape
        qkv = self.qkv(self.norm(hidden_states)).reshape(b, 3, c, h * w).transpose(-1, -2)  # [B, 3, HW, C]
        q, k, v = qkv.unbind(1)
        out = F.scaled_dot_product_attention(q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1)).squeeze(1)
        return hidden_states + self.proj_out(out.transpose(1, 2).reshape(b, c, h, w))


class Downsample2x(nn.Module):
    """Zero-pad right and bottom by one, then a stride-2 3x3 conv (halves even sizes)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(hidden_states, (0, 1, 0, 1)))


class Upsample2x(nn.Module):
    """Nearest-neighbour 2x, then a 3x3 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(hidden_states, scale_factor=2.0, mode="nearest"))


class ConvLevel(nn.Module):
    """One resolution level: ResNet blocks, each followed by attention when ``attention`` is set,
    then an optional resampling module (``resample``: Downsample2x in the encoder, Upsample2x in
    the decoder)."""

    def __init__(self, in_channels: int, out_channels: int, num_res_blocks: int, attention: bool, dropout: float,
                 resample: nn.Module | None):
        super().__init__()
        blocks, attentions = [], []
        for _ in range(num_res_blocks):
            blocks.append(ConvResnetBlock(in_channels, out_channels, dropout))
            in_channels = out_channels
            if attention:
                attentions.append(ConvAttentionBlock(out_channels))
        self.res_blocks = nn.ModuleList(blocks)
        self.attentions = nn.ModuleList(attentions)
        self.resample = resample

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        for i, block in enumerate(self.res_blocks):
            hidden_states = block(hidden_states)
            if len(self.attentions):
                hidden_states = self.attentions[i](hidden_states)
        if self.resample is not None:
            hidden_states = self.resample(hidden_states)
        return hidden_states


class ConvMidBlock(nn.Module):
    """ResNet -> attention (or identity) -> ResNet at the lowest resolution."""

    def __init__(self, channels: int, attention: bool, dropout: float):
        super().__init__()
        self.res_in = ConvResnetBlock(channels, channels, dropout)
        self.attention = ConvAttentionBlock(channels) if attention else nn.Identity()
        self.res_out = ConvResnetBlock(channels, channels, dropout)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.res_out(self.attention(self.res_in(hidden_states)))


def _check_architecture(channels: int, channel_mult: Sequence[int], num_res_blocks: int,
                        attention_levels: Sequence[int] | None) -> tuple[tuple[int, ...], tuple[int, ...]]:
    mult = tuple(channel_mult)
    if not mult or any(isinstance(m, bool) or not isinstance(m, int) or m < 1 for m in mult):
        raise ValueError(f"channel_mult must be a non-empty sequence of positive integers, got {channel_mult!r}")
    if channels < 1 or any((channels * m) % 32 for m in mult):
        raise ValueError(f"channels * channel_mult[i] must be positive multiples of 32 (GroupNorm with 32 groups), "
                         f"got channels={channels}, channel_mult={mult}")
    if num_res_blocks < 1:
        raise ValueError(f"num_res_blocks must be >= 1, got {num_res_blocks}")
    levels = (len(mult) - 1,) if attention_levels is None else tuple(attention_levels)
    if any(not 0 <= level < len(mult) for level in levels):
        raise ValueError(f"attention_levels must be level indices in [0, {len(mult) - 1}], got {attention_levels!r}")
    return mult, levels


class ConvEncoder(nn.Module):
    """Pixels ``[B, in_channels, H, W]`` -> ``[B, z_channels (x2 with double_z), H / f, W / f]`` with
    ``f = 2 ** (len(channel_mult) - 1)``."""

    def __init__(self, channels: int = 128, channel_mult: Sequence[int] = (1, 1, 2, 2, 4), num_res_blocks: int = 2,
                 z_channels: int = 256, in_channels: int = 3, double_z: bool = False,
                 attention_levels: Sequence[int] | None = None, mid_attention: bool = True, dropout: float = 0.0):
        super().__init__()
        mult, attn_levels = _check_architecture(channels, channel_mult, num_res_blocks, attention_levels)
        self.downsample_factor = 2 ** (len(mult) - 1)
        self.conv_in = nn.Conv2d(in_channels, channels, 3, padding=1)
        levels, block_in = [], channels
        for i, m in enumerate(mult):
            block_out = channels * m
            last = i == len(mult) - 1
            levels.append(ConvLevel(block_in, block_out, num_res_blocks, i in attn_levels, dropout,
                                    None if last else Downsample2x(block_out)))
            block_in = block_out
        self.down_levels = nn.ModuleList(levels)
        self.mid = ConvMidBlock(block_in, mid_attention, dropout)
        self.norm_out = _group_norm(block_in)
        self.conv_out = nn.Conv2d(block_in, 2 * z_channels if double_z else z_channels, 3, padding=1)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        hidden_states = self.conv_in(pixel_values)
        for level in self.down_levels:
            hidden_states = level(hidden_states)
        hidden_states = self.mid(hidden_states)
        return self.conv_out(F.silu(self.norm_out(hidden_states)))


class ConvDecoder(nn.Module):
    """Latents ``[B, z_channels, h, w]`` -> pixels ``[B, out_channels, h * f, w * f]``.

    ``up_levels`` are stored in the order they run: ``up_levels[0]`` is the lowest resolution
    (level ``len(channel_mult) - 1``), the last one the full resolution (level 0).
    ``num_res_blocks`` is the number of ResNet blocks per level (VAR and LlamaGen: their encoder's
    count + 1).
    """

    def __init__(self, channels: int = 128, channel_mult: Sequence[int] = (1, 1, 2, 2, 4), num_res_blocks: int = 3,
                 z_channels: int = 256, out_channels: int = 3,
                 attention_levels: Sequence[int] | None = None, mid_attention: bool = True, dropout: float = 0.0):
        super().__init__()
        mult, attn_levels = _check_architecture(channels, channel_mult, num_res_blocks, attention_levels)
        self.upsample_factor = 2 ** (len(mult) - 1)
        block_in = channels * mult[-1]
        self.conv_in = nn.Conv2d(z_channels, block_in, 3, padding=1)
        self.mid = ConvMidBlock(block_in, mid_attention, dropout)
        levels = []
        for i in reversed(range(len(mult))):
            block_out = channels * mult[i]
            levels.append(ConvLevel(block_in, block_out, num_res_blocks, i in attn_levels, dropout,
                                    Upsample2x(block_out) if i != 0 else None))
            block_in = block_out
        self.up_levels = nn.ModuleList(levels)
        self.norm_out = _group_norm(block_in)
        self.conv_out = nn.Conv2d(block_in, out_channels, 3, padding=1)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        # channels-last activations let oneDNN/cuDNN pick faster convolutions (~20% of the decode time
        # of VAR's ch-160 decoder on CPU); the output is returned in the default layout
        hidden_states = self.mid(self.conv_in(latents.contiguous(memory_format=torch.channels_last)))
        for level in self.up_levels:
            hidden_states = level(hidden_states)
        return self.conv_out(F.silu(self.norm_out(hidden_states))).contiguous()


def taming_conv_autoencoder_key(key: str, num_levels: int) -> str:
    """One key of a taming-layout Encoder/Decoder (VAR's ``basic_vae``, taming-transformers' ``model.py`` as IBQ
    uses it; below ``encoder.``/``decoder.``) -> vistok ``ConvEncoder``/``ConvDecoder``. The original
    decoder's ``up.{i}`` is indexed by level; ours runs lowest resolution first."""
    key = re.sub(r"^down\.(\d+)\.block\.", r"down_levels.\1.res_blocks.", key)
    key = re.sub(r"^down\.(\d+)\.attn\.", r"down_levels.\1.attentions.", key)
    key = re.sub(r"^down\.(\d+)\.downsample\.", r"down_levels.\1.resample.", key)
    match = re.match(r"^up\.(\d+)\.(block|attn|upsample)\.(.*)$", key)
    if match:
        name = {"block": "res_blocks", "attn": "attentions", "upsample": "resample"}[match[2]]
        key = f"up_levels.{num_levels - 1 - int(match[1])}.{name}.{match[3]}"
    key = re.sub(r"^mid\.block_1\.", "mid.res_in.", key)
    key = re.sub(r"^mid\.attn_1\.", "mid.attention.", key)
    key = re.sub(r"^mid\.block_2\.", "mid.res_out.", key)
    return key.replace(".nin_shortcut.", ".shortcut.")
