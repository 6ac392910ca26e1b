"""Decoder layers of MAGVIT-v2-style conv decoders (Open-MAGVIT2's ``improved_model.py``): a GroupNorm whose
scale and shift are predicted from the quantized latent's per-channel statistics, and a depth-to-space
(pixel-shuffle, DCR order) upsampler."""

from __future__ import annotations

import torch
from torch import nn


class AdaptiveGroupNorm(nn.Module):
    """``gamma(std(style)) * GroupNorm(x) + beta(mean(style))``: GroupNorm without affine parameters; the
    per-channel statistics of the style map ``[B, z, h, w]`` are taken over its positions, the standard
    deviation as ``sqrt(var + eps)`` with the **unbiased** variance (``torch.var``'s default, as the original)."""

    def __init__(self, style_channels: int, channels: int, num_groups: int = 32, eps: float = 1e-6):
        super().__init__()
        self.gn = nn.GroupNorm(num_groups=num_groups, num_channels=channels, eps=eps, affine=False)
        self.gamma = nn.Linear(style_channels, channels)
        self.beta = nn.Linear(style_channels, channels)
        self.eps = eps

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        flat = style.flatten(2)
        scale = self.gamma((flat.var(dim=-1) + self.eps).sqrt())[:, :, None, None]
        bias = self.beta(flat.mean(dim=-1))[:, :, None, None]
        return scale * self.gn(x) + bias


def depth_to_space(x: torch.Tensor, block_size: int) -> torch.Tensor:
    """``[..., C, H, W] -> [..., C / b², H·b, W·b]`` in depth-column-row order: channel ``(i·b + j)·C/b² + c``
    goes to output channel c at offset (i, j) (TensorFlow's DCR ``depth_to_space``; not ``pixel_shuffle``'s CRD)."""
    c, h, w = x.shape[-3:]
    s = block_size * block_size
    if c % s:
        raise ValueError(f"depth_to_space needs channels divisible by {s}, got {c}")
    outer = x.shape[:-3]
    x = x.reshape(-1, block_size, block_size, c // s, h, w).permute(0, 3, 4, 1, 5, 2)
    return x.reshape(*outer, c // s, h * block_size, w * block_size)


class DepthToSpaceUpsample(nn.Module):
    """2x upsampling: a 3x3 conv to 4x the channels, then :func:`depth_to_space` (``conv1`` as the original)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels * 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return depth_to_space(self.conv1(x), 2)
