"""The contract every quantizer follows.

``forward(z)`` quantizes the last dimension of ``z [..., D]`` and returns a :class:`QuantizerOutput`;
``indices_to_codes(indices)`` and ``codes_to_indices(codes)`` convert between the two without
gradients. Losses are already weighted; ``loss`` is their sum.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class QuantizerOutput:
    """quantized: straight-through codes, the input's shape ``[..., D]``.
    indices: ``[...]`` (one id per vector), or ``[..., Q]`` for residual stacks of Q quantizers.
    loss: the weighted sum of the terms below that apply (a 0-dim tensor).
    perplexity / codebook_usage: exp(entropy) of the batch's code histogram, and the fraction of codes used.
    """

    quantized: torch.Tensor
    indices: torch.LongTensor
    loss: torch.Tensor
    commitment_loss: torch.Tensor | None = None
    codebook_loss: torch.Tensor | None = None
    entropy_loss: torch.Tensor | None = None
    perplexity: torch.Tensor | None = None
    codebook_usage: torch.Tensor | None = None


def usage_statistics(indices: torch.Tensor, codebook_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(perplexity, fraction of codes used) of a batch of indices; O(codebook_size) memory."""
    flat = indices.reshape(-1)
    if flat.numel() == 0:
        zero = torch.zeros((), device=indices.device)
        return zero, zero
    counts = torch.bincount(flat, minlength=codebook_size).float()
    probs = counts / flat.numel()
    entropy = -(probs * torch.log(probs.clamp_min(1e-12))).sum()
    return entropy.exp(), (counts > 0).float().mean()


class Quantizer(nn.Module):
    """Base class: subclasses set ``codebook_size`` and ``dim`` and implement the three methods."""

    codebook_size: int
    dim: int

    def check_input(self, z: torch.Tensor) -> None:
        if not isinstance(z, torch.Tensor) or not z.is_floating_point():
            raise TypeError(f"{type(self).__name__} quantizes floating-point tensors [..., {self.dim}]")
        if z.ndim == 0 or z.shape[-1] != self.dim:
            raise ValueError(f"{type(self).__name__} expects vectors of size {self.dim} in the last dimension, got {tuple(z.shape)}")

    def check_indices(self, indices: torch.Tensor) -> None:
        if not isinstance(indices, torch.Tensor) or indices.is_floating_point() or indices.dtype == torch.bool:
            raise TypeError(f"{type(self).__name__} indices must be an integer tensor")
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= self.codebook_size):
            raise ValueError(
                f"indices must lie in [0, {self.codebook_size - 1}], got [{int(indices.min())}, {int(indices.max())}]"
            )
