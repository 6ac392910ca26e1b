"""Lookup-free quantization (MAGVIT-v2, Yu et al. 2023, arXiv 2310.05737; Open-MAGVIT2).

Each of ``num_bits`` channels is quantized to its sign; the index is ``Σ_i [z_i > 0] · 2^i`` (channel
0 least significant, as Open-MAGVIT2 computes it). The entropy loss of MAGVIT-v2 is computed without
the tokens x codes matrix (:mod:`vistok.kernels.lfq_entropy`). The bit/index helpers it shares with
BSQ and the binary quantizer are in :mod:`.bits`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ...kernels.lfq_entropy import MAX_ENTROPY_BITS, bit_logits, codebook_entropy, per_sample_entropy
from .base import ProjectedQuantizer, QuantizerOutput, usage_statistics
from .bits import MAX_BITS, bits_to_indices, check_bit_groups, check_bit_indices, indices_to_bits


class LFQ(ProjectedQuantizer):
    """Lookup-free quantization over the last dimension of ``z [..., dim]``.

    Args:
        num_bits: code bits (``codebook_size = 2**num_bits``, at most 64).
        dim: input size; Linear projections to and from ``num_bits`` when it differs (default ``num_bits``).
        entropy_weight: weight of the entropy loss (computed in training mode only, as in Open-MAGVIT2).
        commitment_cost: weight of ``||z - sg(code)||²``.
        diversity_gamma: weight of the codebook entropy inside the entropy loss:
            ``entropy_loss = entropy_weight · (mean_n H(p_n) - diversity_gamma · H(mean_n p_n))``.
        entropy_temperature: ``T`` of the soft assignment ``p_n(c) ∝ exp(-||z_n - c||² / T)``.
        factorized_bits: compute the codebook entropy per group of consecutive bits and sum
            (e.g. ``[9, 9]``); cheaper, and needed above 30 bits. The per-sample term is unchanged.
    Codes are ``±1`` (``±code_scale``); the forward value is exactly the code, the gradient
    straight-through. Math and losses in fp32.
    """

    def __init__(self, num_bits: int, dim: int | None = None, entropy_weight: float = 0.1,
                 commitment_cost: float = 0.25, diversity_gamma: float = 1.0, entropy_temperature: float = 0.01,
                 factorized_bits: Sequence[int] | None = None):
        if not isinstance(num_bits, int) or isinstance(num_bits, bool) or not 1 <= num_bits <= MAX_BITS:
            raise ValueError(f"num_bits must be an integer in [1, {MAX_BITS}], got {num_bits}")
        if entropy_temperature <= 0:
            raise ValueError(f"entropy_temperature must be positive, got {entropy_temperature}")
        groups = check_bit_groups(factorized_bits, num_bits) if factorized_bits is not None else [num_bits]
        if entropy_weight != 0 and diversity_gamma != 0 and max(groups) > MAX_ENTROPY_BITS:
            raise ValueError(f"the codebook entropy is exact over at most {MAX_ENTROPY_BITS} bits per group; "
                             f"set factorized_bits (e.g. [{num_bits // 2}, {num_bits - num_bits // 2}]) for {num_bits} bits")
        super().__init__(num_bits if dim is None else dim, num_bits)
        self.num_bits = num_bits
        self.codebook_size = 2**num_bits
        self.entropy_weight, self.commitment_cost = entropy_weight, commitment_cost
        self.diversity_gamma, self.entropy_temperature = diversity_gamma, entropy_temperature
        self.factorized_bits = list(factorized_bits) if factorized_bits is not None else None

    @property
    def code_scale(self) -> float:
        """Magnitude of each code channel (1 for LFQ)."""
        return 1.0

    def _prepare(self, z: torch.Tensor) -> torch.Tensor:
        """Code-space input before the sign (BSQ normalises here)."""
        return z

    def check_indices(self, indices: torch.Tensor) -> None:
        check_bit_indices(indices, self.num_bits, f"{type(self).__name__} indices")

    def indices_to_codes(self, indices: torch.LongTensor) -> torch.Tensor:
        """Codes ``[..., dim]`` (``±code_scale`` per bit before any projection) for indices ``[...]``."""
        self.check_indices(indices)
        bits = indices_to_bits(indices.long(), self.num_bits)
        scale = self.code_scale
        return self._from_code_space(torch.where(bits, scale, -scale).float())

    def codes_to_indices(self, codes: torch.Tensor) -> torch.LongTensor:
        """Index of the sign pattern of ``codes`` (through the least-squares inverse of any projection)."""
        return bits_to_indices(self._codes_to_code_space(codes) > 0)

    def entropy_terms(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean per-sample entropy, codebook entropy) in nats of inputs ``z [..., dim]``, differentiable."""
        self.check_input(z)
        return self._entropy_terms(self._prepare(self._to_code_space(z)))

    def _entropy_terms(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = bit_logits(u.reshape(-1, self.num_bits), self.entropy_temperature, self.code_scale)
        sample = per_sample_entropy(logits)
        codebook = logits.new_zeros(())
        if self.diversity_gamma != 0:
            start = 0
            for group in self.factorized_bits or [self.num_bits]:
                codebook = codebook + codebook_entropy(logits[:, start : start + group])
                start += group
        return sample, codebook

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        self.check_input(z)
        u = self._prepare(self._to_code_space(z))
        positive = u > 0
        scale = self.code_scale
        codes = torch.where(positive, scale, -scale).to(u.dtype)
        quantized = codes + (u - u.detach())  # forward value exactly the code; straight-through gradient
        indices = bits_to_indices(positive)
        if u.numel():
            commitment_loss = self.commitment_cost * torch.mean((u - codes) ** 2)
        else:
            commitment_loss = u.sum() * 0
        loss, entropy_loss = commitment_loss, None
        if self.training and self.entropy_weight != 0:
            sample, codebook = self._entropy_terms(u)
            entropy_loss = self.entropy_weight * (sample - self.diversity_gamma * codebook)
            loss = loss + entropy_loss
        perplexity, usage = usage_statistics(indices, self.codebook_size)
        return QuantizerOutput(self._from_code_space(quantized, z.dtype), indices, loss,
                               commitment_loss=commitment_loss, entropy_loss=entropy_loss,
                               perplexity=perplexity, codebook_usage=usage)
