"""Deterministic random weights for parity fixtures.

The fixtures store only a seed and the original checkpoint's key list with shapes; the weights are
rebuilt here, identically, both by the fixture script (which feeds them to the original code) and
by the tests (which write them in the original release layout and convert them).
"""

from __future__ import annotations

import math

import torch


def random_state_dict(shapes: dict[str, list[int]], seed: int) -> dict[str, torch.Tensor]:
    """Weights with sensible scales: norms near 1, small biases, fan-in scaled matrices."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key in sorted(shapes):
        shape = tuple(shapes[key])
        noise = torch.randn(shape, generator=generator, dtype=torch.float32)
        name = key.rsplit(".", 1)[-1]
        is_norm = any(part.lower().startswith(("ln", "norm", "layernorm")) for part in key.split("."))
        if name == "bias":
            value = 0.02 * noise
        elif is_norm and len(shape) == 1:
            value = 1.0 + 0.1 * noise
        else:
            fan_in = math.prod(shape[1:]) if len(shape) > 1 else shape[0]
            value = noise / math.sqrt(fan_in)
        state[key] = value.contiguous()
    return state
