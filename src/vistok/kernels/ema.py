"""EMA codebook statistics: per-code counts and vector sums of the assigned inputs."""

from __future__ import annotations

import torch

from .dispatch import kernel_backend


def ema_codebook_update(
    cluster_size: torch.Tensor, embed_sum: torch.Tensor, z: torch.Tensor, indices: torch.LongTensor,
    decay: float, backend: str | None = None,
) -> None:
    """In place: ``cluster_size = decay*cluster_size + (1-decay)*counts`` and
    ``embed_sum = decay*embed_sum + (1-decay)*sum of z per code``; no rows x codes one-hot."""
    z = z.reshape(-1, embed_sum.shape[1]).float()
    indices = indices.reshape(-1)
    if kernel_backend(z, backend) == "triton":
        from .triton_kernels import code_statistics_triton

        counts, sums = code_statistics_triton(z, indices, embed_sum.shape[0])
    else:
        counts = torch.bincount(indices, minlength=embed_sum.shape[0]).to(cluster_size.dtype)
        sums = torch.zeros_like(embed_sum).index_add_(0, indices, z.to(embed_sum.dtype))
    cluster_size.mul_(decay).add_(counts, alpha=1 - decay)
    embed_sum.mul_(decay).add_(sums, alpha=1 - decay)
