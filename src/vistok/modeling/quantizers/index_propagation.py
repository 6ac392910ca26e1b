"""Index backpropagation quantization (IBQ; Shi et al. 2024, arXiv 2412.02692; TencentARC/SEED-Voken
``src/IBQ/modules/vqvae/quantize.py::IndexPropagationQuantize``).

Logits are the dot products of ``z`` with every code (no distance, no normalisation); the index is their
argmax; the output is ``one_hot @ E`` with the straight-through one-hot ``hard - sg(soft) + soft``
(``soft = softmax(logits)``), so the gradient reaches every code through the softmax and the forward value
is the chosen code. Losses: ``mean((z_q - z)²) + mean((sg(E[i]) - z)²) + β·mean((E[i] - sg(z))²)`` and,
optionally, the MAGVIT-v2 entropy loss of ``softmax(logits / T)`` over the whole codebook.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import Quantizer, QuantizerOutput, usage_statistics


class IndexPropagationQuantizer(Quantizer):
    """IBQ over the last dimension of ``z [..., dim]`` with ``codebook_size`` codes.

    Args:
        commitment_cost: β of ``β·mean((E[i] - sg(z))²)`` (0.25 in the releases).
        entropy_weight: weight of ``mean_n H(p_n) - H(mean_n p_n)``, ``p_n = softmax(z_n·E / T)``, computed in
            training mode only (0.05 in the releases; 0 turns it off). It materialises the tokens x codes
            matrix, as the original does.
        entropy_temperature: ``T`` (0.01).
    The forward value is exactly the code (the straight-through one-hot's residual is added as ``soft - sg(soft)``,
    zero in value); math in fp32.
    """

    def __init__(self, codebook_size: int, dim: int, commitment_cost: float = 0.25, entropy_weight: float = 0.0,
                 entropy_temperature: float = 0.01):
        super().__init__()
        if codebook_size < 1 or dim < 1:
            raise ValueError(f"codebook_size and dim must be positive, got {codebook_size} and {dim}")
        if entropy_temperature <= 0:
            raise ValueError(f"entropy_temperature must be positive, got {entropy_temperature}")
        self.codebook_size, self.dim = codebook_size, dim
        self.commitment_cost, self.entropy_weight, self.entropy_temperature = commitment_cost, entropy_weight, entropy_temperature
        self.embedding = nn.Embedding(codebook_size, dim)

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        """``z · E^T``: ``[..., codebook_size]`` in fp32."""
        return z.float() @ self.embedding.weight.float().t()

    def indices_to_codes(self, indices: torch.LongTensor) -> torch.Tensor:
        self.check_indices(indices)
        return self.embedding(indices.long())

    def codes_to_indices(self, codes: torch.Tensor) -> torch.LongTensor:
        """The nearest code (for codes from ``indices_to_codes``: their index; the dot-product argmax need not be)."""
        flat = codes.reshape(-1, self.dim).float()
        weight = self.embedding.weight.float()
        distances = torch.cdist(flat, weight)
        return distances.argmin(-1).view(codes.shape[:-1])

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        self.check_input(z)
        zf = z.float()
        logits = self.logits(zf)
        indices = logits.argmax(-1)
        codes = self.embedding(indices).float()
        if self.training or torch.is_grad_enabled():
            soft = logits.softmax(-1)
            # (hard - sg(soft) + soft) @ E: the code in value, d/d(soft) = E in the backward pass
            quantized = codes + (soft - soft.detach()) @ self.embedding.weight.float()
        else:
            quantized = codes
        if zf.numel():
            codebook_loss = torch.mean((quantized - zf) ** 2) + torch.mean((codes.detach() - zf) ** 2)
            commitment_loss = self.commitment_cost * torch.mean((codes - zf.detach()) ** 2)
        else:
            codebook_loss = commitment_loss = zf.sum() * 0
        loss, entropy_loss = codebook_loss + commitment_loss, None
        if self.training and self.entropy_weight != 0:
            flat = logits.reshape(-1, self.codebook_size) / self.entropy_temperature
            probs = flat.softmax(-1)
            sample = -(probs * flat.log_softmax(-1)).sum(-1).mean()
            mean = probs.mean(0)
            codebook = -(mean * torch.log(mean + 1e-5)).sum()
            entropy_loss = self.entropy_weight * (sample - codebook)
            loss = loss + entropy_loss
        perplexity, usage = usage_statistics(indices, self.codebook_size)
        return QuantizerOutput(quantized.to(z.dtype), indices, loss, commitment_loss=commitment_loss, codebook_loss=codebook_loss,
                               entropy_loss=entropy_loss, perplexity=perplexity, codebook_usage=usage)
