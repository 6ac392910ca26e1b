"""Triton kernels (imported only when the triton backend is selected)."""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _nearest_code_kernel(z_ptr, c_ptr, csq_ptr, out_ptr, M, K, D, stride_z, stride_c,
                         BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr):
    # One program: BLOCK_M rows against the whole codebook, in BLOCK_K tiles, keeping a running
    # (min, argmin); the M x K distances never exist in memory.
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < M
    best = tl.full([BLOCK_M], float("inf"), tl.float32)
    best_index = tl.zeros([BLOCK_M], tl.int64)
    for k0 in range(0, K, BLOCK_K):
        cols = k0 + tl.arange(0, BLOCK_K)
        col_ok = cols < K
        dots = tl.zeros([BLOCK_M, BLOCK_K], tl.float32)
        for d0 in range(0, D, BLOCK_D):
            dims = d0 + tl.arange(0, BLOCK_D)
            dim_ok = dims < D
            z = tl.load(z_ptr + rows[:, None] * stride_z + dims[None, :], mask=row_ok[:, None] & dim_ok[None, :], other=0.0)
            c = tl.load(c_ptr + cols[:, None] * stride_c + dims[None, :], mask=col_ok[:, None] & dim_ok[None, :], other=0.0)
            dots += tl.dot(z.to(tl.float32), tl.trans(c.to(tl.float32)), input_precision="ieee")
        c_sq = tl.load(csq_ptr + cols, mask=col_ok, other=0.0)
        distances = tl.where(col_ok[None, :], c_sq[None, :] - 2.0 * dots, float("inf"))
        tile_best = tl.min(distances, axis=1)
        tile_index = tl.argmin(distances, axis=1).to(tl.int64) + k0
        better = tile_best < best  # strict: an equal later tile keeps the lower index
        best = tl.where(better, tile_best, best)
        best_index = tl.where(better, tile_index, best_index)
    tl.store(out_ptr + rows, best_index, mask=row_ok)


def nearest_code_triton(z: torch.Tensor, codebook: torch.Tensor) -> torch.LongTensor:
    z = z.contiguous()
    codebook = codebook.contiguous()
    codebook_sq = codebook.float().pow(2).sum(dim=1)
    M, D = z.shape
    K = codebook.shape[0]
    out = torch.empty(M, dtype=torch.long, device=z.device)
    BLOCK_M, BLOCK_K = 64, 64
    BLOCK_D = max(16, min(64, triton.next_power_of_2(D)))
    grid = (triton.cdiv(M, BLOCK_M),)
    _nearest_code_kernel[grid](z, codebook, codebook_sq, out, M, K, D, z.stride(0), codebook.stride(0),
                               BLOCK_M=BLOCK_M, BLOCK_K=BLOCK_K, BLOCK_D=BLOCK_D)
    return out


@triton.jit
def _code_statistics_kernel(z_ptr, idx_ptr, counts_ptr, sums_ptr, M, D, stride_z,
                            BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < M
    index = tl.load(idx_ptr + rows, mask=row_ok, other=0)
    tl.atomic_add(counts_ptr + index, tl.where(row_ok, 1.0, 0.0), mask=row_ok)
    for d0 in range(0, D, BLOCK_D):
        dims = d0 + tl.arange(0, BLOCK_D)
        mask = row_ok[:, None] & (dims < D)[None, :]
        z = tl.load(z_ptr + rows[:, None] * stride_z + dims[None, :], mask=mask, other=0.0)
        tl.atomic_add(sums_ptr + index[:, None] * D + dims[None, :], z.to(tl.float32), mask=mask)


def code_statistics_triton(z: torch.Tensor, indices: torch.LongTensor, codebook_size: int):
    """(counts [K], sums [K, D]) of rows of z per assigned code, by atomic adds."""
    z = z.contiguous().float()
    M, D = z.shape
    counts = torch.zeros(codebook_size, dtype=torch.float32, device=z.device)
    sums = torch.zeros(codebook_size, D, dtype=torch.float32, device=z.device)
    if M:
        BLOCK_M, BLOCK_D = 64, max(16, min(64, triton.next_power_of_2(D)))
        _code_statistics_kernel[(triton.cdiv(M, BLOCK_M),)](z, indices.contiguous(), counts, sums, M, D, z.stride(0),
                                                           BLOCK_M=BLOCK_M, BLOCK_D=BLOCK_D)
    return counts, sums
