"""Binary quantizers beside LFQ: binary spherical quantization (BSQ, Zhao et al. 2024, arXiv
2406.07548) and the Bernoulli binary quantizer of Instella-T2I's binary autoencoder."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .base import Quantizer, QuantizerOutput, usage_statistics
from .bits import MAX_BITS, bits_to_indices, check_bit_indices, indices_to_bits
from .lfq import LFQ


class BSQ(LFQ):
    """Binary spherical quantization over the last dimension of ``z [..., dim]``: project to
    ``num_bits`` (when ``dim`` differs), L2-normalise to ``u``, quantize to ``sign(u)/sqrt(num_bits)``
    (a point of the unit sphere) with a straight-through gradient. Index, commitment loss
    ``||u - sg(code)||²`` and entropy loss are LFQ's, with codes of magnitude ``1/sqrt(num_bits)`` in
    the soft assignment ``p(c) ∝ exp(-||u - c||²/T)``. Arguments as :class:`LFQ`.
    """

    @property
    def code_scale(self) -> float:
        return 1.0 / math.sqrt(self.num_bits)

    def _prepare(self, z: torch.Tensor) -> torch.Tensor:
        return F.normalize(z, dim=-1)


class BinaryQuantizer(Quantizer):
    """Instella-T2I binary quantizer: ``logits = proj(z)`` over ``num_bits`` bits; in eval (or with
    ``deterministic=True``) a bit is ``sigmoid(logit) > 0.5``, in training a Bernoulli sample of
    ``sigmoid(logit / train_temperature)`` (drawn from ``generator``); gradients pass straight
    through ``sigmoid(logit)``. ``quantized = bits @ embed`` with ``embed [num_bits, codebook_dim]``,
    ``index = Σ_i bit_i 2^i`` (bit 0 least significant; with 64 bits the two's-complement pattern).

    Args:
        num_bits: bits per token (Instella-T2I: 64); ``codebook_size = 2**num_bits``.
        dim: input size. codebook_dim: output size (default ``dim``).
        train_temperature: temperature of the training-time Bernoulli.
        code_loss_weight: weight of the original's ``mean(σ(1-σ))`` term (Instella-T2I computes it but
            does not use it: default 0).
    """

    def __init__(self, num_bits: int, dim: int, codebook_dim: int | None = None, train_temperature: float = 1.0,
                 code_loss_weight: float = 0.0):
        super().__init__()
        if not isinstance(num_bits, int) or isinstance(num_bits, bool) or not 1 <= num_bits <= MAX_BITS:
            raise ValueError(f"num_bits must be an integer in [1, {MAX_BITS}], got {num_bits}")
        codebook_dim = dim if codebook_dim is None else codebook_dim
        if dim < 1 or codebook_dim < 1:
            raise ValueError(f"dim and codebook_dim must be positive, got {dim} and {codebook_dim}")
        if train_temperature <= 0:
            raise ValueError(f"train_temperature must be positive, got {train_temperature}")
        self.num_bits, self.dim, self.codebook_dim = num_bits, dim, codebook_dim
        self.codebook_size = 2**num_bits
        self.train_temperature, self.code_loss_weight = train_temperature, code_loss_weight
        self.proj = nn.Linear(dim, num_bits)
        self.embed = nn.Parameter(torch.empty(num_bits, codebook_dim).normal_(0.0, 0.02))

    def check_indices(self, indices: torch.Tensor) -> None:
        check_bit_indices(indices, self.num_bits, f"{type(self).__name__} indices")

    def _embed(self, bits: torch.Tensor) -> torch.Tensor:
        return (bits @ self.embed.float()).to(self.embed.dtype)

    def bits_to_codes(self, bits: torch.Tensor) -> torch.Tensor:
        """``bits [..., num_bits]`` (bool or 0/1) -> codes ``[..., codebook_dim]``."""
        if bits.shape[-1] != self.num_bits:
            raise ValueError(f"expected bits [..., {self.num_bits}], got {tuple(bits.shape)}")
        return self._embed(bits.float())

    def indices_to_codes(self, indices: torch.LongTensor) -> torch.Tensor:
        """Codes ``bits @ embed`` ``[..., codebook_dim]`` for indices ``[...]``."""
        self.check_indices(indices)
        return self._embed(indices_to_bits(indices.long(), self.num_bits).float())

    def codes_to_indices(self, codes: torch.Tensor) -> torch.LongTensor:
        """Indices of ``codes [..., codebook_dim]`` by least squares through ``embed`` (needs
        ``codebook_dim >= num_bits``; exact for codes from ``indices_to_codes`` or ``forward``)."""
        if not isinstance(codes, torch.Tensor) or not codes.is_floating_point():
            raise TypeError(f"{type(self).__name__} codes must be floating-point tensors [..., {self.codebook_dim}]")
        if codes.ndim == 0 or codes.shape[-1] != self.codebook_dim:
            raise ValueError(f"{type(self).__name__} expects codes of size {self.codebook_dim} in the last dimension, "
                             f"got {tuple(codes.shape)}")
        if self.codebook_dim < self.num_bits:
            raise ValueError(f"codes_to_indices needs codebook_dim >= num_bits ({self.num_bits}), got {self.codebook_dim}")
        bits = codes.detach().double() @ torch.linalg.pinv(self.embed.detach().double())
        return bits_to_indices(bits > 0.5)

    def forward(self, z: torch.Tensor, generator: torch.Generator | None = None,
                deterministic: bool = False) -> QuantizerOutput:
        self.check_input(z)
        logits = self.proj(z.to(self.proj.weight.dtype)).float()
        probs = torch.sigmoid(logits)
        if self.training and not deterministic:
            bits = torch.bernoulli(torch.sigmoid(logits.detach() / self.train_temperature), generator=generator)
        else:
            bits = (probs.detach() > 0.5).float()
        quantized = self._embed(bits + (probs - probs.detach()))  # straight through sigmoid(logits)
        indices = bits_to_indices(bits.bool())
        code_loss = None
        loss = logits.sum() * 0
        if self.code_loss_weight != 0 and logits.numel():
            code_loss = self.code_loss_weight * (probs * (1 - probs)).mean()
            loss = loss + code_loss
        perplexity, usage = usage_statistics(indices, self.codebook_size)
        return QuantizerOutput(quantized, indices, loss, codebook_loss=code_loss,
                               perplexity=perplexity, codebook_usage=usage)
