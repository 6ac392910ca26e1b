"""Finite scalar quantization (Mentzer et al. 2023, arXiv 2309.15505), as used by FlexTok and Cosmos."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from .base import ProjectedQuantizer, QuantizerOutput, usage_statistics

class FSQ(ProjectedQuantizer):
    """Finite scalar quantization over the last dimension of ``z [..., dim]``.

    Each of the ``len(levels)`` channels is bounded with ``tanh`` (shifted by half a level for even
    level counts, as in the paper), rounded with a straight-through gradient, and divided by
    ``levels // 2`` so codes lie in [-1, 1]. The index is mixed-radix over the channels, channel 0
    least significant: ``index = Σ_i digit_i · Π_{j<i} levels_j`` with ``digit_i`` in
    ``[0, levels_i)``. ``codebook_size = prod(levels)``; ``levels=[8, 8, 8, 5, 5, 5]`` gives 64000 codes.
    With ``dim != len(levels)`` Linear projections map in and out of the code space.
    There is no auxiliary loss (``loss`` is a 0-dim zero). Math in fp32.
    """

    def __init__(self, levels: Sequence[int], dim: int | None = None):
        levels = list(levels)
        if not levels or any(not isinstance(level, int) or isinstance(level, bool) or level < 2 for level in levels):
            raise ValueError(f"levels must be a non-empty list of integers >= 2, got {levels}")
        codebook_size = math.prod(levels)
        if codebook_size >= 2**63:
            raise ValueError(f"prod(levels) must fit an int64 index, got {codebook_size}")
        super().__init__(len(levels) if dim is None else dim, len(levels))
        self.levels = levels
        self.codebook_size = codebook_size
        levels_tensor, basis = self.constant_buffers()
        self.register_buffer("_levels", levels_tensor, persistent=False)
        self.register_buffer("_basis", basis, persistent=False)

    def constant_buffers(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The values of the non-persistent ``_levels`` and ``_basis`` buffers. A model loaded with
        ``from_pretrained`` (meta-device init) must copy them back in its ``_init_weights``."""
        basis = [1]
        for level in self.levels[:-1]:
            basis.append(basis[-1] * level)
        return torch.tensor(self.levels, dtype=torch.long), torch.tensor(basis, dtype=torch.long)

    def _half_width(self) -> torch.Tensor:
        return (self._levels // 2).float()

    def bound(self, z: torch.Tensor) -> torch.Tensor:
        """Squash fp32 code-space ``z`` so that rounding yields ``levels_i`` values per channel."""
        eps = 1e-3
        levels = self._levels.float()
        half_l = (levels - 1) * (1 + eps) / 2
        offset = torch.where(self._levels % 2 == 0, 0.5, 0.0).to(levels)
        shift = torch.atanh(offset / half_l)
        return torch.tanh(z + shift) * half_l - offset

    def _digits_to_indices(self, digits: torch.Tensor) -> torch.LongTensor:
        return (digits * self._basis).sum(-1)

    def indices_to_codes(self, indices: torch.LongTensor) -> torch.Tensor:
        """Codes ``[..., dim]`` (in [-1, 1] before any projection) for indices ``[...]``."""
        self.check_indices(indices)
        digits = (indices.unsqueeze(-1) // self._basis) % self._levels
        half_width = self._half_width()
        return self._from_code_space((digits.float() - half_width) / half_width)

    def codes_to_indices(self, codes: torch.Tensor) -> torch.LongTensor:
        """Indices of the nearest codes — for codes from ``indices_to_codes`` or ``forward`` the original ones."""
        codes = self._codes_to_code_space(codes)
        half_width = self._half_width()
        digits = torch.round(codes * half_width + half_width).long()
        digits = torch.minimum(digits.clamp_min(0), self._levels - 1)
        return self._digits_to_indices(digits)

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        self.check_input(z)
        bounded = self.bound(self._to_code_space(z))
        rounded = torch.round(bounded.detach())
        half_width = self._half_width()
        # forward value exactly the code; gradient of the bound (straight through the rounding)
        codes = (rounded + (bounded - bounded.detach())) / half_width
        indices = self._digits_to_indices(rounded.long() + self._levels // 2)
        perplexity, usage = usage_statistics(indices, self.codebook_size)
        loss = torch.zeros((), device=z.device)
        return QuantizerOutput(self._from_code_space(codes, z.dtype), indices, loss,
                               perplexity=perplexity, codebook_usage=usage)
