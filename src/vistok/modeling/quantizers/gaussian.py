"""Diagonal Gaussian posterior of continuous (KL/VAE) tokenizers."""

from __future__ import annotations

import torch


class DiagonalGaussianPosterior:
    """Splits ``parameters [..., 2C]`` into mean and log-variance (clamped to [-30, 20], fp32)."""

    def __init__(self, parameters: torch.Tensor):
        self.mean, logvar = parameters.float().chunk(2, dim=-1)
        self.logvar = logvar.clamp(-30.0, 20.0)
        self.std = torch.exp(0.5 * self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        noise = torch.randn(self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + self.std * noise

    def mode(self) -> torch.Tensor:
        return self.mean

    def kl(self) -> torch.Tensor:
        """KL to N(0, I), summed over everything but the batch dimension."""
        dims = list(range(1, self.mean.ndim))
        return 0.5 * torch.sum(self.mean.pow(2) + self.logvar.exp() - 1.0 - self.logvar, dim=dims)
