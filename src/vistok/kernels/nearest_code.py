"""Nearest codebook entry for each row, without the rows x codes distance matrix.

Both paths compute ``argmin_k |c_k|^2 - 2 z.c_k`` (plus ``|z|^2`` on the torch path, which keeps
near-ties resolving exactly as the original taming/TiTok quantizers do) with ties going to the lowest
index, as ``torch.cdist(z, c).argmin(1)`` does.
"""

from __future__ import annotations

import torch

from .dispatch import kernel_backend

# Bytes of distances the torch path holds at once: bounds peak memory independently of N and K.
TORCH_CHUNK_BYTES = 16 * 2**20


def _check(z: torch.Tensor, codebook: torch.Tensor) -> None:
    if z.ndim != 2 or codebook.ndim != 2 or z.shape[1] != codebook.shape[1]:
        raise ValueError(f"nearest_code expects z [M, D] and codebook [K, D], got {tuple(z.shape)} and {tuple(codebook.shape)}")
    if codebook.shape[0] == 0:
        raise ValueError("the codebook is empty")


def nearest_code_torch(z: torch.Tensor, codebook: torch.Tensor) -> torch.LongTensor:
    z, codebook = z.float(), codebook.float()
    codebook_sq = codebook.pow(2).sum(dim=1)
    rows = max(1, TORCH_CHUNK_BYTES // (4 * codebook.shape[0]))
    out = torch.empty(z.shape[0], dtype=torch.long, device=z.device)
    for start in range(0, z.shape[0], rows):
        chunk = z[start : start + rows]
        distances = torch.addmm(codebook_sq, chunk, codebook.T, alpha=-2.0)
        distances += chunk.pow(2).sum(dim=1, keepdim=True)
        torch.argmin(distances, dim=1, out=out[start : start + rows])
    return out


def nearest_code(z: torch.Tensor, codebook: torch.Tensor, backend: str | None = None) -> torch.LongTensor:
    """Indices ``[M]`` of the nearest rows of ``codebook [K, D]`` to the rows of ``z [M, D]`` (fp32 math)."""
    _check(z, codebook)
    if z.shape[0] == 0:
        return torch.empty(0, dtype=torch.long, device=z.device)
    if kernel_backend(z, backend) == "triton":
        from .triton_kernels import nearest_code_triton

        return nearest_code_triton(z, codebook)
    return nearest_code_torch(z, codebook)
