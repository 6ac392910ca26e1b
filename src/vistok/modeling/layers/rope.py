"""Rotary position embeddings over a 2D token grid (LlamaGen, Open-MAGVIT2's generator).

The head dimension is split in halves, one rotated by the token's row and one by its column, and
rotation acts on *interleaved* pairs ``(x[2i], x[2i+1])`` (not HF's ``rotate_half`` layout).
Tables are computed for the positions asked for, so one code path serves a full sequence, a prefill
and a single decode step, with static shapes under ``torch.compile``.
"""

from __future__ import annotations

import torch


def rope_2d_frequencies(head_dim: int, base: float = 10000.0, device=None) -> torch.Tensor:
    """The ``head_dim // 4`` inverse frequencies used for each of the two grid axes."""
    if head_dim % 4:
        raise ValueError(f"2D RoPE needs a head dimension divisible by 4, got {head_dim}")
    half = head_dim // 2
    return 1.0 / (base ** (torch.arange(0, half, 2, device=device)[: half // 2].float() / half))


def rope_2d_cos_sin(positions: torch.Tensor, grid_size: int, head_dim: int, base: float = 10000.0,
                    num_prefix_tokens: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin ``[S, head_dim // 2]`` for sequence positions ``[S]``.

    Position ``num_prefix_tokens + r * grid_size + c`` is grid cell (r, c). Prefix (condition)
    positions get cos = sin = 0 — LlamaGen's table pads them with zeros, so their queries and keys
    become zero vectors; this is kept for parity with the released weights.
    """
    freqs = rope_2d_frequencies(head_dim, base, positions.device)
    cell = (positions - num_prefix_tokens).clamp(min=0)
    rows, cols = (cell // grid_size).float(), (cell % grid_size).float()
    angles = torch.cat([rows[:, None] * freqs, cols[:, None] * freqs], dim=-1)
    is_grid = (positions >= num_prefix_tokens)[:, None]
    zero = torch.zeros((), device=positions.device)
    return torch.where(is_grid, angles.cos(), zero), torch.where(is_grid, angles.sin(), zero)


def apply_interleaved_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x [B, S, H, D]`` by ``cos``/``sin`` ``[S, D // 2]`` on interleaved pairs, in fp32."""
    pairs = x.float().reshape(*x.shape[:-1], -1, 2)
    cos, sin = cos[None, :, None, :], sin[None, :, None, :]
    real, imag = pairs[..., 0], pairs[..., 1]
    out = torch.stack([real * cos - imag * sin, imag * cos + real * sin], dim=-1)
    return out.flatten(3).type_as(x)


def scale_normalized_rope_angles(patch_nums, head_dim: int, base: float = 10000.0, norm: float = 64.0) -> torch.Tensor:
    """STAR's normalized 2D axial RoPE across the scales of a next-scale generator: angles
    ``[sum(pn^2), head_dim // 2]``, the x (column) half first then the y (row) half, with
    ``head_dim // 4`` frequencies ``base ** (-4j / head_dim)`` per axis. On each ``pn x pn`` scale the
    coordinates are rescaled to ``[0, norm]`` (``t / max(t) * norm``; a 1 x 1 scale sits at 0), so every
    scale spans the same angles. Computed in float32 as the original."""
    if head_dim % 4:
        raise ValueError(f"2D RoPE needs a head dimension divisible by 4, got {head_dim}")
    freqs = 1.0 / (base ** (torch.arange(0, head_dim, 4)[: head_dim // 4].float() / head_dim))
    rows = []
    for pn in patch_nums:
        t = torch.arange(pn * pn, dtype=torch.float32)
        tx, ty = t % pn, torch.div(t, pn, rounding_mode="floor")
        if pn * pn > 1:
            tx, ty = tx / tx.max() * norm, ty / ty.max() * norm
        rows.append(torch.cat([torch.outer(tx, freqs), torch.outer(ty, freqs)], dim=-1))
    return torch.cat(rows, dim=0)


def apply_interleaved_rope_heads_first(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x [B, H, L, D]`` by ``cos``/``sin`` ``[L, D // 2]`` on interleaved pairs, in float32 (or
    x's dtype when wider), cast back."""
    dtype = torch.promote_types(x.dtype, torch.float32)
    pairs = x.to(dtype).reshape(*x.shape[:-1], -1, 2)
    cos, sin = cos.to(dtype), sin.to(dtype)
    real, imag = pairs[..., 0], pairs[..., 1]
    out = torch.stack([real * cos - imag * sin, imag * cos + real * sin], dim=-1)
    return out.flatten(-2).type_as(x)
