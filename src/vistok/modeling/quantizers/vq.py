"""Vector quantization with a learned codebook: Euclidean or cosine lookup, straight-through or
rotation-trick gradients, optional EMA codebook with dead-code restart, optional low-dimensional
lookup behind input/output projections."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...kernels import ema_codebook_update, nearest_code
from .base import ProjectedQuantizer, QuantizerOutput, usage_statistics

GRADIENT_ESTIMATORS = ("straight_through", "rotation")


def rotation_trick(z: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Fifty et al. 2024: map z onto its code by a (stop-gradient) rotation and rescaling, so the
    forward value is the code and gradients keep the angle between z and the code."""
    z_norm = z.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    code_norm = codes.norm(dim=-1, keepdim=True)
    u = (z / z_norm).detach()
    q = (codes / code_norm.clamp_min(1e-12)).detach()
    w = F.normalize(u + q, dim=-1).detach()
    rotated = z - 2 * (z * w).sum(-1, keepdim=True) * w + 2 * (z * u).sum(-1, keepdim=True) * q
    return rotated * (code_norm / z_norm).detach()


def estimate_gradient(z: torch.Tensor, codes: torch.Tensor, gradient_estimator: str) -> torch.Tensor:
    """The codes' forward value with the gradient path to ``z`` of ``gradient_estimator``
    ("straight_through" or "rotation"); shared by :class:`VectorQuantizer` and ``ResidualVQ``."""
    if gradient_estimator == "rotation":
        return rotation_trick(z, codes)
    return z + (codes - z).detach()


class VectorQuantizer(ProjectedQuantizer):
    """VQ over the last dimension of ``z [..., dim]``.

    Args:
        codebook_size, dim: codebook entries and input vector size.
        commitment_cost: weight of ||z - sg(code)||^2 (beta).
        use_l2_norm: cosine lookup — z and codebook L2-normalised, codes returned normalised
            (TiTok, One-D-Piece, LlamaGen).
        codebook_weight: weight of ||sg(z) - code||^2 (ignored with EMA, which learns the codebook).
        codebook_dim: lookup in a lower dimension behind Linear projections (LlamaGen-style dim 8).
        gradient_estimator: "straight_through" or "rotation".
        ema_decay: learn the codebook by exponential moving averages instead of gradients.
        dead_code_threshold: with EMA, codes whose average count falls below this are restarted
            from random inputs of the batch.
    Lookup and losses run in fp32 whatever the model dtype.
    """

    def __init__(self, codebook_size: int, dim: int, commitment_cost: float = 0.25, use_l2_norm: bool = False,
                 codebook_weight: float = 1.0, codebook_dim: int | None = None,
                 gradient_estimator: str = "straight_through", ema_decay: float | None = None,
                 dead_code_threshold: float = 0.0, ema_eps: float = 1e-5):
        if codebook_size < 1 or dim < 1:
            raise ValueError(f"codebook_size and dim must be positive, got {codebook_size} and {dim}")
        if gradient_estimator not in GRADIENT_ESTIMATORS:
            raise ValueError(f"gradient_estimator must be one of {GRADIENT_ESTIMATORS}, got {gradient_estimator!r}")
        if ema_decay is not None and not 0.0 < ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1), got {ema_decay}")
        super().__init__(dim, codebook_dim or dim)  # project_in / project_out when codebook_dim differs
        self.codebook_size = codebook_size
        self.commitment_cost, self.codebook_weight = commitment_cost, codebook_weight
        self.use_l2_norm, self.gradient_estimator = use_l2_norm, gradient_estimator
        self.ema_decay, self.dead_code_threshold, self.ema_eps = ema_decay, dead_code_threshold, ema_eps
        self.embedding = nn.Embedding(codebook_size, self.codebook_dim)
        if ema_decay is not None:
            self.embedding.weight.requires_grad_(False)
            # counts start at one so that embed_sum / count is the codebook itself until codes are used
            self.register_buffer("ema_cluster_size", torch.ones(codebook_size))
            self.register_buffer("ema_embed_sum", torch.zeros(codebook_size, self.codebook_dim))
            self.register_buffer("ema_initialized", torch.zeros((), dtype=torch.bool))

    # -- lookups ------------------------------------------------------------------------------
    def codebook(self) -> torch.Tensor:
        weight = self.embedding.weight.float()
        return F.normalize(weight, dim=-1) if self.use_l2_norm else weight

    def _lookup_codes(self, indices: torch.LongTensor) -> torch.Tensor:
        """fp32 code-space codes ``[..., codebook_dim]`` (normalised for cosine codebooks)."""
        codes = F.embedding(indices, self.embedding.weight.float())
        return F.normalize(codes, dim=-1) if self.use_l2_norm else codes

    def indices_to_codes(self, indices: torch.LongTensor) -> torch.Tensor:
        """Codes ``[..., dim]`` for indices ``[...]`` (normalised for cosine codebooks, projected out);
        differentiable in the codebook and ``project_out``."""
        self.check_indices(indices)
        return self._from_code_space(self._lookup_codes(indices))

    def codes_to_indices(self, codes: torch.Tensor) -> torch.LongTensor:
        """Indices of the nearest codes — for codes from ``indices_to_codes`` the original indices."""
        self.check_input(codes)
        if self.has_projections:  # invert project_out: search the projected codebook
            table = self._from_code_space(self.codebook()).float()
            return nearest_code(codes.float().reshape(-1, self.dim), table).view(codes.shape[:-1])
        flat = self._to_lookup_space(codes).reshape(-1, self.codebook_dim)
        return nearest_code(flat, self.codebook()).view(codes.shape[:-1])

    def _to_lookup_space(self, z: torch.Tensor) -> torch.Tensor:
        z = self._to_code_space(z)
        return F.normalize(z, dim=-1) if self.use_l2_norm else z

    # -- forward ------------------------------------------------------------------------------
    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        self.check_input(z)
        z = self._to_lookup_space(z)
        flat = z.reshape(-1, self.codebook_dim)
        indices = nearest_code(flat, self.codebook()).view(z.shape[:-1])
        if self.ema_decay is not None and self.training:
            self._ema_update(flat.detach(), indices.reshape(-1))
        codes = self._lookup_codes(indices)
        commitment_loss = self.commitment_cost * torch.mean((codes.detach() - z) ** 2)
        loss = commitment_loss
        codebook_loss = None
        if self.ema_decay is None:
            codebook_loss = self.codebook_weight * torch.mean((codes - z.detach()) ** 2)
            loss = loss + codebook_loss
        quantized = estimate_gradient(z, codes, self.gradient_estimator)
        perplexity, usage = usage_statistics(indices, self.codebook_size)
        return QuantizerOutput(self._from_code_space(quantized), indices, loss, commitment_loss, codebook_loss,
                               perplexity=perplexity, codebook_usage=usage)

    @torch.no_grad()
    def _ema_update(self, flat: torch.Tensor, indices: torch.LongTensor) -> None:
        if not self.ema_initialized:  # the weights may have been (re)initialised or loaded after __init__
            self.ema_embed_sum.copy_(self.embedding.weight)
            self.ema_initialized.fill_(True)
        ema_codebook_update(self.ema_cluster_size, self.ema_embed_sum, flat, indices, self.ema_decay)
        total = self.ema_cluster_size.sum()
        # Laplace smoothing keeps unused codes from dividing by zero.
        smoothed = (self.ema_cluster_size + self.ema_eps) / (total + self.codebook_size * self.ema_eps) * total
        self.embedding.weight.copy_(self.ema_embed_sum / smoothed.unsqueeze(1))
        if self.dead_code_threshold > 0 and flat.shape[0] > 0:
            dead = self.ema_cluster_size < self.dead_code_threshold
            n_dead = int(dead.sum())
            if n_dead:
                picks = flat[torch.randint(0, flat.shape[0], (n_dead,), device=flat.device)]
                self.embedding.weight[dead] = picks
                self.ema_embed_sum[dead] = picks
                self.ema_cluster_size[dead] = 1.0
