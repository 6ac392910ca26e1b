"""Vector quantization with a learned codebook (Euclidean or cosine lookup)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import QuantizerOutput

# Rows of z per distance block: bounds the tokens x codes matrix the lookup materialises at once.
_LOOKUP_CHUNK = 4096


def nearest_code(z: torch.Tensor, codebook: torch.Tensor) -> torch.LongTensor:
    """argmin_k ||z - e_k||^2 for rows of z [M, C], ties to the lowest index.

    The distance is formed as |z|^2 + |e|^2 - 2 z.e, in the same order as the original TiTok and
    taming quantizers, so near-ties resolve identically.
    """
    codebook_sq = codebook.pow(2).sum(dim=1)
    indices = []
    for start in range(0, z.shape[0], _LOOKUP_CHUNK):
        rows = z[start : start + _LOOKUP_CHUNK]
        distances = rows.pow(2).sum(dim=1, keepdim=True) + codebook_sq - 2 * rows @ codebook.T
        indices.append(distances.argmin(dim=1))
    if not indices:
        return torch.zeros(0, dtype=torch.long, device=z.device)
    return torch.cat(indices)


class VectorQuantizer(nn.Module):
    """VQ over the last dimension: ``forward(z [..., C])``.

    ``use_l2_norm`` normalises z and the codebook (cosine lookup) and returns normalised codes, as
    TiTok, One-D-Piece and LlamaGen do. Lookup and losses run in fp32 whatever the model dtype.
    """

    def __init__(self, codebook_size: int, embedding_dim: int, commitment_cost: float = 0.25, use_l2_norm: bool = False):
        super().__init__()
        self.codebook_size, self.embedding_dim = codebook_size, embedding_dim
        self.commitment_cost, self.use_l2_norm = commitment_cost, use_l2_norm
        self.embedding = nn.Embedding(codebook_size, embedding_dim)

    def codebook(self) -> torch.Tensor:
        weight = self.embedding.weight.float()
        return F.normalize(weight, dim=-1) if self.use_l2_norm else weight

    def indices_to_codes(self, indices: torch.LongTensor) -> torch.Tensor:
        codes = F.embedding(indices, self.embedding.weight.float())
        return F.normalize(codes, dim=-1) if self.use_l2_norm else codes

    def codes_to_indices(self, codes: torch.Tensor) -> torch.LongTensor:
        flat = codes.float().reshape(-1, self.embedding_dim)
        if self.use_l2_norm:
            flat = F.normalize(flat, dim=-1)
        return nearest_code(flat, self.codebook()).view(codes.shape[:-1])

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        if z.shape[-1] != self.embedding_dim:
            raise ValueError(f"expected vectors of size {self.embedding_dim} in the last dimension, got {tuple(z.shape)}")
        z = z.float()
        if self.use_l2_norm:
            z = F.normalize(z, dim=-1)
        indices = nearest_code(z.reshape(-1, self.embedding_dim), self.codebook()).view(z.shape[:-1])
        codes = self.indices_to_codes(indices)
        commitment_loss = self.commitment_cost * torch.mean((codes.detach() - z) ** 2)
        codebook_loss = torch.mean((codes - z.detach()) ** 2)
        quantized = z + (codes - z).detach()
        return QuantizerOutput(quantized, indices, commitment_loss + codebook_loss, commitment_loss, codebook_loss)
