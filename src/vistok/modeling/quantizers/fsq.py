"""Finite scalar quantization (Mentzer et al. 2023, arXiv 2309.15505), as used by FlexTok and Cosmos."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

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
        basis = [1]
        for level in levels[:-1]:
            basis.append(basis[-1] * level)
        self.basis = basis
        # The level and basis tensors are derived from the Python lists on first use on each device,
        # not registered as buffers: from_pretrained builds models on the meta device and leaves
        # non-persistent buffers uninitialised, while these need no restoring by any model.
        self._constants: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def constants(self, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(levels, basis)`` as int64 tensors on ``device`` (cached per device)."""
        device = torch.device(device)
        cached = self._constants.get(device)
        if cached is None:
            cached = (torch.tensor(self.levels, dtype=torch.long, device=device),
                      torch.tensor(self.basis, dtype=torch.long, device=device))
            self._constants[device] = cached
        return cached

    def _half_width(self, device: torch.device) -> torch.Tensor:
        return (self.constants(device)[0] // 2).float()

    def bound(self, z: torch.Tensor) -> torch.Tensor:
        """Squash fp32 code-space ``z`` so that rounding yields ``levels_i`` values per channel."""
        eps = 1e-3
        int_levels = self.constants(z.device)[0]
        levels = int_levels.float()
        half_l = (levels - 1) * (1 + eps) / 2
        offset = torch.where(int_levels % 2 == 0, 0.5, 0.0).to(levels)
        shift = torch.atanh(offset / half_l)
        return torch.tanh(z + shift) * half_l - offset

    def _digits_to_indices(self, digits: torch.Tensor) -> torch.LongTensor:
        return (digits * self.constants(digits.device)[1]).sum(-1)

    def indices_to_codes(self, indices: torch.LongTensor) -> torch.Tensor:
        """Codes ``[..., dim]`` (in [-1, 1] before any projection) for indices ``[...]``."""
        self.check_indices(indices)
        levels, basis = self.constants(indices.device)
        digits = (indices.unsqueeze(-1) // basis) % levels
        half_width = self._half_width(indices.device)
        return self._from_code_space((digits.float() - half_width) / half_width)

    def codes_to_indices(self, codes: torch.Tensor) -> torch.LongTensor:
        """Indices of the nearest codes — for codes from ``indices_to_codes`` or ``forward`` the original ones."""
        codes = self._codes_to_code_space(codes)
        half_width = self._half_width(codes.device)
        digits = torch.round(codes * half_width + half_width).long()
        digits = torch.minimum(digits.clamp_min(0), self.constants(codes.device)[0] - 1)
        return self._digits_to_indices(digits)

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        self.check_input(z)
        bounded = self.bound(self._to_code_space(z))
        rounded = torch.round(bounded.detach())
        half_width = self._half_width(bounded.device)
        # forward value exactly the code; gradient of the bound (straight through the rounding)
        codes = (rounded + (bounded - bounded.detach())) / half_width
        indices = self._digits_to_indices(rounded.long() + self.constants(rounded.device)[0] // 2)
        perplexity, usage = usage_statistics(indices, self.codebook_size)
        loss = torch.zeros((), device=z.device)
        return QuantizerOutput(self._from_code_space(codes, z.dtype), indices, loss,
                               perplexity=perplexity, codebook_usage=usage)
