"""Bits <-> indices, shared by the binary quantizers (LFQ, BSQ, the binary quantizer): the index of a
bit vector is ``Σ_i bit_i · 2^i`` (bit 0 least significant), the index checks, and the sub-token
factorisation of Open-MAGVIT2's generator (``split_indices(indices, [6, 12])``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

MAX_BITS = 64  # indices are int64; with 64 bits the index is the two's-complement bit pattern


def bits_to_indices(bits: torch.Tensor) -> torch.LongTensor:
    """``[..., n]`` bits (bool or 0/1) -> ``Σ_i bit_i · 2^i`` (bit 0 least significant), ``n <= 64``."""
    n = bits.shape[-1]
    if n > MAX_BITS:
        raise ValueError(f"at most {MAX_BITS} bits fit an int64 index, got {n}")
    shifts = torch.arange(n, device=bits.device)
    return (bits.long() << shifts).sum(-1)


def indices_to_bits(indices: torch.Tensor, num_bits: int) -> torch.Tensor:
    """``[...]`` indices -> bool bits ``[..., num_bits]``, bit 0 least significant."""
    shifts = torch.arange(num_bits, device=indices.device)
    return ((indices.unsqueeze(-1) >> shifts) & 1).bool()


def check_bit_groups(bits: Sequence[int], total: int | None = None) -> list[int]:
    bits = list(bits)
    if not bits or any(not isinstance(b, int) or isinstance(b, bool) or b < 1 for b in bits):
        raise ValueError(f"bit groups must be a non-empty list of positive integers, got {bits}")
    if total is not None and sum(bits) != total:
        raise ValueError(f"bit groups must sum to {total} bits, got {bits} (sum {sum(bits)})")
    if sum(bits) > MAX_BITS:
        raise ValueError(f"bit groups must sum to at most {MAX_BITS} bits, got {bits}")
    return bits


def check_integer_indices(indices: torch.Tensor, name: str) -> None:
    if not isinstance(indices, torch.Tensor) or indices.is_floating_point() or indices.is_complex() \
            or indices.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor")


def check_bit_range(indices: torch.Tensor, bits: int, name: str) -> None:
    if bits < MAX_BITS and indices.numel():
        low, high = int(indices.min()), int(indices.max())
        if low < 0 or high >= 2**bits:
            raise ValueError(f"{name} must lie in [0, {2**bits - 1}] ({bits} bits), got [{low}, {high}]")


def split_indices(indices: torch.Tensor, bits: Sequence[int]) -> tuple[torch.LongTensor, ...]:
    """Factorise indices into sub-tokens over consecutive bit groups, lowest bits first:
    ``split_indices(i, [6, 12]) -> (i & 63, i >> 6)`` — Open-MAGVIT2's (pre, post) sub-tokens of an
    18-bit code (channels 0-5 and 6-17). Inverse of :func:`merge_indices`."""
    bits = check_bit_groups(bits)
    check_integer_indices(indices, "indices")
    check_bit_range(indices, sum(bits), "indices")
    indices = indices.long()
    parts, offset = [], 0
    for group in bits:
        part = indices >> offset
        if group < MAX_BITS:
            part = part & ((1 << group) - 1)
        parts.append(part)
        offset += group
    return tuple(parts)


def merge_indices(parts: Sequence[torch.Tensor], bits: Sequence[int]) -> torch.LongTensor:
    """``Σ_g parts[g] << (bits[0] + ... + bits[g-1])``: the index whose :func:`split_indices` is ``parts``."""
    bits = check_bit_groups(bits)
    parts = list(parts)
    if len(parts) != len(bits):
        raise ValueError(f"expected {len(bits)} sub-token tensors for bit groups {bits}, got {len(parts)}")
    out, offset = None, 0
    for part, group in zip(parts, bits):
        check_integer_indices(part, "sub-token indices")
        check_bit_range(part, group, "sub-token indices")
        shifted = part.long() << offset
        out = shifted if out is None else out | shifted
        offset += group
    return out


def check_bit_indices(indices: torch.Tensor, num_bits: int, name: str) -> None:
    """TypeError unless ``indices`` is an integer tensor; ValueError unless it lies in ``[0, 2**num_bits)``
    (any int64 with 64 bits: the two's-complement pattern)."""
    check_integer_indices(indices, name)
    check_bit_range(indices, num_bits, "indices")
