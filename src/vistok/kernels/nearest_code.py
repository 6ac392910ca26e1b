"""Nearest codebook entry for each row, without the rows x codes distance matrix.

Both paths compute ``argmin_k |c_k|^2 - 2 z.c_k`` (``|z|^2`` cannot change the argmin) with ties going
to the lowest index, as ``torch.cdist(z, c).argmin(1)`` does.
"""

from __future__ import annotations

import torch

from .dispatch import kernel_backend

# The torch path holds distances for max(TORCH_CHUNK_BYTES worth, TORCH_MIN_ROWS) rows at a time:
# peak memory no longer grows with the number of rows, and blocks stay large enough for efficient GEMMs.
TORCH_CHUNK_BYTES = 24 * 2**20
TORCH_MIN_ROWS = 1024


def _check(z: torch.Tensor, codebook: torch.Tensor) -> None:
    if z.ndim != 2 or codebook.ndim != 2 or z.shape[1] != codebook.shape[1]:
        raise ValueError(f"nearest_code expects z [M, D] and codebook [K, D], got {tuple(z.shape)} and {tuple(codebook.shape)}")
    if codebook.shape[0] == 0:
        raise ValueError("the codebook is empty")


@torch.no_grad()
def nearest_code_torch(z: torch.Tensor, codebook: torch.Tensor) -> torch.LongTensor:
    z, codebook = z.float(), codebook.float()
    # One GEMM per block gives |c|^2 - 2 z.c directly: [z, 1] @ [-2c, |c|^2]^T (|z|^2 cannot change the argmin).
    table = torch.cat([-2.0 * codebook, codebook.pow(2).sum(dim=1, keepdim=True)], dim=1).T.contiguous()
    rows = max(1, min(z.shape[0], max(TORCH_MIN_ROWS, TORCH_CHUNK_BYTES // (4 * codebook.shape[0]))))
    distances = torch.empty(rows, codebook.shape[0], device=z.device)  # reused: no per-block allocation
    augmented = torch.ones(rows, z.shape[1] + 1, device=z.device)
    out = torch.empty(z.shape[0], dtype=torch.long, device=z.device)
    for start in range(0, z.shape[0], rows):
        n = min(rows, z.shape[0] - start)
        augmented[:n, :-1] = z[start : start + n]
        torch.mm(augmented[:n], table, out=distances[:n])
        torch.argmin(distances[:n], dim=1, out=out[start : start + n])
    return out


@torch.no_grad()  # indices carry no gradient
def nearest_code(z: torch.Tensor, codebook: torch.Tensor, backend: str | None = None) -> torch.LongTensor:
    """Indices ``[M]`` of the nearest rows of ``codebook [K, D]`` to the rows of ``z [M, D]`` (fp32 math)."""
    _check(z, codebook)
    if z.shape[0] == 0:
        return torch.empty(0, dtype=torch.long, device=z.device)
    if kernel_backend(z, backend) == "triton":
        from .triton_kernels import nearest_code_triton

        return nearest_code_triton(z, codebook)
    return nearest_code_torch(z, codebook)
