"""Nearest codebook entry for each row, without the rows x codes distance matrix.

Both paths compute ``argmin_k |c_k|^2 - 2 z.c_k`` (plus ``|z|^2`` on the torch path, which keeps
near-ties resolving exactly as the original taming/TiTok quantizers do) with ties going to the lowest
index, as ``torch.cdist(z, c).argmin(1)`` does.
"""

from __future__ import annotations

import torch

from .dispatch import kernel_backend

# The torch path holds distances for max(TORCH_CHUNK_BYTES worth, TORCH_MIN_ROWS) rows at a time:
# peak memory no longer grows with the number of rows, and blocks stay large enough for efficient GEMMs.
TORCH_CHUNK_BYTES = 16 * 2**20
TORCH_MIN_ROWS = 1024


def _check(z: torch.Tensor, codebook: torch.Tensor) -> None:
    if z.ndim != 2 or codebook.ndim != 2 or z.shape[1] != codebook.shape[1]:
        raise ValueError(f"nearest_code expects z [M, D] and codebook [K, D], got {tuple(z.shape)} and {tuple(codebook.shape)}")
    if codebook.shape[0] == 0:
        raise ValueError("the codebook is empty")


def nearest_code_torch(z: torch.Tensor, codebook: torch.Tensor) -> torch.LongTensor:
    z, codebook = z.float(), codebook.float()
    codebook_sq = codebook.pow(2).sum(dim=1)
    codebook_t = codebook.T.contiguous()
    rows = max(1, min(z.shape[0], max(TORCH_MIN_ROWS, TORCH_CHUNK_BYTES // (4 * codebook.shape[0]))))
    distances = torch.empty(rows, codebook.shape[0], device=z.device)  # reused: no per-chunk allocation
    out = torch.empty(z.shape[0], dtype=torch.long, device=z.device)
    for start in range(0, z.shape[0], rows):
        chunk = z[start : start + rows]
        block = distances[: chunk.shape[0]]
        torch.addmm(codebook_sq, chunk, codebook_t, alpha=-2.0, out=block)
        block += chunk.pow(2).sum(dim=1, keepdim=True)
        torch.argmin(block, dim=1, out=out[start : start + chunk.shape[0]])
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
