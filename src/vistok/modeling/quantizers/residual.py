"""Residual vector quantization: a stack of :class:`VectorQuantizer` stages, each quantizing what
the previous stages left over (SoundStream / RQ-VAE style).

Stage ``q`` sees ``z - sg(c_0 + ... + c_{q-1})`` and contributes its own loss; the output is the
sum of the stage codes with one straight-through (or rotation-trick) estimator over the whole
stack (as RQ-VAE does), so the encoder's gradient is the same as with a single quantizer rather
than Q times it. Codebooks learn from their stage's codebook loss (or EMA); with a low-dimensional
lookup (``codebook_dim``) each stage's ``project_out`` also receives the gradient of the output.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import Quantizer, QuantizerOutput, usage_statistics
from .vq import VectorQuantizer, estimate_gradient


class ResidualVQ(Quantizer):
    """``num_quantizers`` :class:`VectorQuantizer` stages over the last dimension of ``z [..., dim]``.

    Args:
        num_quantizers: stages Q; ``indices`` are ``[..., Q]``.
        codebook_size, dim: entries per codebook and input vector size.
        shared_codebook: one codebook (one ``VectorQuantizer``) used by every stage.
        **vq_kwargs: passed to each ``VectorQuantizer`` (``commitment_cost``, ``use_l2_norm``,
            ``codebook_dim``, ``gradient_estimator``, ``ema_decay``, ...).

    ``loss``, ``commitment_loss`` and ``codebook_loss`` are sums over the stages used. The usage
    statistics count distinct codebook entries: ``codebook_size`` of them with a shared codebook,
    ``stages used * codebook_size`` otherwise (code k of stage 0 and of stage 1 are different
    entries).
    """

    def __init__(self, num_quantizers: int, codebook_size: int, dim: int, shared_codebook: bool = False,
                 **vq_kwargs):
        super().__init__()
        if not isinstance(num_quantizers, int) or num_quantizers < 1:
            raise ValueError(f"num_quantizers must be a positive integer, got {num_quantizers!r}")
        self.num_quantizers = num_quantizers
        self.codebook_size, self.dim = codebook_size, dim
        self.shared_codebook = shared_codebook
        count = 1 if shared_codebook else num_quantizers
        self.layers = nn.ModuleList(VectorQuantizer(codebook_size, dim, **vq_kwargs) for _ in range(count))
        self.gradient_estimator = self.layers[0].gradient_estimator

    def stage(self, q: int) -> VectorQuantizer:
        """The quantizer of stage ``q`` (the same module for every stage with a shared codebook)."""
        return self.layers[0 if self.shared_codebook else q]

    def _num_stages(self, num_quantizers: int | None) -> int:
        if num_quantizers is None:
            return self.num_quantizers
        if isinstance(num_quantizers, bool) or not isinstance(num_quantizers, int) \
                or not 1 <= num_quantizers <= self.num_quantizers:
            raise ValueError(f"num_quantizers must be an integer in [1, {self.num_quantizers}], got {num_quantizers!r}")
        return num_quantizers

    # -- lookups ------------------------------------------------------------------------------
    def indices_to_codes(self, indices: torch.LongTensor) -> torch.Tensor:
        """Sum of the stage codes ``[..., dim]`` for ``indices [..., q]``, any q in [1, Q] (the
        first q stages)."""
        self.check_indices(indices)
        if indices.ndim == 0 or not 1 <= indices.shape[-1] <= self.num_quantizers:
            raise ValueError(f"{type(self).__name__} expects indices [..., Q] with Q in [1, {self.num_quantizers}] "
                             f"stages in the last dimension, got {tuple(indices.shape)}")
        codes = None
        for q in range(indices.shape[-1]):
            stage_codes = self.stage(q).indices_to_codes(indices[..., q])
            codes = stage_codes if codes is None else codes + stage_codes
        return codes

    @torch.no_grad()
    def codes_to_indices(self, codes: torch.Tensor, num_quantizers: int | None = None) -> torch.LongTensor:
        """Greedy residual encoding ``[..., q]``: each stage takes the code nearest to what the
        previous stages left (the indices ``forward`` returns)."""
        self.check_input(codes)
        residual = codes.float()
        out = []
        for q in range(self._num_stages(num_quantizers)):
            stage = self.stage(q)
            idx = stage.codes_to_indices(residual)
            residual = residual - stage.indices_to_codes(idx).float()
            out.append(idx)
        return torch.stack(out, dim=-1)

    # -- forward ------------------------------------------------------------------------------
    def forward(self, z: torch.Tensor, num_quantizers: int | None = None) -> QuantizerOutput:
        """Quantize ``z [..., dim]`` with the first ``num_quantizers`` stages (all by default)."""
        self.check_input(z)
        n = self._num_stages(num_quantizers)
        z = z.float()
        total = torch.zeros_like(z)
        projection_path = None
        indices, outputs = [], []
        for q in range(n):
            stage = self.stage(q)
            out = stage(z - total)  # the residual keeps its gradient path to z (commitment)
            if stage.has_projections:
                # project_out learns from what follows the quantizer, as in a single VectorQuantizer
                projected = stage.indices_to_codes(out.indices).float()
                path = projected - projected.detach()
                projection_path = path if projection_path is None else projection_path + path
                total = total + projected.detach()
            else:
                with torch.no_grad():
                    total = total + stage.indices_to_codes(out.indices).float()
            indices.append(out.indices)
            outputs.append(out)
        indices = torch.stack(indices, dim=-1)
        quantized = estimate_gradient(z, total, self.gradient_estimator)
        if projection_path is not None:
            quantized = quantized + projection_path
        loss = torch.stack([o.loss for o in outputs]).sum()
        commitment = torch.stack([o.commitment_loss for o in outputs]).sum()
        codebook = None
        if outputs[0].codebook_loss is not None:
            codebook = torch.stack([o.codebook_loss for o in outputs]).sum()
        if self.shared_codebook:
            perplexity, usage = usage_statistics(indices, self.codebook_size)
        else:
            offsets = torch.arange(n, device=indices.device) * self.codebook_size
            perplexity, usage = usage_statistics(indices + offsets, n * self.codebook_size)
        return QuantizerOutput(quantized, indices, loss, commitment, codebook,
                               perplexity=perplexity, codebook_usage=usage)
