"""A static, preallocated key/value cache for autoregressive sampling (gpt-fast style).

Buffers are allocated once for the whole sequence, so decode steps write in place and keep static
shapes (``torch.compile`` friendly); attention reads a prefix of the buffers or all of them.
"""

from __future__ import annotations

import torch


class StaticKVCache:
    """Per-layer key/value buffers ``[batch, num_kv_heads, max_length, head_dim]``."""

    def __init__(self, num_layers: int, batch_size: int, num_kv_heads: int, max_length: int, head_dim: int,
                 dtype: torch.dtype = torch.float32, device: torch.device | str | None = None):
        if min(num_layers, batch_size, num_kv_heads, max_length, head_dim) < 1:
            raise ValueError("StaticKVCache sizes must all be >= 1")
        shape = (batch_size, num_kv_heads, max_length, head_dim)
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(num_layers)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(num_layers)]
        self.batch_size, self.max_length = batch_size, max_length

    def update(self, layer_idx: int, key: torch.Tensor, value: torch.Tensor, cache_position: torch.LongTensor,
               key_length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Write ``key``/``value`` ``[B, H, S, D]`` at ``cache_position`` ``[S]``; return the first
        ``key_length`` (default: all) cached positions."""
        keys, values = self.keys[layer_idx], self.values[layer_idx]
        keys.index_copy_(2, cache_position, key.to(keys.dtype))
        values.index_copy_(2, cache_position, value.to(values.dtype))
        if key_length is None or key_length == self.max_length:
            return keys, values
        return keys[:, :, :key_length], values[:, :, :key_length]

    def reset(self) -> None:
        for buffer in (*self.keys, *self.values):
            buffer.zero_()
