"""Tolerances for comparing our float32 results with fixtures the original code computed in float32 elsewhere.

Both sides are float32 evaluations of the same real function, rounded differently: another instruction set
(AVX-512 vs AVX2 kernels block their sums differently), another thread count, another operation order. Each
lies within ``e`` of the exact value, where ``e`` is this computation's float32 rounding error on this input.
We measure ``e`` here, on the same input, as the distance between our float32 result and the same model run in
float64, and allow ``|ours - fixture| <= SAFETY * e + FLOOR``:

- ``SAFETY = 16``: the two sides are independent roundings (2e), and on another machine each can be a few times
  the one measured here, because the classical error bound grows with the length of each partial sum, which the
  kernel's blocking sets (x4 for an AVX-512 vs a scalar reduction of the same length), twice over for the
  compounding through a deep network;
- ``FLOOR = 8 ulp`` of the largest expected magnitude: a result rounded differently in its last bits.

A tolerance so derived follows the computation's conditioning (a deep decoder on large activations gets more
room than a single matmul), with no constant fitted to one machine's rounding. Token ids stay exact.
"""

from __future__ import annotations

import copy

import torch

SAFETY = 16.0
FLOOR_ULPS = 8.0
EPS32 = torch.finfo(torch.float32).eps


def float64_copy(module: torch.nn.Module) -> torch.nn.Module:
    """The same module in float64 (a copy; the original is untouched)."""
    return copy.deepcopy(module).to(torch.float64)


def rounding_error(ours32: torch.Tensor, ours64: torch.Tensor) -> float:
    """The measured float32 rounding error of a computation: max |float32 result - float64 result|."""
    return float((ours32.double() - ours64.double()).abs().max())


def assert_close_to_fp32_fixture(actual: torch.Tensor, expected: torch.Tensor, error: float, what: str = "") -> None:
    """``actual`` (ours, float32) against ``expected`` (the original's float32 fixture), within the bound above."""
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    bound = SAFETY * error + FLOOR_ULPS * EPS32 * float(expected.abs().max())
    worst = float((actual.double() - expected.double()).abs().max())
    assert worst <= bound, (f"{what}: max |ours - original| = {worst:.3g} exceeds {bound:.3g} "
                            f"({SAFETY:g} x the float32 rounding error {error:.3g} measured against float64 + {FLOOR_ULPS:g} ulp)")


def assert_matches_original(module: torch.nn.Module, compute, expected: torch.Tensor, what: str = "") -> torch.Tensor:
    """``compute(module)`` (ours, float32) against the original's fixture, within SAFETY x its rounding error
    measured as ``compute(float64 copy)``. ``compute`` casts its floating inputs to the module's dtype."""
    with torch.no_grad():
        ours = compute(module)
        reference = compute(float64_copy(module))
    assert_close_to_fp32_fixture(ours, expected, rounding_error(ours, reference), what)
    return ours
